/**
 * The verify record (`.last-verify.json`) as verifications merge into it:
 * each complete snapshot keeps its newest verdict, a verification that has
 * not reached a snapshot yet leaves its old verdict (a damaged one stays
 * damaged until it is read again), a snapshot no longer there is dropped,
 * and a record written before verdicts carried their own time reads with
 * the record's.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { initRepository } from '../../../src/repository/marker.ts';
import { readVerifyRecord, recordVerification } from '../../../src/repository/records.ts';
import { withTempDir } from '../../helpers/processes.ts';

const OLD = '20261124T030000Z';
const MIDDLE = '20261125T030000Z';
const NEW = '20261126T030000Z';

async function withApp(fn: (repository: string, appDir: string) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const repository = path.join(dir, 'repo');
    await initRepository(repository);
    const appDir = path.join(repository, 'shop');
    for (const id of [OLD, MIDDLE, NEW]) {
      await mkdir(path.join(appDir, id), { recursive: true });
      await writeFile(path.join(appDir, id, 'manifest.json'), '{}\n');
    }
    await fn(repository, appDir);
  });
}

test('verdicts merge: the newest of each kept snapshot, the others kept, the deleted dropped', async () => {
  await withApp(async (repository, appDir) => {
    await recordVerification(repository, 'shop', [
      { id: NEW, ok: true, problems: [], at: '2026-11-26T12:00:00.000Z' },
      { id: MIDDLE, ok: true, problems: [], at: '2026-11-26T12:00:01.000Z' },
      { id: OLD, ok: false, problems: ['shop.sql: checksum mismatch'], at: '2026-11-26T12:00:02.000Z' },
    ], new Date('2026-11-26T12:00:03.000Z'));
    // The next verification has read only the newest snapshot so far, and found it damaged.
    const partial = await recordVerification(repository, 'shop', [{ id: NEW, ok: false, problems: ['shop.sql: missing'], at: '2026-12-03T12:00:00.000Z' }], new Date('2026-12-03T12:00:00.500Z'));
    assert.deepEqual(partial.snapshots.map(({ id, ok, at }) => ({ id, ok, at })), [
      { id: NEW, ok: false, at: '2026-12-03T12:00:00.000Z' },
      { id: MIDDLE, ok: true, at: '2026-11-26T12:00:01.000Z' },
      { id: OLD, ok: false, at: '2026-11-26T12:00:02.000Z' },
    ], 'newest first; the old verdicts stand until their snapshot is read again');
    assert.equal(partial.at, '2026-12-03T12:00:00.500Z');
    assert.deepEqual(await readVerifyRecord(appDir), partial, 'what was written is what is read');

    // Retention deletes the oldest; the next record forgets it.
    await rm(path.join(appDir, OLD), { recursive: true });
    const next = await recordVerification(repository, 'shop', [{ id: NEW, ok: true, problems: [], at: '2026-12-10T12:00:00.000Z' }]);
    assert.deepEqual(next.snapshots.map(({ id, ok }) => ({ id, ok })), [{ id: NEW, ok: true }, { id: MIDDLE, ok: true }]);
  });
});

test('a record written before verdicts had their own time reads with the record\'s time', async () => {
  await withApp(async (_repository, appDir) => {
    await writeFile(path.join(appDir, '.last-verify.json'), JSON.stringify({ format: 'bysu-verify/1', app: 'shop', at: '2026-11-20T10:00:00.000Z', snapshots: [{ id: NEW, ok: false, problems: ['x: missing'] }] }));
    const record = await readVerifyRecord(appDir);
    assert.deepEqual(record?.snapshots, [{ id: NEW, ok: false, problems: ['x: missing'], at: '2026-11-20T10:00:00.000Z' }]);
    assert.match(await readFile(path.join(appDir, '.last-verify.json'), 'utf8'), /"format":"bysu-verify\/1"/);
  });
});
