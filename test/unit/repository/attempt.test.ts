/**
 * The commit fence and `latest` of the repository writer, on a real
 * filesystem: a job id is committed at most once however often it runs, a
 * refused fence commits nothing, ids collide into `-2`, and `latest` always
 * ends on the newest snapshot.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readlink, rm, utimes, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, test } from 'node:test';
import { CommitConflictError } from '../../../src/errors.ts';
import { SnapshotAttempt, STALE_COMMIT_MARKER_MS } from '../../../src/repository/attempt.ts';
import type { Manifest } from '../../../src/repository/manifest.ts';
import { initRepository } from '../../../src/repository/marker.ts';
import { listSnapshots } from '../../../src/repository/read.ts';

let repository: string;
beforeEach(async () => {
  repository = path.join(await mkdtemp(path.join(os.tmpdir(), 'bysu-attempt-')), 'repo');
  await initRepository(repository);
});
afterEach(async () => {
  await rm(path.dirname(repository), { recursive: true, force: true });
});

const LIMITS = { maxBytes: 1e9, snapshotMaxBytes: 1e9, stallTimeoutMs: 5000 };

function manifestFor(jobId: string, startedAt: string): Omit<Manifest, 'id'> {
  return {
    format: 'bysu-snapshot/1', app: 'shop', node: 'db1', host: '10.0.0.1', trigger: 'manual', jobId, attempt: 1,
    startedAt, finishedAt: startedAt, bytes: 5, bysuVersion: 'test', warnings: [], parts: [],
  };
}

async function attemptWithPart(jobId: string): Promise<SnapshotAttempt> {
  const attempt = await SnapshotAttempt.open(repository, 'shop', jobId, 1);
  await attempt.writePart('a.sql', Readable.from([Buffer.from('dump\n')]), LIMITS);
  return attempt;
}

const open = async () => undefined;
const snapshotDirs = async () => (await readdir(path.join(repository, 'shop'))).filter((name) => /^\d{8}T/.test(name)).sort();

test('a job committed twice yields one snapshot; the second run gets the first one back', async () => {
  const first = await attemptWithPart('job-1');
  const second = await attemptWithPart('job-1');
  const committed = await first.commit(manifestFor('job-1', '2026-11-26T02:15:00.000Z'), open);
  assert.equal(committed.alreadyCommitted, false);
  // As if the first run had died between its rename and repointing `latest`.
  await rm(path.join(repository, 'shop', 'latest'));
  const again = await second.commit(manifestFor('job-1', '2026-11-26T02:16:00.000Z'), open);
  assert.equal(again.alreadyCommitted, true);
  assert.equal(again.id, committed.id);
  assert.deepEqual(await snapshotDirs(), ['20261126T021500Z']);
  assert.deepEqual(await readdir(path.join(repository, 'shop', '.incoming')), [], 'the duplicate attempt was discarded');
  assert.equal(await readlink(path.join(repository, 'shop', 'latest')), committed.id, 'the second run repaired latest');
});

test('two runs of one job committing at once: exactly one snapshot', async () => {
  const attempts = await Promise.all([1, 2, 3, 4].map(() => attemptWithPart('job-race')));
  const results = await Promise.allSettled(attempts.map((attempt, index) => attempt.commit(manifestFor('job-race', `2026-11-26T02:1${index}:00.000Z`), open)));
  for (const result of results) {
    if (result.status === 'rejected') assert.ok(result.reason instanceof CommitConflictError, String(result.reason));
  }
  assert.equal((await snapshotDirs()).length, 1);
  assert.equal(results.filter((result) => result.status === 'fulfilled' && !result.value.alreadyCommitted).length, 1);
});

test('a fence that refuses commits nothing', async () => {
  const attempt = await attemptWithPart('job-lost');
  await assert.rejects(attempt.commit(manifestFor('job-lost', '2026-11-26T02:15:00.000Z'), async () => {
    throw new CommitConflictError('lost the lock');
  }), /lost the lock/);
  assert.deepEqual(await snapshotDirs(), []);
  await attempt.discard();
  assert.deepEqual(await readdir(path.join(repository, 'shop', '.incoming')), []);
});

test('a stale commit marker left by a crash does not block the job forever', async () => {
  await mkdir(path.join(repository, 'shop', '.commits'), { recursive: true });
  const marker = path.join(repository, 'shop', '.commits', 'job-crashed');
  await writeFile(marker, '{}');
  const fresh = await attemptWithPart('job-crashed');
  await assert.rejects(fresh.commit(manifestFor('job-crashed', '2026-11-26T02:15:00.000Z'), open), CommitConflictError);
  const old = (Date.now() - STALE_COMMIT_MARKER_MS - 60_000) / 1000;
  await utimes(marker, old, old);
  const retry = await attemptWithPart('job-crashed');
  const committed = await retry.commit(manifestFor('job-crashed', '2026-11-26T02:15:00.000Z'), open);
  assert.equal(committed.alreadyCommitted, false);
  assert.deepEqual(await snapshotDirs(), ['20261126T021500Z']);
});

test('ids taken in the same second get -2, -3; latest follows the newest, not the last committed', async () => {
  for (const jobId of ['job-a', 'job-b', 'job-c']) {
    await (await attemptWithPart(jobId)).commit(manifestFor(jobId, '2026-11-26T02:15:00.500Z'), open);
  }
  assert.deepEqual(await snapshotDirs(), ['20261126T021500Z', '20261126T021500Z-2', '20261126T021500Z-3']);
  assert.equal(await readlink(path.join(repository, 'shop', 'latest')), '20261126T021500Z-3');

  // A retried job that started earlier commits after a newer one: latest stays on the newest.
  await (await attemptWithPart('job-old')).commit(manifestFor('job-old', '2026-11-25T02:15:00.000Z'), open);
  assert.equal(await readlink(path.join(repository, 'shop', 'latest')), '20261126T021500Z-3');
  const listed = await listSnapshots(repository, 'shop');
  assert.deepEqual(listed.map((snapshot) => snapshot.id), ['20261126T021500Z-3', '20261126T021500Z-2', '20261126T021500Z', '20261125T021500Z']);
  assert.equal(listed[0]!.manifest!.id, '20261126T021500Z-3', 'the manifest carries the final id');
});

/** Set every commit claim of the app past STALE_COMMIT_MARKER_MS, as a long pause would have. */
async function ageClaims(): Promise<void> {
  const commits = path.join(repository, 'shop', '.commits');
  const old = (Date.now() - STALE_COMMIT_MARKER_MS - 60_000) / 1000;
  for (const name of await readdir(commits)) await utimes(path.join(commits, name), old, old);
}

