#!/usr/bin/env node
// Runs the TypeScript sources directly through tsx: no build step between `npm ci` and `bysu`.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
const status = await main(process.argv.slice(2));
process.exitCode = status;
// Commands that keep handles open (a Redis connection in its last reconnect, a timer) must not keep the CLI alive.
setTimeout(() => process.exit(status), 1000).unref();
