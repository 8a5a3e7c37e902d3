/**
 * Test-only preload (`node --import …/stop-before-publish.mjs`, also through
 * NODE_OPTIONS for a `bysu` process) that stops the process with SIGSTOP just
 * before one rename(2):
 * - BYSU_TEST_STOP_BEFORE_PUBLISH=1: the rename that publishes a snapshot (an
 *   attempt directory under `.incoming/` renamed to a snapshot id), the last
 *   instruction of a commit. A test then takes the commit over from another
 *   process and sends SIGCONT: the rename runs as it would after a VM pause.
 * - BYSU_TEST_STOP_BEFORE_SUMMARY=1: the first rename into an app's
 *   `.summary/` after a snapshot was published, so that a test can kill -9 a
 *   committer between its commit and its summary update.
 * No BYSU code is replaced; `rename` is wrapped, then called. Plain
 * JavaScript so that it loads before tsx and in the compiled form alike.
 */
import { createRequire, syncBuiltinESMExports } from 'node:module';
import path from 'node:path';

const stopBeforePublish = process.env.BYSU_TEST_STOP_BEFORE_PUBLISH === '1';
const stopBeforeSummary = process.env.BYSU_TEST_STOP_BEFORE_SUMMARY === '1';
if (stopBeforePublish || stopBeforeSummary) {
  const require = createRequire(import.meta.url);
  const fsPromises = require('node:fs/promises');
  const rename = fsPromises.rename;
  let stopped = false;
  let published = false;
  fsPromises.rename = async (from, to) => {
    const publishing = path.basename(path.dirname(String(from))) === '.incoming' && /^\d{8}T\d{6}Z(-\d+)?$/.test(path.basename(String(to)));
    const summarizing = path.basename(path.dirname(String(to))) === '.summary';
    if (!stopped && ((stopBeforePublish && publishing) || (stopBeforeSummary && published && summarizing))) {
      stopped = true;
      // stderr is a pipe, written synchronously on Linux: the line is out before the stop.
      process.stderr.write(`test: stopping before ${publishing ? 'publishing' : 'replacing'} ${from} as ${to}\n`);
      process.kill(process.pid, 'SIGSTOP');
    }
    const result = await rename(from, to);
    if (publishing) published = true;
    return result;
  };
  // Named imports of node:fs/promises (`import { rename } …`) are live bindings: update them too.
  syncBuiltinESMExports();
}
