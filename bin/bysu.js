#!/usr/bin/env -S node --no-concurrent-array-buffer-sweeping --max-semi-space-size=2
// The flags on the line above are V8 flags that cut a snapshot worker's CPU and memory
// (src/cli/runtime-flags.ts says how much); run this file itself, not `node bin/bysu.js`, to get them.
// It runs dist/ when `npm run build` compiled it from the sources as they are now (bin/compiled.js),
// else the TypeScript sources through tsx: no build step is needed between `npm ci` and `bysu`.
// Before anything loads: a SIGHUP that arrives while BYSU starts must not kill a long-running command
// (Node's default action for SIGHUP is to exit). It is held here; a long-running command serves it once it
// runs, any other command puts the default back (src/cli/run-until-signal.ts).
const heldSighup = Object.assign(() => {
  heldSighup.count += 1;
}, { count: 0, bysuHeldSighup: true });
process.on('SIGHUP', heldSighup);

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compiledMain } from './compiled.js';

const compiled = compiledMain(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..'));
let cli;
if (compiled !== null) {
  cli = await import(compiled.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import('../src/cli/main.ts');
}
const status = await cli.main(process.argv.slice(2));
process.exitCode = status;
// Commands that keep handles open (a Redis connection in its last reconnect, a timer) must not keep the CLI alive.
setTimeout(() => process.exit(status), 1000).unref();
