/**
 * The verification of one app (what `bysu verify` and the verify worker
 * run): snapshots are read newest first, a damaged one is recorded before
 * the older ones are read (so status and the alert know at once), the
 * verdicts end in `.last-verify.json`, and a stop ends it without a verdict.
 * Snapshots are written and summed here with `sha256sum`, as a person would.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { initRepository } from '../../../src/repository/marker.ts';
import { ReadThrottle } from '../../../src/repository/read-throttle.ts';
import { readVerifyRecord, type VerifyRecord } from '../../../src/repository/records.ts';
import { damageReason, verifyApp } from '../../../src/verify/verify-app.ts';
import { run, withTempDir } from '../../helpers/processes.ts';

const IDS = ['20261124T030000Z', '20261125T030000Z', '20261126T030000Z'];

async function withSnapshots(fn: (repository: string, appDir: string) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const repository = path.join(dir, 'repo');
    await initRepository(repository);
    const appDir = path.join(repository, 'shop');
    for (const id of IDS) {
      const snapshot = path.join(appDir, id);
      await mkdir(snapshot, { recursive: true });
      await writeFile(path.join(snapshot, 'shop.sql'), `dump of ${id}\n`);
      const dump = `dump of ${id}\n`;
      const manifest = { startedAt: '2026-11-01T00:00:00Z', finishedAt: '2026-11-01T00:00:01Z', bytes: dump.length, warnings: [], parts: [{ file: 'shop.sql', bytes: dump.length, sha256: createHash('sha256').update(dump).digest('hex') }] };
      await writeFile(path.join(snapshot, 'manifest.json'), `${JSON.stringify(manifest)}\n`);
      const sums = await run('sha256sum', ['shop.sql', 'manifest.json'], { cwd: snapshot });
      await writeFile(path.join(snapshot, 'SHA256SUMS'), sums.stdout);
    }
    await fn(repository, appDir);
  });
}

test('newest first; damage is recorded before the older snapshots are read', async () => {
  await withSnapshots(async (repository, appDir) => {
    const newest = IDS[2]!;
    await writeFile(path.join(appDir, newest, 'shop.sql'), 'dump of something else\n');
    const order: string[] = [];
    const records: VerifyRecord[] = [];
    const outcome = await verifyApp(repository, 'shop', {
      lock: null,
      onSnapshot: (result) => order.push(result.id),
      onRecorded: async (record) => {
        records.push(record);
      },
      onSummaryError: (error) => assert.fail(error),
    });
    assert.deepEqual(order, [...IDS].reverse(), 'newest first');
    assert.equal(records.length, 2, 'recorded when the damage was found, and at the end');
    assert.deepEqual(records[0]!.snapshots.map(({ id, ok }) => ({ id, ok })), [{ id: newest, ok: false }], 'the damage, before anything older was read');
    assert.deepEqual(records[1]!.snapshots.map(({ id, ok }) => ({ id, ok })), [...IDS].reverse().map((id) => ({ id, ok: id !== newest })));
    assert.deepEqual(await readVerifyRecord(appDir), records[1]);
    assert.equal(outcome.recordError, null);
    assert.match(outcome.results[0]!.problems[0]!, /^shop\.sql: checksum mismatch/);
    assert.match(damageReason('shop', records[1]!.snapshots.filter((snapshot) => !snapshot.ok)), new RegExp(`^shop/${newest}: shop\\.sql: checksum mismatch \\(expected [0-9a-f]{64}, got [0-9a-f]{64}\\)$`));
  });
});

test('a stop ends the verification with its reason, without a verdict of the snapshot being read', async () => {
  await withSnapshots(async (repository, appDir) => {
    const stop = new AbortController();
    const reason = new Error('stopping');
    // 1 byte per second: the first file waits for its bytes' time, and the stop comes meanwhile.
    setTimeout(() => stop.abort(reason), 200);
    await assert.rejects(verifyApp(repository, 'shop', { lock: null, throttle: new ReadThrottle(1, stop.signal), signal: stop.signal, onSummaryError: () => undefined }), (error) => error === reason);
    assert.equal(await readVerifyRecord(appDir), null, 'nothing recorded: a stop is not damage');
  });
});
