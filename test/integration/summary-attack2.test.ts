/**
 * A second attack on the per-app summary (issue 13): a snapshot directory
 * whose manifest.json was read half-written (a `cp -a` or an editor writing
 * it in place) is recorded as unreadable; once the file is whole the
 * summary must say so, as it does for a directory that had no manifest yet.
 * Writing a file inside a snapshot directory does not change the app
 * directory's time, so only a re-check of what was unreadable notices it.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, rm, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { SnapshotAttempt } from '../../src/repository/attempt.ts';
import { initRepository } from '../../src/repository/marker.ts';
import { readAppSummary, scanAppSummary } from '../../src/repository/summary.ts';
import { withTempDir } from '../helpers/processes.ts';

test('a snapshot whose manifest was read half-written is in the summary once the manifest is whole', async () => {
  await withTempDir(async (dir) => {
    const repository = path.join(dir, 'repo');
    await initRepository(repository);
    const jobId = 'job-shop-1';
    const attempt = await SnapshotAttempt.open(repository, 'shop', jobId, 1);
    await attempt.writePart('a.sql', Readable.from([Buffer.from('dump\n')]), { maxBytes: 1e6, snapshotMaxBytes: 1e6, stallTimeoutMs: 10_000 });
    const startedAt = '2026-11-30T02:00:00.000Z';
    const { id } = await attempt.commit({
      format: 'bysu-snapshot/1', app: 'shop', node: 'db1', host: '127.0.0.1', trigger: 'manual', jobId, attempt: 1,
      startedAt, finishedAt: startedAt, bytes: 0, bysuVersion: 'test', warnings: [], parts: [],
    }, async () => undefined);
    const appDir = path.join(repository, 'shop');
    const copy = path.join(appDir, '20261201T020000Z');
    execFileSync('cp', ['-a', path.join(appDir, id), copy]);
    const manifest = await readFile(path.join(copy, 'manifest.json'), 'utf8');
    await writeFile(path.join(copy, 'manifest.json'), manifest.slice(0, 40)); // read while half-written…
    const old = new Date(Date.now() - 60_000);
    await utimes(appDir, old, old); // …a minute after the copy began (not racy: the reader writes its summary back)
    assert.deepEqual((await readAppSummary(repository, 'shop')).unreadable, ['20261201T020000Z']);
    await writeFile(path.join(copy, 'manifest.json'), manifest); // …then written whole, in place
    assert.deepEqual(await readAppSummary(repository, 'shop'), await scanAppSummary(repository, 'shop'), 'the summary says what the files say');
    await rm(copy, { recursive: true });
  });
});
