/**
 * The repository's marker on a real filesystem: `bysu init`'s library code
 * (create, mark an empty directory, adopt, refuse, idempotent), the one-line
 * refusals, and that no writer of the repository creates a missing root or
 * writes into an unmarked one (a mount point whose disk is not mounted).
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, test } from 'node:test';
import { RepositoryUnavailableError } from '../../../src/errors.ts';
import { SnapshotAttempt } from '../../../src/repository/attempt.ts';
import { writeDrillResult } from '../../../src/repository/records.ts';
import { REPOSITORY_FORMAT, REPOSITORY_MARKER_FILE } from '../../../src/repository/layout.ts';
import { initRepository, repositoryProblem, requireRepository } from '../../../src/repository/marker.ts';
import { applyRetention } from '../../../src/retention/apply.ts';

let dir: string;
let root: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bysu-marker-'));
  root = path.join(dir, 'repo');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const exists = (target: string) => stat(target).then(() => true, () => false);
const isUnavailable = (pattern: RegExp) => (error: unknown) => error instanceof RepositoryUnavailableError && pattern.test(error.message) && !error.message.includes('\n');
const MANIFEST = {
  format: 'bysu-snapshot/1' as const, app: 'shop', node: 'db1', host: '10.0.0.1', trigger: 'manual' as const, jobId: 'job-1', attempt: 1,
  startedAt: '2026-11-26T02:15:00.000Z', finishedAt: '2026-11-26T02:15:00.000Z', bytes: 5, bysuVersion: 'test', warnings: [], parts: [],
};
const LIMITS = { maxBytes: 1e9, snapshotMaxBytes: 1e9, stallTimeoutMs: 5000 };

test('init creates the root (0700) with the marker; a second init changes nothing', async () => {
  const first = await initRepository(root);
  assert.equal(first.action, 'created');
  assert.equal((await stat(root)).mode & 0o777, 0o700);
  const marker = JSON.parse(await readFile(path.join(root, REPOSITORY_MARKER_FILE), 'utf8'));
  assert.equal(marker.format, REPOSITORY_FORMAT);
  assert.match(marker.id, /^[0-9a-f-]{36}$/);
  const second = await initRepository(root);
  assert.equal(second.action, 'existing');
  assert.equal(second.marker.id, marker.id, 'the identity stays');
  assert.deepEqual(await readdir(root), [REPOSITORY_MARKER_FILE], 'no temporary file left');
  assert.deepEqual(await requireRepository(root), marker);
});

test('init refuses a root whose parent is missing (a disk not mounted above it) and creates nothing', async () => {
  const deep = path.join(dir, 'mnt', 'backup', 'bysu');
  await assert.rejects(initRepository(deep), isUnavailable(/its parent .*mnt\/backup does not exist/));
  assert.equal(await exists(path.join(dir, 'mnt')), false);
});

test('init marks an empty directory (or one holding only lost+found), refuses foreign content, adopts BYSU app directories only with adopt', async () => {
  await mkdir(root, { mode: 0o755 });
  await mkdir(path.join(root, 'lost+found'));
  assert.equal((await initRepository(root)).action, 'marked');
  assert.equal((await stat(root)).mode & 0o777, 0o700, 'made 0700');

  const foreign = path.join(dir, 'foreign');
  await mkdir(foreign);
  await writeFile(path.join(foreign, 'notes.txt'), 'x');
  await assert.rejects(initRepository(foreign, { adopt: true }), isUnavailable(/not empty and holds things that are not BYSU's \(notes\.txt\)/));
  assert.equal(await exists(path.join(foreign, REPOSITORY_MARKER_FILE)), false);

  const old = path.join(dir, 'old');
  await mkdir(path.join(old, 'shop', '20261126T021500Z'), { recursive: true });
  await mkdir(path.join(old, 'shop', '.commits'));
  await assert.rejects(initRepository(old), isUnavailable(/holds BYSU app directories \(shop\) but no marker.*bysu init --adopt/));
  const adopted = await initRepository(old, { adopt: true });
  assert.equal(adopted.action, 'adopted');
  assert.deepEqual(adopted.apps, ['shop']);
  await requireRepository(old);
});

test('a missing root, an unmarked one and a broken marker are refused in one line each', async () => {
  await assert.rejects(requireRepository(root), isUnavailable(/^repository .*\/repo does not exist: not mounted\? run bysu init only to create a new repository$/));
  await mkdir(root);
  await assert.rejects(requireRepository(root), isUnavailable(/^repository .*\/repo has no BYSU marker: not mounted\? run bysu init only for a new repository$/));
  assert.match(await repositoryProblem(root) ?? '', /has no BYSU marker/);
  await writeFile(path.join(root, REPOSITORY_MARKER_FILE), '{"format":"bysu-repository/9","id":"x"}');
  await assert.rejects(requireRepository(root), isUnavailable(/names format "bysu-repository\/9", this BYSU reads bysu-repository\/1/));
  await writeFile(path.join(root, REPOSITORY_MARKER_FILE), 'not json');
  await assert.rejects(requireRepository(root), isUnavailable(/is not valid JSON/));
  assert.equal(await exists(path.join(dir, 'repo', 'shop')), false);
});

// Fails before the fix: SnapshotAttempt.open did mkdir -p and re-created the root ("Missing expected rejection").
test('a snapshot attempt never creates a missing root, nor writes into an unmarked one', async () => {
  await assert.rejects(SnapshotAttempt.open(root, 'shop', 'job-1', 1), isUnavailable(/does not exist/));
  assert.equal(await exists(root), false, 'the root was not created');
  await mkdir(root); // the mount point without its disk
  await assert.rejects(SnapshotAttempt.open(root, 'shop', 'job-1', 1), isUnavailable(/has no BYSU marker/));
  assert.deepEqual(await readdir(root), [], 'nothing written into the mount point');
});

// Fails before the fix: the commit re-created <root>/shop/.commits with mkdir -p and committed there.
test('a disk unmounted between the attempt and its commit: the commit is refused and nothing lands on the filesystem underneath', async () => {
  await initRepository(root);
  for (const replacement of ['missing', 'empty mount point'] as const) {
    const attempt = await SnapshotAttempt.open(root, 'shop', `job-${replacement}`, 1);
    await attempt.writePart('a.sql', Readable.from([Buffer.from('dump\n')]), LIMITS);
    const away = path.join(dir, `away-${replacement.replace(/ /g, '-')}`);
    await rename(root, away); // the disk goes: its contents (and the open attempt) with it
    if (replacement === 'empty mount point') await mkdir(root);
    await assert.rejects(attempt.commit({ ...MANIFEST, jobId: `job-${replacement}` }, async () => undefined), isUnavailable(/not mounted\?/));
    await attempt.discard();
    if (replacement === 'missing') assert.equal(await exists(root), false, `${replacement}: the root was not re-created`);
    else assert.deepEqual(await readdir(root), [], `${replacement}: nothing written into the mount point`);
    await rm(root, { recursive: true, force: true });
    await rename(away, root); // the disk comes back
  }
});

// Fails before the fix: the marker was only checked for presence, so the commit found a marker, its rename found no
// attempt directory (it is on the other disk) and it failed as "taken over by another run": retryable, and the retry
// would then write this cluster's snapshot into the other repository.
test('another BYSU repository mounted at the same path mid-job: the commit is refused, naming both marker ids', async () => {
  await initRepository(root);
  const attempt = await SnapshotAttempt.open(root, 'shop', 'job-swap', 1);
  await attempt.writePart('a.sql', Readable.from([Buffer.from('dump\n')]), LIMITS);
  const away = path.join(dir, 'away');
  await rename(root, away); // this disk goes, with the open attempt on it
  const other = await initRepository(root); // another BYSU disk is mounted in its place
  await assert.rejects(attempt.commit({ ...MANIFEST, jobId: 'job-swap' }, async () => undefined),
    isUnavailable(new RegExp(`is not the one this snapshot started in .*now ${other.marker.id}.*another disk mounted`)));
  await attempt.discard();
  assert.deepEqual(await readdir(root), [REPOSITORY_MARKER_FILE], 'nothing of this job in the other repository');
});

// Fails before the fix: writeDrillResult did mkdir -p of <root>/<app>/.drills.
test('a drill result and retention refuse an unmarked root and create nothing', async () => {
  const result = { format: 'bysu-drill/1' as const, app: 'shop', snapshotId: null, node: 'db1', jobId: 'd1', startedAt: MANIFEST.startedAt, finishedAt: MANIFEST.finishedAt, passed: false, error: 'x', steps: [] };
  await assert.rejects(writeDrillResult(root, 'shop', result), isUnavailable(/does not exist/));
  assert.equal(await exists(root), false);
  await mkdir(root);
  await assert.rejects(writeDrillResult(root, 'shop', result), isUnavailable(/has no BYSU marker/));
  await assert.rejects(applyRetention(root, { app: 'shop', keep: 1, incomingMaxAgeMs: 1000 }, new Set()), isUnavailable(/has no BYSU marker/));
  assert.deepEqual(await readdir(root), []);
});
