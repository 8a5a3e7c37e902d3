import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  archiveKind,
  compareSnapshotIds,
  isSnapshotId,
  snapshotIdCandidate,
  snapshotIdFor,
  snapshotIdTime,
} from '../../../src/repository/layout.ts';
import { parseSums, renderSums } from '../../../src/repository/manifest.ts';

const BASE = '20261126T021500Z';

describe('snapshot ids', () => {
  test('snapshotIdFor is the UTC start time to the second', () => {
    assert.equal(snapshotIdFor(new Date('2026-11-26T02:15:00.123Z')), BASE);
    assert.equal(snapshotIdFor(new Date('2026-11-26T02:15:00.999Z')), BASE);
    assert.equal(snapshotIdFor(new Date('2027-01-02T23:59:59.000Z')), '20270102T235959Z');
    // A local-time offset in the input does not leak into the id.
    assert.equal(snapshotIdFor(new Date('2026-11-26T03:15:00+01:00')), BASE);
  });

  test('snapshotIdCandidate: the base itself, then -2, -3…', () => {
    assert.equal(snapshotIdCandidate(BASE, 1), BASE);
    assert.equal(snapshotIdCandidate(BASE, 2), `${BASE}-2`);
    assert.equal(snapshotIdCandidate(BASE, 3), `${BASE}-3`);
    assert.equal(snapshotIdCandidate(BASE, 10), `${BASE}-10`);
    for (const n of [1, 2, 3, 9, 10, 11, 100]) assert.ok(isSnapshotId(snapshotIdCandidate(BASE, n)), `candidate ${n}`);
  });

  test('isSnapshotId accepts ids and their collision suffixes', () => {
    for (const id of [BASE, `${BASE}-2`, `${BASE}-9`, `${BASE}-10`, `${BASE}-123`, snapshotIdFor(new Date())]) {
      assert.equal(isSnapshotId(id), true, id);
    }
  });

  test('isSnapshotId rejects everything else in an app directory', () => {
    for (const name of [
      `${BASE}-1`,
      `${BASE}-0`,
      `${BASE}-01`,
      `${BASE}-`,
      `${BASE}-x`,
      'latest',
      '.incoming',
      '.commits',
      '20261126T021500',
      '20261126T0215Z',
      '2026-11-26T02:15:00Z',
      `${BASE}.tmp`,
      ` ${BASE}`,
      `../${BASE}`,
      '',
    ]) {
      assert.equal(isSnapshotId(name), false, JSON.stringify(name));
    }
  });

  test('compareSnapshotIds orders by time, then by suffix numerically', () => {
    const ids = [
      `${BASE}-10`,
      '20261127T000000Z',
      `${BASE}-2`,
      '20251231T235959Z',
      BASE,
      `${BASE}-3`,
      '20261126T021459Z',
    ];
    assert.deepEqual([...ids].sort(compareSnapshotIds), [
      '20251231T235959Z',
      '20261126T021459Z',
      BASE,
      `${BASE}-2`,
      `${BASE}-3`,
      `${BASE}-10`,
      '20261127T000000Z',
    ]);
    assert.ok(compareSnapshotIds(`${BASE}-10`, `${BASE}-2`) > 0, '-10 after -2');
    assert.ok(compareSnapshotIds(`${BASE}-2`, `${BASE}-10`) < 0);
    assert.ok(compareSnapshotIds(BASE, `${BASE}-2`) < 0, 'the base before -2');
    assert.equal(compareSnapshotIds(BASE, BASE), 0);
    // A later second sorts after any suffix of the earlier one.
    assert.ok(compareSnapshotIds(`${BASE}-99`, '20261126T021501Z') < 0);
  });

  test('snapshotIdTime round-trips with snapshotIdFor', () => {
    assert.equal(snapshotIdTime(BASE).toISOString(), '2026-11-26T02:15:00.000Z');
    assert.equal(snapshotIdTime(`${BASE}-10`).toISOString(), '2026-11-26T02:15:00.000Z');
    for (const iso of ['2026-11-26T02:15:00.000Z', '2000-02-29T23:59:59.000Z', '2038-01-19T03:14:08.000Z']) {
      const date = new Date(iso);
      assert.equal(snapshotIdTime(snapshotIdFor(date)).getTime(), date.getTime());
    }
    assert.ok(Number.isNaN(snapshotIdTime('latest').getTime()), 'not an id: an invalid date');
  });
});

