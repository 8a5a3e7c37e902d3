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
