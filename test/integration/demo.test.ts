/**
 * The README's demo command keeps working: `npm run demo -- --once` exits 0
 * only on the expected outcome; run as a person runs it, one Ctrl-C stops it
 * cleanly; its output, when not a terminal, holds no escape codes and no log
 * lines of bysu up.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { PROJECT_ROOT } from '../helpers/cluster.ts';
import { exitWithin, run, spawnTracked, waitUntil } from '../helpers/processes.ts';

test('the demo snapshots its sample apps and sees the expected outcome', async () => {
  const result = await run(process.execPath, ['--import', 'tsx', path.join(PROJECT_ROOT, 'demo/run.ts'), '--once'], { cwd: PROJECT_ROOT, timeout: 180_000 });
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.match(result.stdout, /shop: committed /);
  assert.match(result.stdout, /uploads: committed /);
  assert.match(result.stdout, /ledger: FAILED after 2 attempt\(s\)/);
  assert.match(result.stdout, /uploads\.tar: OK/);
  assert.match(result.stdout, /^ledger\s+FAILING/m, 'the status table shows the failing app');
  assert.match(result.stdout, /dashboard: http:\/\/127\.0\.0\.1:\d+\/ {2}user admin {2}password \S+/);
  assert.match(result.stdout, /expected outcome: .*dashboard up/);
  // Not a terminal: plain text (it printed bold escapes before), and up's JSON log lines stay in their file.
  assert.doesNotMatch(result.stdout + result.stderr, /\x1b/, 'no escape code in output that is not a terminal');
  assert.doesNotMatch(result.stdout + result.stderr, /^\{"level"/m, 'no log line of bysu up');
});

// Fails before the fix: a terminal's Ctrl-C reached bysu up too, the demo's SIGTERM was then its second signal,
// and it logged "second signal: exiting now" and exited at once instead of stopping cleanly.
test('one Ctrl-C stops the running demo cleanly', async () => {
  // In a process group of its own, so that a SIGINT to the group is what a terminal's Ctrl-C is.
  const demo = spawnTracked(process.execPath, ['--import', 'tsx', path.join(PROJECT_ROOT, 'demo/run.ts')], { cwd: PROJECT_ROOT, detached: true });
  let output = '';
  demo.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  demo.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await waitUntil('the demo to wait for Ctrl-C', async () => output.includes('Press Ctrl-C to stop'), 180_000);
  process.kill(-demo.pid!, 'SIGINT');
  assert.equal(await exitWithin(demo, 60_000), 0, output);
  assert.match(output, /== stopping: bysu up, the nodes and Redis/);
  assert.match(output, /\nbysu up stopped: exit 0\n/);
  const logFile = /its log: (\S+)\)/.exec(output)![1]!;
  assert.match(output, new RegExp(`bysu up \\(scheduler, workers, dashboard; its log: ${logFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)`));
});
