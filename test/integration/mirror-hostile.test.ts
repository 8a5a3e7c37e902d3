/**
 * A mirror against a source that does not play by the rules: a small HTTP
 * server in this test that speaks the source API (/api/apps, a listing,
 * manifest.json, SHA256SUMS, files with Range) and serves what the test
 * crafts. Each run is a real runMirror into a real repository; copies are
 * checked with `sha256sum -c`. What it proves: a part named as a file BYSU
 * writes itself is refused by name (it once published a copy whose
 * SHA256SUMS failed), a malformed entry is named, a raised keep is followed
 * only up to twice the first, and a full disk is told as this side's and
 * mends itself once the source stops sending what filled it.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.ts';
import { CommitConflictError } from '../../src/errors.ts';
import type { MirrorRecord } from '../../src/mirror/record.ts';
import { createLogger } from '../../src/log.ts';
import { runMirror, type MirrorRunResult } from '../../src/mirror/run-mirror.ts';
import { snapshotIdFor } from '../../src/repository/layout.ts';
import { initRepository } from '../../src/repository/marker.ts';
import { run } from '../helpers/processes.ts';
import { tmpfsUnavailable } from '../helpers/tmpfs.ts';
import { fakeSource, type Crafted } from '../helpers/fake-mirror-source.ts';

/** A snapshot id `minutesAgo` minutes ago (ids are one per second, so distinct minutes give distinct ids). */
const idAgo = (minutesAgo: number) => snapshotIdFor(new Date(Date.now() - minutesAgo * 60_000));

async function ids(repository: string, app: string): Promise<string[]> {
  return (await readdir(path.join(repository, app)).catch(() => [] as string[])).filter((entry) => /^\d{8}T\d{6}Z/.test(entry)).sort();
}

