#!/usr/bin/env -S node --no-concurrent-array-buffer-sweeping --max-semi-space-size=2
// Runs the TypeScript sources directly through tsx: no build step between `npm ci` and `bysu`.
// The flags on the line above are V8 flags that cut a snapshot worker's CPU and memory
// (src/cli/runtime-flags.ts says how much); run this file itself, not `node bin/bysu.js`, to get them.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
const status = await main(process.argv.slice(2));
process.exitCode = status;
// Commands that keep handles open (a Redis connection in its last reconnect, a timer) must not keep the CLI alive.
setTimeout(() => process.exit(status), 1000).unref();
