/**
 * Attack on the demo (issue 14): `node --import tsx demo/run.ts`, run as a
 * person runs it, in a process group of its own so that a SIGINT to the group
 * is what a terminal's Ctrl-C is.
 *
 * Promise attacked: one Ctrl-C stops the demo cleanly, with `bysu up
 * stopped: exit 0` (README "Quick start"; demo.test.ts covers a Ctrl-C only
 * once the demo prints "Press Ctrl-C to stop").
 *
 * PROVES: a Ctrl-C pressed earlier (here while `bysu snapshot --all --wait`
 * runs, the minute a person watches; the same holds during start-up) kills
 * the demo at once (no SIGINT handler is installed until the prompt), prints
 * nothing, and leaves `bysu up` (detached in a process group of its own, so
 * the Ctrl-C never reaches it) and its snapshot worker processes running as
 * orphans, their Redis and nodes gone (the SIGINT reached those), their demo
 * directory left in /tmp. The orphans are killed by this test, found by the
 * demo's config path in their environment.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { PROJECT_ROOT } from '../helpers/cluster.ts';
import { exitWithin, freePort, spawnTracked, waitUntil } from '../helpers/processes.ts';

/** The pids of processes whose environment or command line names `dir` (started by this test's demo). */
async function processesUsing(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const texts = await Promise.all(['environ', 'cmdline'].map((file) => readFile(path.join('/proc', name, file), 'latin1').catch(() => '')));
    if (texts.some((text) => text.includes(dir))) pids.push(Number(name));
  }
  return pids;
}

test('one Ctrl-C while the demo snapshots stops it cleanly, bysu up included', async () => {
  const port = await freePort();
  const demo = spawnTracked(process.execPath, ['--import', 'tsx', path.join(PROJECT_ROOT, 'demo/run.ts')], {
    cwd: PROJECT_ROOT, detached: true, env: { ...process.env, BYSU_DEMO_PORT: String(port) },
  });
  let output = '';
  demo.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  demo.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await waitUntil('the demo to start its snapshots', async () => output.includes('== bysu snapshot --all --wait'), 180_000);
  const dir = path.dirname(/== config (\S+)/.exec(output)![1]!);
  let leftBehind: number[] = [];
  try {
    process.kill(-demo.pid!, 'SIGINT');
    const code = await exitWithin(demo, 90_000);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    leftBehind = await processesUsing(dir);
    const upAnswers = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(5000) }).then(() => true, () => false);
    assert.deepEqual({ code, stopped: /\nbysu up stopped: exit 0\n/.test(output), upAnswers, leftBehind: leftBehind.length },
      { code: 0, stopped: true, upAnswers: false, leftBehind: 0 },
      `after one Ctrl-C the demo says "bysu up stopped: exit 0" and leaves no process behind:\n${output}`);
  } finally {
    for (const pid of leftBehind.length > 0 ? leftBehind : await processesUsing(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    if (demo.exitCode === null && demo.signalCode === null) process.kill(-demo.pid!, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
});
