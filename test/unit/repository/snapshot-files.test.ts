/**
 * What `bysu restore` and `bysu cat` accept as a snapshot's listing: SHA256SUMS
 * must list manifest.json with the sha256 of the bytes read (the part list
 * comes from those bytes) and every part the manifest names; files are read
 * only as regular files of the snapshot directory. On a real filesystem.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { SnapshotDamagedError } from '../../../src/errors.ts';
import { checkSnapshotFile, checkSnapshotListing } from '../../../src/repository/snapshot-files.ts';

const ID = '20261126T021500Z';
const sha = (text: string) => createHash('sha256').update(text).digest('hex');

describe('a snapshot listing as a restore checks it', () => {
  let dir: string;
  let snapshot: { id: string; path: string; manifest: null };
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'bysu-listing-'));
    snapshot = { id: ID, path: path.join(dir, ID), manifest: null };
    await mkdir(snapshot.path);
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Write a snapshot whose manifest lists `parts`, with SHA256SUMS made by `sums` from the right lines. */
  async function write(parts: string[], sums: (lines: string[]) => string[] = (lines) => lines): Promise<void> {
    const manifest = `${JSON.stringify({ format: 'bysu-snapshot/1', app: 'shop', id: ID, parts: parts.map((file) => ({ file, run: 'x' })) }, null, 2)}\n`;
    await writeFile(path.join(snapshot.path, 'manifest.json'), manifest);
    const lines = [`${sha(manifest)}  manifest.json`];
    for (const file of parts) {
      await writeFile(path.join(snapshot.path, file), `data of ${file}\n`);
      lines.unshift(`${sha(`data of ${file}\n`)}  ${file}`);
    }
    await writeFile(path.join(snapshot.path, 'SHA256SUMS'), sums(lines).map((line) => `${line}\n`).join(''));
  }

  const damaged = (pattern: RegExp) => (error: unknown) => error instanceof SnapshotDamagedError && pattern.test(error.message);

  test('a complete snapshot passes, and its files check against it', async () => {
    await write(['shop.sql', 'uploads.tar']);
    const checked = await checkSnapshotListing(snapshot, 'shop');
    assert.deepEqual(checked.manifest.parts.map((part) => part.file), ['shop.sql', 'uploads.tar']);
    assert.deepEqual(checked.sums.map((entry) => entry.file), ['uploads.tar', 'shop.sql', 'manifest.json']);
    assert.deepEqual(await checkSnapshotFile(checked, 'shop.sql'), { bytes: 'data of shop.sql\n'.length });
  });

  test('SHA256SUMS missing, malformed, or naming a path', async () => {
    await write(['shop.sql']);
    await rm(path.join(snapshot.path, 'SHA256SUMS'));
    await assert.rejects(checkSnapshotListing(snapshot, 'shop'), damaged(new RegExp(`^shop/${ID}/SHA256SUMS is missing$`)));
    await writeFile(path.join(snapshot.path, 'SHA256SUMS'), 'not a line\n');
    await assert.rejects(checkSnapshotListing(snapshot, 'shop'), damaged(new RegExp(`^shop/${ID}/SHA256SUMS: line 1 is malformed$`)));
    await writeFile(path.join(snapshot.path, 'SHA256SUMS'), `${'0'.repeat(64)}  ../../etc/passwd\n`);
    await assert.rejects(checkSnapshotListing(snapshot, 'shop'), damaged(/line 1 names "\.\.\/\.\.\/etc\/passwd", not a plain file name/));
  });

  test('manifest.json not listed, or not the bytes listed (an edited part list)', async () => {
    await write(['shop.sql'], (lines) => lines.filter((line) => !line.endsWith('manifest.json')));
    await assert.rejects(checkSnapshotListing(snapshot, 'shop'), damaged(new RegExp(`^shop/${ID}: SHA256SUMS does not list manifest\\.json$`)));
    await write(['shop.sql']);
    await writeFile(path.join(snapshot.path, 'manifest.json'), JSON.stringify({ parts: [] }));
    await assert.rejects(checkSnapshotListing(snapshot, 'shop'), damaged(new RegExp(`^shop/${ID}/manifest\\.json: checksum mismatch: SHA256SUMS says [0-9a-f]{64}, the file has [0-9a-f]{64}$`)));
  });

  test('a part the manifest lists but SHA256SUMS does not', async () => {
    await write(['shop.sql', 'uploads.tar'], (lines) => lines.filter((line) => !line.endsWith('uploads.tar')));
    await assert.rejects(checkSnapshotListing(snapshot, 'shop'), damaged(new RegExp(`^shop/${ID}: SHA256SUMS does not list uploads\\.tar, which manifest\\.json lists: those files cannot be checked$`)));
  });

  test('a file replaced by a symbolic link, or changed, is refused', async () => {
    await write(['shop.sql']);
    const checked = await checkSnapshotListing(snapshot, 'shop');
    await writeFile(path.join(dir, 'elsewhere.sql'), 'data of shop.sql\n');
    await rm(path.join(snapshot.path, 'shop.sql'));
    await symlink(path.join(dir, 'elsewhere.sql'), path.join(snapshot.path, 'shop.sql'));
    await assert.rejects(checkSnapshotFile(checked, 'shop.sql'), damaged(new RegExp(`^shop/${ID}/shop\\.sql is a symbolic link, not the file the snapshot wrote$`)));
    await rm(path.join(snapshot.path, 'shop.sql'));
    await writeFile(path.join(snapshot.path, 'shop.sql'), 'data of shop.sql, changed\n');
    await assert.rejects(checkSnapshotFile(checked, 'shop.sql'), damaged(/checksum mismatch/));
    await rm(path.join(snapshot.path, 'shop.sql'));
    await assert.rejects(checkSnapshotFile(checked, 'shop.sql'), damaged(new RegExp(`^shop/${ID}/shop\\.sql is missing$`)));
  });
});