// Fails before the fix: the fence ran only once, before the claim, and the paused run committed a second snapshot.
test('a run paused after its claim, whose commit was taken over meanwhile, commits nothing', async () => {
  const paused = await attemptWithPart('job-p');
  let resume!: () => void;
  const resumed = new Promise<void>((resolve) => (resume = resolve));
  let pausedAt!: () => void;
  const atSecondFence = new Promise<void>((resolve) => (pausedAt = resolve));
  let fenceCalls = 0;
  const committing = paused.commit(manifestFor('job-p', '2026-11-26T02:15:00.000Z'), async () => {
    fenceCalls += 1;
    if (fenceCalls === 2) {
      pausedAt();
      await resumed;
    }
  });
  await Promise.race([atSecondFence, committing.then(() => assert.fail('the commit never ran its fence again before publishing'))]);
  await ageClaims();
  const taker = await (await attemptWithPart('job-p')).commit(manifestFor('job-p', '2026-11-26T02:17:00.000Z'), open);
  assert.equal(taker.alreadyCommitted, false);
  resume();
  await assert.rejects(committing, (error: Error) => error instanceof CommitConflictError && /taken over.*superseded by job-p~2/.test(error.message));
  assert.deepEqual(await snapshotDirs(), ['20261126T021700Z']);
  await paused.discard();
  assert.deepEqual(await readdir(path.join(repository, 'shop', '.incoming')), [], 'the paused run\'s attempt was removed');
});

// Guards the release that replaced removing the marker on failure (the claims now stay, as a chain);
// fails before the fix only because the fence was not run again before the rename.
test('a run that failed after its claim releases it: a retry commits at once, not after STALE_COMMIT_MARKER_MS', async () => {
  const failing = await attemptWithPart('job-f');
  let fenceCalls = 0;
  await assert.rejects(failing.commit(manifestFor('job-f', '2026-11-26T02:15:00.000Z'), async () => {
    fenceCalls += 1;
    if (fenceCalls === 2) throw new CommitConflictError('lost the lock of job job-f');
  }), /lost the lock/);
  await failing.discard();
  const retry = await (await attemptWithPart('job-f')).commit(manifestFor('job-f', '2026-11-26T02:16:00.000Z'), open);
  assert.equal(retry.alreadyCommitted, false);
  assert.deepEqual(await snapshotDirs(), ['20261126T021600Z']);
});

// Fails before the fix on the last check: the stale run's attempt stayed where its rename would publish it.
test('runs taking over one stale claim at once: exactly one snapshot, and the stale run\'s attempt is out of reach', async () => {
  const stale = await attemptWithPart('job-s');
  await mkdir(path.join(repository, 'shop', '.commits'), { recursive: true });
  // The claim a paused run would have left (the form claims had before the chain, too).
  await writeFile(path.join(repository, 'shop', '.commits', 'job-s'), `${JSON.stringify({ jobId: 'job-s', attempt: path.basename(stale.directory) })}\n`);
  await ageClaims();
  const takers = await Promise.all([1, 2, 3, 4].map(() => attemptWithPart('job-s')));
  const results = await Promise.allSettled(takers.map((taker, index) => taker.commit(manifestFor('job-s', `2026-11-26T02:2${index}:00.000Z`), open)));
  for (const result of results) {
    if (result.status === 'rejected') assert.ok(result.reason instanceof CommitConflictError, String(result.reason));
  }
  assert.equal((await snapshotDirs()).length, 1, (await snapshotDirs()).join(', '));
  assert.equal(results.filter((result) => result.status === 'fulfilled' && !result.value.alreadyCommitted).length, 1);
  await assert.rejects(readdir(stale.directory), { code: 'ENOENT' }, 'the stale run can no longer publish its attempt');
});
