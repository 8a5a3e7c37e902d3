/**
 * The verification's read bound is real: a 20 MiB snapshot verified at
 * 10 MiB/s takes at least the 2 s the bound allows (1.8 s is the margin for
 * a coarse clock), while the same verify without a bound takes a fraction of
 * that; time spent idle is not saved up for a burst; a stop ends a wait at
 * once; 0 is no bound. The snapshot is written and summed with the tools a
 * person uses (`sha256sum`), and the verdict must still be right.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { verifySnapshot, type SnapshotEntry } from '../../../src/repository/read.ts';
import { ReadThrottle } from '../../../src/repository/read-throttle.ts';
import type { Manifest } from '../../../src/repository/manifest.ts';
import { run, withTempDir } from '../../helpers/processes.ts';

const MiB = 1024 * 1024;

/** Given a directory, write a snapshot of one part of `bytes` random bytes, summed by sha256sum, and return it. */
async function writeSnapshot(dir: string, bytes: number): Promise<SnapshotEntry> {
  const snapshot = path.join(dir, '20261126T021503Z');
  await mkdir(snapshot, { recursive: true });
  const data = randomBytes(bytes);
  await writeFile(path.join(snapshot, 'big.bin'), data);
  const sums = await run('sha256sum', ['big.bin'], { cwd: snapshot });
  assert.equal(sums.code, 0, sums.stderr);
  await writeFile(path.join(snapshot, 'SHA256SUMS'), sums.stdout);
  const manifest = { parts: [{ file: 'big.bin', bytes, sha256: createHash('sha256').update(data).digest('hex') }] } as unknown as Manifest;
  return { id: '20261126T021503Z', path: snapshot, manifest };
}

// Fails without the throttle: unbounded, this verify reads 20 MiB in well under a second.
test('a verify of 20 MiB at 10 MiB/s takes at least 1.8 s, and finds the snapshot whole', async () => {
  await withTempDir(async (dir) => {
    const snapshot = await writeSnapshot(dir, 20 * MiB);
    const free = Date.now();
    const unbounded = await verifySnapshot(snapshot);
    const freeSeconds = (Date.now() - free) / 1000;
    assert.deepEqual(unbounded.problems, []);

    const started = Date.now();
    const bounded = await verifySnapshot(snapshot, { throttle: new ReadThrottle(10 * MiB) });
    const seconds = (Date.now() - started) / 1000;
    assert.deepEqual(bounded.problems, [], 'the throttled read hashes the same bytes');
    assert.equal(bounded.bytes, 20 * MiB);
    assert.ok(seconds >= 1.8, `20 MiB at 10 MiB/s took ${seconds.toFixed(2)} s (${(20 / seconds).toFixed(1)} MiB/s): the bound was not kept`);
    assert.ok(seconds < 10, `20 MiB at 10 MiB/s took ${seconds.toFixed(2)} s: the throttle is far slower than its bound`);
    assert.ok(freeSeconds < seconds / 2, `unbounded ${freeSeconds.toFixed(2)} s against bounded ${seconds.toFixed(2)} s: the bound is what slowed it`);
  });
});

test('time spent idle is not saved up for a burst', async () => {
  const throttle = new ReadThrottle(10 * MiB);
  await throttle.take(1 * MiB);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const started = Date.now();
  for (let chunk = 0; chunk < 80; chunk += 1) await throttle.take(64 * 1024); // 5 MiB after a second of nothing
  const seconds = (Date.now() - started) / 1000;
  assert.ok(seconds >= 0.4, `5 MiB after an idle second took ${seconds.toFixed(2)} s: the idle time was spent as a burst`);
});

// Fails when every late timer is lost (a wait of 1.25 ms rounded up to 2 and counted from when it ended): 64 KiB
// chunks at 50 MiB/s then pass at about 30 MiB/s.
test('64 KiB chunks at 50 MiB/s pass at the bound, not far below it', async () => {
  const throttle = new ReadThrottle(50 * MiB);
  const started = Date.now();
  for (let chunk = 0; chunk < 25 * 16; chunk += 1) await throttle.take(64 * 1024); // 25 MiB: 0.5 s at the bound
  const seconds = (Date.now() - started) / 1000;
  assert.ok(seconds >= 0.45, `25 MiB at 50 MiB/s took ${seconds.toFixed(2)} s: faster than the bound`);
  assert.ok(seconds < 0.8, `25 MiB at 50 MiB/s took ${seconds.toFixed(2)} s (${(25 / seconds).toFixed(0)} MiB/s): late timers were not made up`);
});

test('a stop ends a wait at once, with its reason', async () => {
  const stop = new AbortController();
  const throttle = new ReadThrottle(1 * MiB, stop.signal);
  const started = Date.now();
  const waiting = throttle.take(10 * MiB); // 10 s at the bound
  setTimeout(() => stop.abort(new Error('stopping')), 100);
  await assert.rejects(waiting);
  assert.ok(Date.now() - started < 2000, 'the wait ended with the stop');
});

test('0 is no bound, and a negative bound is refused', async () => {
  const started = Date.now();
  await new ReadThrottle(0).take(1024 * MiB);
  assert.ok(Date.now() - started < 100);
  assert.throws(() => new ReadThrottle(-1), /bytesPerSecond must be 0/);
});