describe('archiveKind', () => {
  test('.tar, .tar.gz and .tgz are archives; the rest are not', () => {
    assert.equal(archiveKind('uploads.tar'), 'tar');
    assert.equal(archiveKind('uploads.tar.gz'), 'tar.gz');
    assert.equal(archiveKind('uploads.tgz'), 'tar.gz');
    assert.equal(archiveKind('shop.sql'), null);
    assert.equal(archiveKind('shop.sql.gz'), null);
    assert.equal(archiveKind('notes.txt'), null);
    assert.equal(archiveKind('tar'), null);
    assert.equal(archiveKind('backup.tar.zst'), null);
  });
});

describe('SHA256SUMS', () => {
  function sha256(data: string | Buffer): string {
    return createHash('sha256').update(data).digest('hex');
  }

  test('renderSums output is accepted by coreutils `sha256sum -c`, and parseSums reads it back', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bysu-sums-'));
    try {
      const files: Record<string, Buffer> = {
        'shop.sql': Buffer.from('-- dump\nCREATE TABLE t (id int);\n'),
        'uploads.tar': Buffer.alloc(10240),
        'weird-name_2.v1.tar.gz': Buffer.from([0, 1, 2, 3, 255]),
        empty: Buffer.alloc(0),
      };
      const entries = Object.entries(files).map(([file, data]) => {
        fs.writeFileSync(path.join(dir, file), data);
        return { file, sha256: sha256(data) };
      });
      const text = renderSums(entries);
      assert.ok(text.endsWith('\n'));
      assert.equal(text.split('\n').length, entries.length + 1);
      fs.writeFileSync(path.join(dir, 'SHA256SUMS'), text);

      const check = spawnSync('sha256sum', ['-c', 'SHA256SUMS'], { cwd: dir, encoding: 'utf8' });
      assert.equal(check.status, 0, `sha256sum -c failed:\n${check.stdout}${check.stderr}`);
      for (const file of Object.keys(files)) assert.match(check.stdout, new RegExp(`^${file.replace(/[.]/g, '\\.')}: OK$`, 'm'));

      assert.deepEqual(parseSums(text), entries);

      // And sha256sum notices a changed file, so the check above means something.
      fs.appendFileSync(path.join(dir, 'shop.sql'), 'tampered\n');
      const tampered = spawnSync('sha256sum', ['-c', 'SHA256SUMS'], { cwd: dir, encoding: 'utf8' });
      assert.notEqual(tampered.status, 0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('parseSums reads what coreutils writes (text and binary mode)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bysu-sums-'));
    try {
      fs.writeFileSync(path.join(dir, 'a.sql'), 'a');
      fs.writeFileSync(path.join(dir, 'b.tar'), 'b');
      const text = spawnSync('sha256sum', ['a.sql', 'b.tar'], { cwd: dir, encoding: 'utf8' }).stdout;
      assert.deepEqual(parseSums(text), [
        { file: 'a.sql', sha256: sha256('a') },
        { file: 'b.tar', sha256: sha256('b') },
      ]);
      const binary = spawnSync('sha256sum', ['-b', 'a.sql'], { cwd: dir, encoding: 'utf8' }).stdout;
      assert.deepEqual(parseSums(binary), [{ file: 'a.sql', sha256: sha256('a') }]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('parseSums of an empty file is an empty list', () => {
    assert.deepEqual(parseSums(''), []);
    assert.deepEqual(renderSums([]), '');
  });

  test('a malformed line throws, naming the line', () => {
    const good = `${sha256('x')}  x.sql\n`;
    const malformed = [
      'not a checksum line',
      `${sha256('x').slice(0, 63)}  x.sql`, // 63 hex digits
      `${sha256('x').toUpperCase()}  x.sql`, // upper-case hex
      `${sha256('x')} x.sql`, // one space, no mode character
      `${sha256('x')}  `, // no file name
      `${sha256('x')}\tx.sql`,
    ];
    for (const line of malformed) {
      assert.throws(() => parseSums(`${good}${line}\n`), /SHA256SUMS line 2 is malformed/, JSON.stringify(line));
    }
  });
});
