/**
 * The fences of `bysu restore --extract`: which tar entries are refused
 * before anything is extracted, and which extracted trees are refused after
 * (links resolved on a real filesystem, hard links counted).
 */
import assert from 'node:assert/strict';
import { link, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { UnsafeArchiveError } from '../../../src/errors.ts';
import { checkExtractedTree, UnsafeEntries, unsafeEntryReason } from '../../../src/restore/archive.ts';

test('unsafeEntryReason: absolute names, "..", hard links and symbolic links that leave the directory', () => {
  const cases: [{ name: string; type: string; linkName: string }, RegExp | null][] = [
    [{ name: 'uploads/a.png', type: '0', linkName: '' }, null],
    [{ name: './uploads/', type: '5', linkName: '' }, null],
    [{ name: 'a..b/c..', type: '0', linkName: '' }, null],
    [{ name: '/etc/passwd', type: '0', linkName: '' }, /^an absolute path$/],
    [{ name: 'uploads/../../x', type: '0', linkName: '' }, /^a "\.\." in its path$/],
    [{ name: '..', type: '5', linkName: '' }, /^a "\.\." in its path$/],
    [{ name: 'h', type: '1', linkName: 'uploads/a.png' }, null],
    [{ name: 'h', type: '1', linkName: '/etc/shadow' }, /^a hard link to "\/etc\/shadow", outside the archive$/],
    [{ name: 'h', type: '1', linkName: '../x' }, /^a hard link to "\.\.\/x", outside the archive$/],
    [{ name: 'uploads/img/l', type: '2', linkName: '../readme.txt' }, null],
    [{ name: 'uploads/l', type: '2', linkName: '../x' }, null],
    [{ name: 'l', type: '2', linkName: '.' }, null],
    [{ name: 'uploads/l', type: '2', linkName: '../../x' }, /^a symbolic link to "\.\.\/\.\.\/x", which points outside$/],
    [{ name: 'l', type: '2', linkName: '..' }, /which points outside$/],
    [{ name: 'l', type: '2', linkName: '/etc' }, /^a symbolic link to the absolute path "\/etc"$/],
  ];
  for (const [entry, expected] of cases) {
    const reason = unsafeEntryReason(entry);
    if (expected === null) assert.equal(reason, null, JSON.stringify(entry));
    else assert.match(reason ?? '', expected, JSON.stringify(entry));
  }
});

test('UnsafeEntries names the first five, counts the rest, and escapes control characters', () => {
  const unsafe = new UnsafeEntries();
  assert.equal(unsafe.refusal('shop/x/a.tar'), null);
  for (let index = 0; index < 7; index += 1) unsafe.check({ name: `/abs/${index}\u001b[2J`, type: '0', linkName: '' });
  const refusal = unsafe.refusal('shop/x/a.tar');
  assert.ok(refusal instanceof UnsafeArchiveError);
  assert.match(refusal.message, /^refusing to extract shop\/x\/a\.tar: 7 entries would land or point outside the target directory: "\/abs\/0\\u001b\[2J" \(an absolute path\), .*"\/abs\/4\\u001b\[2J" \(an absolute path\), and 2 more\. Restore it without --extract/);
  assert.doesNotMatch(refusal.message, /\u001b/);
});

describe('checkExtractedTree on a real filesystem', () => {
  let dir: string;
  let root: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'bysu-extracted-'));
    root = path.join(dir, 'root');
    await mkdir(path.join(root, 'uploads/img'), { recursive: true });
    await writeFile(path.join(root, 'uploads/readme.txt'), 'x\n');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const refused = (pattern: RegExp) => (error: unknown) => error instanceof UnsafeArchiveError && pattern.test(error.message);

  test('links that stay inside pass, dangling or climbing ones included; the entries are counted', async () => {
    await symlink('../readme.txt', path.join(root, 'uploads/img/readme'));
    await symlink('img/../readme.txt', path.join(root, 'uploads/via-img'));
    await symlink('not-there/yet', path.join(root, 'uploads/dangling'));
    await symlink('.', path.join(root, 'self'));
    await link(path.join(root, 'uploads/readme.txt'), path.join(root, 'hard'));
    assert.equal(await checkExtractedTree(root, 'a.tar'), 8);
  });

  // Each line of the target alone looks inside; only following `d` on disk shows `e` is the parent.
  test('a chain through another link that leads out is refused', async () => {
    await symlink('.', path.join(root, 'd'));
    await symlink('d/..', path.join(root, 'e'));
    await assert.rejects(checkExtractedTree(root, 'chain.tar'), refused(/^refusing the extraction of chain\.tar: "e" \(a symbolic link that leads outside, or loops\)/));
  });

  test('absolute links, links out, a link through a directory link out, and loops are refused', async () => {
    for (const [name, target] of [['abs', '/etc'], ['up', '../..'], ['deep', 'uploads/img/../../../x']] as const) {
      const at = path.join(root, name);
      await symlink(target, at);
      await assert.rejects(checkExtractedTree(root, 'a.tar'), refused(new RegExp(`"${name}" \\(a symbolic link that leads outside`)), name);
      await rm(at);
    }
    await symlink('/tmp', path.join(root, 'tmp-link'));
    await symlink('tmp-link/x', path.join(root, 'through'));
    await assert.rejects(checkExtractedTree(root, 'a.tar'), refused(/"through" \(a symbolic link that leads outside/));
    await rm(path.join(root, 'tmp-link'));
    await rm(path.join(root, 'through'));
    await symlink('loop-b', path.join(root, 'loop-a'));
    await symlink('loop-a', path.join(root, 'loop-b'));
    await assert.rejects(checkExtractedTree(root, 'a.tar'), refused(/"loop-a" \(a symbolic link that leads outside, or loops\)/));
  });

  test('a hard link to a file outside the tree is refused', async () => {
    await writeFile(path.join(dir, 'secret'), 'outside\n');
    await link(path.join(dir, 'secret'), path.join(root, 'uploads/secret'));
    await assert.rejects(checkExtractedTree(root, 'a.tar'), refused(/"uploads\/secret" \(a hard link to a file outside\)/));
  });
});