describe('a mirror against a hostile source', () => {
  let source: Awaited<ReturnType<typeof fakeSource>>;
  let dir = '';
  const logger = createLogger('silent');
  const mirrorOnce = async (repository: string, mirror: Record<string, unknown> = {}, fence = async () => {}, reloadUnverified = false): Promise<MirrorRunResult> => {
    const config = parseConfig(stringify({ redis: { url: 'redis://127.0.0.1:1' }, repository, apps: [], mirrors: [{ name: 'home', url: source.url, tokenEnv: 'T', ...mirror }] }), 'test', { T: 'token' });
    return runMirror(config, 'home', { fence, lockApp: (_app, fn) => fn(), logger, env: { T: 'token' }, reloadUnverified });
  };
  const recordOf = async (repository: string, app: string) => JSON.parse(await readFile(path.join(repository, app, '.mirror.json'), 'utf8')) as MirrorRecord;

  before(async () => {
    source = await fakeSource();
    dir = await mkdtemp(path.join(os.tmpdir(), 'bysu-mirror-hostile-'));
  });
  after(async () => {
    await source.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('a part named SHA256SUMS or manifest.json is refused by name, and nothing is copied (it once published a copy whose sums failed)', async () => {
    const repository = path.join(dir, 'reserved');
    await initRepository(repository);
    source.apps.splice(0, Infinity, { app: 'shop', keep: 3 });
    source.snapshots.set('shop', [{ id: idAgo(30), files: new Map([['shop.sql', Buffer.from('INSERT 1;\n')], ['SHA256SUMS', randomBytes(500)]]) }]);
    const result = await mirrorOnce(repository);
    assert.match(result.failures.join('\n'), /snapshot 1 of \/api\/apps\/shop\/snapshots \(id "\d{8}T\d{6}Z"\) is refused: it lists SHA256SUMS as a part, a name BYSU writes itself/);
    assert.deepEqual(await ids(repository, 'shop'), []);
  });

  test('a listing entry that is not a snapshot, and an app name that is not one, are named', async () => {
    const repository = path.join(dir, 'named');
    await initRepository(repository);
    source.apps.splice(0, Infinity, { app: 'shop', keep: 3 }, { app: '../etc' });
    source.snapshots.set('shop', [{ id: idAgo(20), files: new Map(), listingEntry: { id: '../../x', finishedAt: new Date().toISOString(), bytes: 0, files: [] } }]);
    const result = await mirrorOnce(repository);
    const failures = result.failures.join('\n');
    assert.match(failures, /mirror source home lists an app named "\.\.\/etc", which is not an app name: not copied/);
    assert.match(failures, /\(id "\.\.\/\.\.\/x"\) is refused: its id "\.\.\/\.\.\/x" is not a snapshot id/);
    const entries = await readdir(repository);
    assert.ok(entries.every((entry) => entry === 'shop' || entry.startsWith('.')), `nothing but the app and BYSU's own: ${entries.join(' ')}`);
    assert.deepEqual(await ids(repository, 'shop'), []);
  });

  test('without keep here, a source that raises its keep is followed only up to twice the first it said', async () => {
    const repository = path.join(dir, 'keep');
    await initRepository(repository);
    source.apps.splice(0, Infinity, { app: 'shop', keep: 2 });
    source.snapshots.set('shop', [idAgo(50), idAgo(49)].map((id) => ({ id, files: new Map([['a.sql', randomBytes(100)]]) })));
    assert.deepEqual((await mirrorOnce(repository)).failures, []);
    assert.equal((await ids(repository, 'shop')).length, 2);
    // Taken over: keep 1000000000 and forty new snapshots.
    source.apps.splice(0, Infinity, { app: 'shop', keep: 1_000_000_000 });
    source.snapshots.set('shop', Array.from({ length: 40 }, (_, index) => ({ id: idAgo(45 - index), files: new Map([['a.sql', randomBytes(100)]]) })).reverse());
    assert.deepEqual((await mirrorOnce(repository)).failures, []);
    const held = await ids(repository, 'shop');
    // keep 4 (twice 2): the four newest were copied, not forty; and the first copy to arrive of today's stays.
    assert.equal(held.length, 5, held.join(' '));
    assert.deepEqual(held.slice(-4), source.snapshots.get('shop')!.slice(0, 4).map((snapshot) => snapshot.id).reverse());
  });

  test('a source that said no keep at first, then keep 1: the copies kept here do not shrink', async () => {
    const repository = path.join(dir, 'floor');
    await initRepository(repository);
    source.apps.splice(0, Infinity, { app: 'shop' });
    source.snapshots.set('shop', [idAgo(60), idAgo(59), idAgo(58)].map((id) => ({ id, files: new Map([['a.sql', randomBytes(100)]]) })));
    assert.deepEqual((await mirrorOnce(repository)).failures, []);
    assert.equal((await ids(repository, 'shop')).length, 3, 'defaults.keep (3)');
    source.apps.splice(0, Infinity, { app: 'shop', keep: 1 });
    const lowered = await mirrorOnce(repository);
    assert.deepEqual(lowered.failures, []);
    assert.deepEqual(lowered.apps[0]?.deleted, [], 'nothing deleted because the source lowered its keep');
    assert.equal((await ids(repository, 'shop')).length, 3);
  });

  test('a record written before keepFirst and keepUsed, with no keep ever said: the floor holds (defaults.keep)', async () => {
    const repository = path.join(dir, 'oldrecord');
    await initRepository(repository);
    source.apps.splice(0, Infinity, { app: 'shop' });
    source.snapshots.set('shop', [idAgo(70), idAgo(69), idAgo(68)].map((id) => ({ id, files: new Map([['a.sql', randomBytes(100)]]) })));
    assert.deepEqual((await mirrorOnce(repository)).failures, []);
    const file = path.join(repository, 'shop', '.mirror.json');
    const { keepFirst: _first, keepUsed: _used, ...old } = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    await writeFile(file, JSON.stringify({ ...old, sourceKeep: null, sourceKeepFirst: null }));
    source.apps.splice(0, Infinity, { app: 'shop', keep: 1 });
    assert.deepEqual((await mirrorOnce(repository)).apps[0]?.deleted, []);
    assert.equal((await ids(repository, 'shop')).length, 3);
  });

  test('an id that is no date (month 13) is refused by name: it would sort above every real snapshot', async () => {
    const repository = path.join(dir, 'nodate');
    await initRepository(repository);
    source.apps.splice(0, Infinity, { app: 'shop', keep: 3 });
    source.snapshots.set('shop', [{ id: '20991301T000000Z', files: new Map([['a.sql', randomBytes(100)]]) }]);
    const result = await mirrorOnce(repository);
    assert.match(result.failures.join('\n'), /its id "20991301T000000Z" is not a real date and time/);
    assert.deepEqual(await ids(repository, 'shop'), []);
  });

  test('a manifest without trigger (what bysu list prints) is refused, naming what it lacks', async () => {
    const repository = path.join(dir, 'shape');
    await initRepository(repository);
    source.apps.splice(0, Infinity, { app: 'shop', keep: 3 });
    source.snapshots.set('shop', [{ id: idAgo(15), files: new Map([['a.sql', randomBytes(100)]]), manifestWithout: ['trigger'] }]);
    const result = await mirrorOnce(repository);
    assert.match(result.failures.join('\n'), /manifest\.json lacks trigger \(or has them of the wrong kind\)/);
    assert.deepEqual(await ids(repository, 'shop'), []);
  });

  test('a run that lost its job writes nothing more: no record of its failures over the run that took over', async () => {
    const repository = path.join(dir, 'fenced');
    await initRepository(repository);
    source.apps.splice(0, Infinity, { app: 'shop', keep: 3 });
    source.snapshots.set('shop', [{ id: idAgo(12), files: new Map([['a.sql', randomBytes(100)]]) }]);
    await assert.rejects(mirrorOnce(repository, {}, async () => { throw new Error('lost the lock of the job'); }), /lost the lock of the job/);
    const record = JSON.parse(await readFile(path.join(repository, 'shop', '.mirror.json'), 'utf8')) as { lastError: unknown };
    assert.equal(record.lastError, null, 'the lost run\'s failure is not recorded');
  });

  // Fails before the fix (fifth attack): the run went on to download every other snapshot after its job was lost.
  test('a run that lost its job stops at its first failure and asks the source for nothing more', async () => {
    const repository = path.join(dir, 'lost-early');
    await initRepository(repository);
    source.apps.splice(0, Infinity, { app: 'shop', keep: 3 });
    const [newer, older] = [idAgo(17), idAgo(18)];
    source.snapshots.set('shop', [newer, older].map((id) => ({ id, files: new Map([['a.bin', randomBytes(64 * 1024)]]) })));
    source.requests.length = 0;
    await assert.rejects(mirrorOnce(repository, {}, async () => { throw new CommitConflictError('lost the lock of job 7; another worker may be running it'); }), /lost the lock of job 7/);
    assert.ok(source.requests.some((request) => request.includes(newer)), source.requests.join('\n'));
    assert.deepEqual(source.requests.filter((request) => request.includes(older)), [], 'nothing of the next snapshot was asked for');
    assert.deepEqual(await ids(repository, 'shop'), []);
  });

  // Fails before the fix (fifth attack): an app the source does not list read "0 snapshot(s) copied", its record was
  // refreshed at every run, and status said "up to date" for good, exit 0.
  test('an app named in mirrors[].apps that the source does not list fails by name, and its record is not refreshed', async () => {
    const repository = path.join(dir, 'unlisted');
    await initRepository(repository);
    source.apps.splice(0, Infinity, { app: 'shop', keep: 3 });
    const id = idAgo(16);
    source.snapshots.set('shop', [{ id, files: new Map([['a.sql', randomBytes(100)]]) }]);
    const typo = await mirrorOnce(repository, { apps: ['shop', 'ledgr'] });
    assert.match(typo.failures.join('\n'), /ledgr is not among the apps mirror source home lists \(shop\): nothing copied/);
    assert.equal(typo.retryable, false);
    assert.deepEqual(await ids(repository, 'shop'), [id], 'the app the source lists is copied all the same');
    const checkedAt = (await recordOf(repository, 'shop')).checkedAt;
    // Removed (or renamed) on the source.
    source.apps.splice(0, Infinity);
    const gone = await mirrorOnce(repository, { apps: ['shop'] });
    assert.match(gone.failures.join('\n'), /shop is not among the apps mirror source home lists \(none\)/);
    const record = await recordOf(repository, 'shop');
    assert.equal(record.checkedAt, checkedAt, 'the source did not list it: the lag counts on');
    assert.match(record.lastError?.reason ?? '', /shop is not among the apps/);
    assert.deepEqual(await ids(repository, 'shop'), [id], 'the copy stays');
  });

  // Fails before the fix (fifth attack): with the reload not yet verified, a file cut after `keep: 1` of `keep: 12`
  // pruned 8 copies to 1 or 2 (an app of this BYSU kept what it kept before the reload); and (its second round) a
  // first copy made then recorded the cut keep as the first keep, so that following the source later was capped
  // at twice 1.
  test('a run while a reload is not yet verified deletes no copies and records no keep read from the file', async () => {
    const repository = path.join(dir, 'reload-floor');
    await initRepository(repository);
    source.apps.splice(0, Infinity, { app: 'shop', keep: 12 });
    source.snapshots.set('shop', Array.from({ length: 8 }, (_, index) => ({ id: idAgo(90 + index), files: new Map([['a.sql', randomBytes(100)]]) })));
    // A new app's first copy under a file cut short (keep: 1, not yet verified).
    const first = await mirrorOnce(repository, { keep: 1 }, undefined, true);
    assert.deepEqual(first.failures, []);
    assert.equal((await recordOf(repository, 'shop')).keepFirst, null, 'the cut keep is not the first keep');
    assert.deepEqual(await ids(repository, 'shop'), [source.snapshots.get('shop')![0]!.id], 'the newest, as keep 1 wants');
    assert.deepEqual((await mirrorOnce(repository, { keep: 12 })).failures, []);
    assert.equal((await ids(repository, 'shop')).length, 8);
    const cut = await mirrorOnce(repository, { keep: 1 }, undefined, true);
    assert.deepEqual(cut.apps[0]?.deleted, []);
    assert.equal((await ids(repository, 'shop')).length, 8);
    assert.equal((await recordOf(repository, 'shop')).keepUsed, 12, 'the keep applied before stays the one a later run counts from');
    // The keep removed on purpose (the source says 12): followed, not capped at twice the cut 1.
    const follows = await mirrorOnce(repository, {});
    assert.deepEqual(follows.apps[0]?.deleted, []);
    assert.equal((await ids(repository, 'shop')).length, 8);
    // Once the file is found as loaded, the keep it says applies.
    const verified = await mirrorOnce(repository, { keep: 1 });
    assert.ok(verified.apps[0]!.deleted.length >= 6, JSON.stringify(verified.apps[0]));
  });

  // Fails before the fix (second round of the fifth attack): a listing compressed whatever was asked, with its
  // compressed length, failed every run as "ended after 60 of 62 bytes", retried, blaming a cut answer.
  test('an answer compressed although the bytes as they are were asked for is refused, naming the encoding', async () => {
    const repository = path.join(dir, 'gzip');
    await initRepository(repository);
    source.apps.splice(0, Infinity, { app: 'shop', keep: 3 });
    source.gzip = true;
    try {
      await assert.rejects(mirrorOnce(repository), (error: Error & { retryable?: boolean }) => {
        assert.match(error.message, /answered .*\/api\/apps compressed \(content-encoding: gzip\).*turn compression off for \/api on the proxy/);
        return true;
      });
    } finally {
      source.gzip = false;
    }
  });

  const noTmpfs = tmpfsUnavailable();
  /** Given a path, run fn with a new repository there on a 20 MiB tmpfs, the source's shop at keep 3; unmount after. */
  const onSmallDisk = async (repository: string, fn: () => Promise<void>) => {
    execFileSync('mkdir', ['-p', repository]);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', repository]);
    try {
      await initRepository(repository);
      source.apps.splice(0, Infinity, { app: 'shop', keep: 3 });
      await fn();
    } finally {
      execFileSync('umount', [repository]);
    }
  };
  test('a full disk here: FAILED as this side\'s, naming the file; the good copy stays; once the source drops what filled it, the next run copies again', { skip: noTmpfs }, async () => {
    const repository = path.join(dir, 'full');
    await onSmallDisk(repository, async () => {
      const good = { id: idAgo(40), files: new Map([['a.bin', randomBytes(1024 * 1024)]]) };
      source.snapshots.set('shop', [good]);
      assert.deepEqual((await mirrorOnce(repository)).failures, []);
      const big = { id: idAgo(30), files: new Map([['big.bin', randomBytes(30 * 1024 * 1024)]]) };
      source.snapshots.set('shop', [big, good]);
      const full = await mirrorOnce(repository);
      assert.match(full.failures.join('\n'), /cannot write .*\.incoming\/mirror\.\d{8}T\d{6}Z\/big\.bin: the repository disk is full \(ENOSPC\)/);
      assert.equal(full.apps[0]?.local, true, 'the failure is this side\'s');
      const check = await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: path.join(repository, 'shop', good.id) });
      assert.equal(check.code, 0, check.stdout + check.stderr);
      // The source drops the big one and takes a new small one: the next run removes the download that filled the disk.
      const next = { id: idAgo(10), files: new Map([['a.bin', randomBytes(1024 * 1024)]]) };
      source.snapshots.set('shop', [next, good]);
      const mended = await mirrorOnce(repository);
      assert.deepEqual(mended.failures, []);
      assert.deepEqual(await ids(repository, 'shop'), [good.id, next.id]);
      assert.deepEqual((await readdir(path.join(repository, 'shop', '.incoming'))).filter((name) => name.startsWith('mirror.')), []);
    });
  });

  test('a resume with no room for the kept bytes twice starts the file over, and it arrives', { skip: noTmpfs }, async () => {
    const repository = path.join(dir, 'twice');
    await onSmallDisk(repository, async () => {
      // 14 MiB, cut at 11: the next attempt would need 11 MiB more to copy what it keeps, and 9 are free.
      const snapshot: Crafted = { id: idAgo(8), files: new Map([['data.bin', randomBytes(14 * 1024 * 1024)]]), cutAt: 11 * 1024 * 1024 };
      source.snapshots.set('shop', [snapshot]);
      const cut = await mirrorOnce(repository);
      assert.match(cut.failures.join('\n'), /data\.bin/);
      delete snapshot.cutAt;
      const whole = await mirrorOnce(repository);
      assert.deepEqual(whole.failures, []);
      const check = await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: path.join(repository, 'shop', snapshot.id) });
      assert.equal(check.code, 0, check.stdout + check.stderr);
    });
  });
});
