/** Where a restore may write, and how its staging directory becomes the target, on a real filesystem. */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { checkTarget, createStaging, discardStaging, publishStaging } from '../../../src/restore/target.ts';

describe('restore targets', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'bysu-target-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('checkTarget: new, empty, or refused with the reason and what to do', async () => {
    assert.deepEqual(await checkTarget(path.join(dir, 'new')), { kind: 'new' });
    await mkdir(path.join(dir, 'empty'));
    assert.deepEqual(await checkTarget(path.join(dir, 'empty')), { kind: 'empty-directory' });
    await mkdir(path.join(dir, 'full'));
    for (const name of ['b', 'a', 'c', 'd']) await writeFile(path.join(dir, 'full', name), '');
    assert.deepEqual(await checkTarget(path.join(dir, 'full')), { refused: `refusing to restore into ${dir}/full: it is not empty (4 entries: "a", "b", "c", …); choose a new or empty directory with --to` });
    await writeFile(path.join(dir, 'file'), '');
    assert.match((await checkTarget(path.join(dir, 'file')) as { refused: string }).refused, /it exists and is not a directory/);
    assert.match((await checkTarget(path.join(dir, 'no/such/x')) as { refused: string }).refused, /its parent .*\/no\/such does not exist; create it first/);
  });

  test('a new target appears by one rename of its hidden sibling, mode 0700', async () => {
    const target = path.join(dir, 'shop-1');
    const staging = await createStaging(target, { kind: 'new' });
    assert.equal(path.dirname(staging), dir);
    assert.match(path.basename(staging), /^\.shop-1\.bysu-restore-/);
    await writeFile(path.join(staging, 'shop.sql'), 'dump');
    assert.equal(await publishStaging(staging, target, { kind: 'new' }), null);
    assert.deepEqual(await readdir(dir), ['shop-1']);
    assert.deepEqual(await readdir(target), ['shop.sql']);
    assert.equal((await stat(target)).mode & 0o777, 0o700);
  });

  test('an empty target is filled from a staging directory inside it, which is then gone', async () => {
    const target = path.join(dir, 'mnt');
    await mkdir(target, { mode: 0o755 });
    const staging = await createStaging(target, { kind: 'empty-directory' });
    assert.equal(path.dirname(staging), target);
    await writeFile(path.join(staging, 'shop.sql'), 'dump');
    await mkdir(path.join(staging, 'uploads'));
    assert.equal(await publishStaging(staging, target, { kind: 'empty-directory' }), null);
    assert.deepEqual((await readdir(target)).sort(), ['shop.sql', 'uploads']);
    assert.equal((await stat(target)).mode & 0o777, 0o755, 'its own mode is kept');
  });

  test('a target that someone filled meanwhile is refused, and discarding leaves nothing of the restore', async () => {
    const target = path.join(dir, 'raced');
    const staging = await createStaging(target, { kind: 'new' });
    await writeFile(path.join(staging, 'shop.sql'), 'dump');
    await mkdir(target);
    await writeFile(path.join(target, 'theirs'), '');
    assert.match((await publishStaging(staging, target, { kind: 'new' }))?.refused ?? '', /something was created there while the files were checked and copied/);
    await discardStaging(staging);
    assert.deepEqual(await readdir(dir), ['raced']);
    assert.deepEqual(await readdir(target), ['theirs']);

    const empty = path.join(dir, 'empty');
    await mkdir(empty);
    const inside = await createStaging(empty, { kind: 'empty-directory' });
    await writeFile(path.join(empty, 'theirs'), '');
    assert.match((await publishStaging(inside, empty, { kind: 'empty-directory' }))?.refused ?? '', /it is no longer empty/);
    await discardStaging(inside);
    assert.deepEqual(await readdir(empty), ['theirs']);
  });
});
