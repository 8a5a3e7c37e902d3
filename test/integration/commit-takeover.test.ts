/**
 * Two real processes commit the same job while the first is stopped
 * (SIGSTOP, as a VM pause would) between claiming the commit and publishing
 * it, long enough for its claim to go stale, so that the second takes the
 * commit over and publishes. When the first resumes it must not publish a
 * second snapshot with the same job id, wherever the stop fell: inside the
 * re-check of the fence after the claim, or right before rename(2), after
 * every check had passed.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readdir, utimes } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { PROJECT_ROOT } from '../helpers/cluster.ts';
import { run, spawnTracked, stopProcess, waitUntil, withTempDir } from '../helpers/processes.ts';
import { processState } from '../helpers/signals.ts';
import { STALE_COMMIT_MARKER_MS } from '../../src/repository/attempt.ts';
import { initRepository } from '../../src/repository/marker.ts';
import { listSnapshots } from '../../src/repository/read.ts';

const SCRIPT = path.join(PROJECT_ROOT, 'test/helpers/commit-attempt.ts');
const STOP_BEFORE_PUBLISH = path.join(PROJECT_ROOT, 'test/helpers/stop-before-publish.mjs');

interface Outcome { code: number | null; result: { committed?: string; alreadyCommitted?: boolean; error?: string; message?: string } }

async function outcomeOf(child: ChildProcess): Promise<Outcome> {
  let stdout = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', (exitCode) => resolve(exitCode)));
  return { code, result: JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') };
}

/** Age every commit claim of the app past STALE_COMMIT_MARKER_MS, as the long pause would have. */
async function ageClaims(repository: string, app: string): Promise<void> {
  const commits = path.join(repository, app, '.commits');
  const old = (Date.now() - STALE_COMMIT_MARKER_MS - 60_000) / 1000;
  for (const name of await readdir(commits)) await utimes(path.join(commits, name), old, old);
}

async function takeOver(stop: { env: NodeJS.ProcessEnv; preload: string[] }): Promise<{ first: Outcome; second: Outcome; snapshots: string[]; incoming: string[] }> {
  return withTempDir(async (repository) => {
    await initRepository(repository, { adopt: false });
    const first = spawnTracked(process.execPath, ['--import', 'tsx', ...stop.preload, SCRIPT, repository, 'shop', 'job-7', '2026-11-26T02:15:00.000Z'], {
      cwd: PROJECT_ROOT, env: { ...process.env, ...stop.env },
    });
    const firstOutcome = outcomeOf(first);
    let stderr = '';
    first.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    try {
      await waitUntil(`the first committer to stop itself (stderr: ${stderr})`, async () => processState(first.pid!) === 'T' || first.exitCode !== null, 60_000);
      assert.equal(first.exitCode, null, `the first committer stopped before it ended: ${stderr}`);
      await ageClaims(repository, 'shop');
      const second = await run(process.execPath, ['--import', 'tsx', SCRIPT, repository, 'shop', 'job-7', '2026-11-26T02:17:00.000Z'], { cwd: PROJECT_ROOT });
      first.kill('SIGCONT');
      const firstDone = await firstOutcome;
      const snapshots = (await listSnapshots(repository, 'shop')).filter((snapshot) => snapshot.manifest?.jobId === 'job-7').map((snapshot) => snapshot.id);
      return {
        first: firstDone,
        second: { code: second.code, result: JSON.parse(second.stdout.trim().split('\n').at(-1) ?? '{}') },
        snapshots,
        incoming: await readdir(path.join(repository, 'shop', '.incoming')),
      };
    } finally {
      first.kill('SIGCONT');
      await stopProcess(first);
    }
  });
}

// Fails before the fix: both processes commit, two snapshots of job-7 (20261126T021500Z and 20261126T021700Z).
test('a committer stopped right before rename(2) whose commit was taken over publishes nothing', async () => {
  const { first, second, snapshots, incoming } = await takeOver({ env: { BYSU_TEST_STOP_BEFORE_PUBLISH: '1' }, preload: ['--import', STOP_BEFORE_PUBLISH] });
  assert.deepEqual(snapshots, ['20261126T021700Z'], 'exactly one snapshot of job-7, the second run\'s');
  assert.equal(second.code, 0, JSON.stringify(second.result));
  assert.equal(second.result.alreadyCommitted, false);
  assert.equal(first.code, 3, JSON.stringify(first.result));
  assert.equal(first.result.error, 'CommitConflictError');
  // Every check had passed before the stop: the rename itself found the attempt gone.
  assert.match(first.result.message ?? '', /taken over .*its attempt directory .* was taken out of its reach/);
  assert.deepEqual(incoming, [], 'the first run\'s attempt was removed');
});

// Fails before the fix: the fence ran once, before the claim, so the first process never stops here and commits on its own.
test('a committer stopped between its claim and its last check sees that the claim was taken over', async () => {
  const { first, second, snapshots, incoming } = await takeOver({ env: { BYSU_TEST_STOP_IN_FENCE: '2' }, preload: [] });
  assert.deepEqual(snapshots, ['20261126T021700Z'], 'exactly one snapshot of job-7, the second run\'s');
  assert.equal(second.code, 0, JSON.stringify(second.result));
  assert.equal(first.code, 3, JSON.stringify(first.result));
  assert.match(first.result.message ?? '', /taken over .*its claim job-7 was superseded by job-7~2/);
  assert.deepEqual(incoming, []);
});
