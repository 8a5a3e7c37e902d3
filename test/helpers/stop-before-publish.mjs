/**
 * Test-only preload (`node --import …/stop-before-publish.mjs`, also through
 * NODE_OPTIONS for a `bysu` process): with BYSU_TEST_STOP_BEFORE_PUBLISH=1,
 * the process stops itself with SIGSTOP just before the rename(2) that
 * publishes a snapshot (an attempt directory under `.incoming/` renamed to a
 * snapshot id), the last instruction of a commit. A test then takes the commit
 * over from another process and sends SIGCONT: the rename runs as it would
 * after a VM pause. No BYSU code is replaced; `rename` is wrapped, then called.
 * Plain JavaScript so that it loads before tsx and in the compiled form alike.
 */
import { createRequire, syncBuiltinESMExports } from 'node:module';
import path from 'node:path';

if (process.env.BYSU_TEST_STOP_BEFORE_PUBLISH === '1') {
  const require = createRequire(import.meta.url);
  const fsPromises = require('node:fs/promises');
  const rename = fsPromises.rename;
  let stopped = false;
  fsPromises.rename = async (from, to) => {
    const publishing = path.basename(path.dirname(String(from))) === '.incoming' && /^\d{8}T\d{6}Z(-\d+)?$/.test(path.basename(String(to)));
    if (publishing && !stopped) {
      stopped = true;
      // stderr is a pipe, written synchronously on Linux: the line is out before the stop.
      process.stderr.write(`test: stopping before publishing ${from} as ${to}\n`);
      process.kill(process.pid, 'SIGSTOP');
    }
    return rename(from, to);
  };
  // Named imports of node:fs/promises (`import { rename } …`) are live bindings: update them too.
  syncBuiltinESMExports();
}
