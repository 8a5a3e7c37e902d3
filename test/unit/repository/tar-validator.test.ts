import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { InvalidArchiveError } from '../../../src/errors.ts';
import { MAX_WARNING_NAME_BYTES, MAX_WARNINGS_PER_PART } from '../../../src/repository/manifest.ts';
import { MAX_META_BYTES, TarValidator, type TarSummary } from '../../../src/repository/tar-validator.ts';
import { PartInspector } from '../../../src/repository/part-inspector.ts';
import { BLOCK, craftedTarClasses, END, endOfEntries, haveBsdtar, headerBlock, padToBlock, toolAccepts, verdictAsExpected } from '../../helpers/crafted-tars.ts';

/** 0 = the whole buffer in one write; the others are deliberately not multiples of 512. */
const CHUNKINGS = [0, 1, 511, 513, 7777];

function chunkLabel(size: number): string {
  return size === 0 ? 'whole' : `${size}-byte chunks`;
}

/** Deterministic bytes, so a failure can be reproduced. */
function pseudoRandomBytes(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let state = seed >>> 0;
  for (let index = 0; index < length; index += 1) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[index] = ((t ^ (t >>> 14)) >>> 0) & 0xff;
  }
  return out;
}

function validate(buffer: Buffer, chunkSize: number): TarSummary {
  const validator = new TarValidator();
  if (chunkSize === 0) validator.write(buffer);
  else for (let offset = 0; offset < buffer.length; offset += chunkSize) validator.write(buffer.subarray(offset, offset + chunkSize));
  return validator.finish();
}

/** Validate the buffer with every chunking; all must agree. */
function validateAllChunkings(buffer: Buffer): TarSummary {
  const results = CHUNKINGS.map((size) => ({ size, summary: validate(buffer, size) }));
  for (const { size, summary } of results) assert.deepEqual(summary, results[0]!.summary, `${chunkLabel(size)} disagree with a whole write`);
  return results[0]!.summary;
}

/** Assert that every chunking rejects the buffer with an InvalidArchiveError matching `pattern`. */
function assertRejectedAllChunkings(buffer: Buffer, pattern: RegExp): void {
  for (const size of CHUNKINGS) {
    assert.throws(
      () => validate(buffer, size),
      (error: unknown) => {
        assert.ok(error instanceof InvalidArchiveError, `${chunkLabel(size)}: expected InvalidArchiveError, got ${String(error)}`);
        assert.match(error.message, pattern, `${chunkLabel(size)}`);
        return true;
      },
      `${chunkLabel(size)}: archive was accepted`,
    );
  }
}

async function packWithTarStream(entries: { name: string; content: string | Buffer; type?: 'file' | 'directory' }[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const entry of entries) {
    if (entry.type === 'directory') pack.entry({ name: entry.name, type: 'directory' });
    else pack.entry({ name: entry.name }, entry.content);
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function gnuTar(args: string[], input?: Buffer): Buffer {
  const result = spawnSync('tar', args, { input, maxBuffer: 64 * 1024 * 1024 });
  assert.equal(result.status, 0, `tar ${args.join(' ')} failed: ${result.stderr?.toString()}`);
  return result.stdout;
}

/** How many entries GNU tar itself lists in the archive. */
function gnuTarCount(archive: Buffer): number {
  return gnuTar(['-tf', '-'], archive).toString('utf8').split('\n').filter((line) => line !== '').length;
}

/** One pax record `<len> key=value\n`, where len counts the whole record. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = body.length + 1;
  while (`${length}${body}`.length !== length) length += 1;
  return `${length}${body}`;
}

describe('TarValidator: good archives', () => {
  let dir: string;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bysu-tar-'));
    fs.mkdirSync(path.join(dir, 'tree', 'sub', 'deeper'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'tree', 'a.txt'), 'hello\n');
    fs.writeFileSync(path.join(dir, 'tree', 'empty'), '');
    fs.writeFileSync(path.join(dir, 'tree', 'sub', 'exactly-512'), Buffer.alloc(512, 'x'));
    fs.writeFileSync(path.join(dir, 'tree', 'sub', 'deeper', 'random.bin'), pseudoRandomBytes(20_000, 1));
    fs.writeFileSync(path.join(dir, 'tree', `${'long-name-'.repeat(15)}end.txt`), 'a long name\n');
    fs.symlinkSync('a.txt', path.join(dir, 'tree', 'link-to-a'));
    fs.linkSync(path.join(dir, 'tree', 'a.txt'), path.join(dir, 'tree', 'hardlink-to-a'));
    fs.mkdirSync(path.join(dir, 'big'));
    fs.writeFileSync(path.join(dir, 'big', 'hundred-k.bin'), pseudoRandomBytes(100 * 1024, 2));
  });

  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a tar-stream archive: entries counted, no warnings', async () => {
    const archive = await packWithTarStream([
      { name: 'dir/', content: '', type: 'directory' },
      { name: 'dir/a.txt', content: 'hello' },
      { name: 'dir/b.bin', content: pseudoRandomBytes(3000, 3) },
      { name: 'dir/empty', content: '' },
      { name: `dir/${'x'.repeat(150)}`, content: 'pax long name' },
    ]);
    assert.deepEqual(validateAllChunkings(archive), { entries: 5, warnings: [] });
  });

  test('a GNU tar archive with a long name (> 100 characters), links and an empty file', () => {
    const archive = gnuTar(['-cf', '-', '-C', path.join(dir, 'tree'), '.']);
    // The long name is stored as a GNU long-name ('L') header.
    assert.ok(archive.includes(Buffer.from('././@LongLink')), 'expected a GNU long-name header');
    const summary = validateAllChunkings(archive);
    assert.equal(summary.entries, gnuTarCount(archive));
    assert.equal(summary.entries, 10);
    assert.deepEqual(summary.warnings, []);
  });

  test('a pax (--format=posix) archive from GNU tar', () => {
    const archive = gnuTar(['--format=posix', '-cf', '-', '-C', path.join(dir, 'tree'), '.']);
    assert.ok(archive.includes(Buffer.from('PaxHeaders')), 'expected pax headers');
    const summary = validateAllChunkings(archive);
    assert.equal(summary.entries, gnuTarCount(archive));
    assert.deepEqual(summary.warnings, []);
  });

  test('a pax archive of a 100 KB file: its data is skipped, not read as headers', () => {
    const archive = gnuTar(['--format=posix', '-cf', '-', '-C', path.join(dir, 'big'), 'hundred-k.bin']);
    assert.deepEqual(validateAllChunkings(archive), { entries: 1, warnings: [] });
  });

  test('a ustar (--format=ustar) archive from GNU tar', () => {
    const archive = gnuTar(['--format=ustar', '-cf', '-', '-C', path.join(dir, 'big'), '.']);
    assert.deepEqual(validateAllChunkings(archive), { entries: 2, warnings: [] });
  });

  test('an empty archive: 1024 or 10240 zero bytes, 0 entries', () => {
    assert.deepEqual(validateAllChunkings(Buffer.alloc(1024)), { entries: 0, warnings: [] });
    assert.deepEqual(validateAllChunkings(Buffer.alloc(10240)), { entries: 0, warnings: [] });
    // GNU tar's own empty archive (a single 10240-byte record of zeros).
    const empty = gnuTar(['-cf', '-', '-T', '/dev/null']);
    assert.deepEqual(validateAllChunkings(empty), { entries: 0, warnings: [] });
  });

  test('a pax `size` record overrides the header size field', () => {
    // The ustar size field says 0; only a validator that honours the pax size
    // skips the 102400 data bytes (which would otherwise be read as headers).
    const data = pseudoRandomBytes(102_400, 4);
    const pax = Buffer.from(paxRecord('size', '102400') + paxRecord('path', 'big/file.bin'));
    const archive = Buffer.concat([
      headerBlock({ name: 'PaxHeaders/file.bin', size: pax.length, type: 'x' }),
      padToBlock(pax),
      headerBlock({ name: 'file.bin', size: 0, type: '0' }),
      data,
      headerBlock({ name: 'after.txt', size: 5, type: '0' }),
      padToBlock(Buffer.from('after')),
      END,
    ]);
    // GNU tar agrees: the archive is valid and holds a 102400-byte file and after.txt.
    const listing = gnuTar(['-tvf', '-'], archive).toString();
    assert.match(listing, /102400 .*big\/file\.bin/);
    assert.match(listing, /after\.txt/);
    assert.deepEqual(validateAllChunkings(archive), { entries: 2, warnings: [] });
  });

  test('a GNU base-256 size field is understood', () => {
    const sizeField = Buffer.alloc(12);
    sizeField[0] = 0x80;
    sizeField.writeUInt32BE(1000, 8);
    const archive = Buffer.concat([
      headerBlock({ name: 'b256.bin', size: 0, type: '0', sizeField, magic: 'gnu' }),
      padToBlock(pseudoRandomBytes(1000, 5)),
      END,
    ]);
    assert.match(gnuTar(['-tvf', '-'], archive).toString(), /1000 .*b256\.bin/);
    assert.deepEqual(validateAllChunkings(archive), { entries: 1, warnings: [] });
  });
});

describe('TarValidator: truncated and malformed archives', () => {
  let archive: Buffer;
  let lastEntryEnd: number;

  before(async () => {
    archive = await packWithTarStream([
      { name: 'one.txt', content: 'first file\n' },
      { name: 'two.bin', content: pseudoRandomBytes(5000, 6) },
      { name: 'three.txt', content: 'the last file ends with text\n' },
    ]);
    lastEntryEnd = endOfEntries(archive);
    assert.equal(archive.length - lastEntryEnd, 1024, 'tar-stream ends with exactly two zero blocks');
    assert.deepEqual(validate(archive, 0), { entries: 3, warnings: [] });
  });

  test('truncated in the middle of an entry\'s data', () => {
    assertRejectedAllChunkings(archive.subarray(0, 512 + 512 + 2000), /truncated/);
  });

  test('truncated in the middle of a header', () => {
    assertRejectedAllChunkings(archive.subarray(0, 512 + 512 + 100), /truncated/);
  });

  test('truncated exactly at an entry boundary (no end-of-archive marker)', () => {
    const cut = archive.subarray(0, lastEntryEnd);
    assert.equal(cut.length % BLOCK, 0);
    for (const size of CHUNKINGS) {
      const validator = new TarValidator();
      // Every write succeeds: nothing is wrong with the bytes seen so far…
      if (size === 0) validator.write(cut);
      else for (let offset = 0; offset < cut.length; offset += size) validator.write(cut.subarray(offset, offset + size));
      // …but the end of the stream shows the archive is incomplete.
      assert.throws(() => validator.finish(), (error: unknown) => error instanceof InvalidArchiveError && /truncated/.test(error.message), chunkLabel(size));
    }
  });

  test('a GNU tar archive cut after the last entry is rejected', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bysu-tar-'));
    try {
      fs.writeFileSync(path.join(dir, 'f.txt'), 'some text that is not zeros\n');
      const full = gnuTar(['-cf', '-', '-C', dir, 'f.txt']);
      assert.equal(full.length, 10240);
      assertRejectedAllChunkings(full.subarray(0, endOfEntries(full)), /truncated/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('only one of the two end-of-archive zero blocks', () => {
    assertRejectedAllChunkings(archive.subarray(0, lastEntryEnd + BLOCK), /truncated/);
  });

  test('a lone zero block followed by another header', () => {
    const broken = Buffer.concat([archive.subarray(0, 1024), Buffer.alloc(BLOCK), archive.subarray(1024)]);
    assertRejectedAllChunkings(broken, /lone zero block/);
  });

  test('garbage bytes: bad header checksum', () => {
    assertRejectedAllChunkings(pseudoRandomBytes(4096, 7), /bad header checksum at byte 0/);
  });

  test('a header whose checksum is off by one', () => {
    const broken = Buffer.from(archive);
    broken[0] = broken[0]! + 1; // the name changed; the stored checksum did not
    assertRejectedAllChunkings(broken, /bad header checksum at byte 0/);
  });

  test('a corrupted header of a later entry names its offset', () => {
    const broken = Buffer.from(archive);
    const second = 1024; // header of two.bin
    broken[second + 10] = 0x41;
    assertRejectedAllChunkings(broken, new RegExp(`bad header checksum at byte ${second}\\b`));
  });

  test('a bad size field', () => {
    const block = headerBlock({ name: 'bad-size', size: 0, type: '0', sizeField: Buffer.from('12345678x01\0', 'latin1') });
    assertRejectedAllChunkings(Buffer.concat([block, END]), /bad size field/);
  });

  test('non-zero data after the end-of-archive marker', () => {
    assertRejectedAllChunkings(Buffer.concat([archive, Buffer.from('trailing junk')]), /after the end-of-archive marker/);
    // A second archive appended to the first (GNU tar would silently ignore it without -i).
    assertRejectedAllChunkings(Buffer.concat([archive, archive]), /after the end-of-archive marker/);
    // A single non-zero byte in the record padding of a GNU tar archive.
    const padded = Buffer.concat([archive, Buffer.alloc(8192)]);
    padded[padded.length - 1] = 1;
    assertRejectedAllChunkings(padded, /after the end-of-archive marker/);
    // Zero padding after the marker is fine.
    assert.equal(validateAllChunkings(Buffer.concat([archive, Buffer.alloc(8192)])).entries, 3);
  });

  test(`a pax header claiming more than MAX_META_BYTES (${MAX_META_BYTES}) fails at its header, without buffering`, () => {
    for (const type of ['x', 'g', 'L']) {
      const block = headerBlock({ name: type === 'L' ? '././@LongLink' : 'PaxHeaders/huge', size: MAX_META_BYTES + 1, type });
      // Only the header block is written: it must throw there and then.
      const validator = new TarValidator();
      assert.throws(
        () => validator.write(block),
        (error: unknown) => error instanceof InvalidArchiveError && /exceeds/.test(error.message) && error.message.includes(String(MAX_META_BYTES)),
        `typeflag ${type}`,
      );
      // Byte by byte too: the throw comes on the header's last byte.
      const slow = new TarValidator();
      for (let offset = 0; offset < BLOCK - 1; offset += 1) slow.write(block.subarray(offset, offset + 1));
      assert.throws(() => slow.write(block.subarray(BLOCK - 1)), InvalidArchiveError);
    }
    // A huge size, e.g. 1 GiB, is rejected just the same.
    const giant = headerBlock({ name: 'PaxHeaders/giant', size: 1024 ** 3, type: 'x' });
    assert.throws(() => new TarValidator().write(giant), /exceeds/);
  });

  test('a malformed pax header', () => {
    const pax = Buffer.from('this is not a pax record\n');
    const archive = Buffer.concat([
      headerBlock({ name: 'PaxHeaders/bad', size: pax.length, type: 'x' }),
      padToBlock(pax),
      headerBlock({ name: 'f', size: 0, type: '0' }),
      END,
    ]);
    assertRejectedAllChunkings(archive, /malformed pax header/);
  });

  test('a pax size that is not a number', () => {
    const pax = Buffer.from(paxRecord('size', 'lots'));
    const archive = Buffer.concat([
      headerBlock({ name: 'PaxHeaders/bad', size: pax.length, type: 'x' }),
      padToBlock(pax),
      headerBlock({ name: 'f', size: 0, type: '0' }),
      END,
    ]);
    assertRejectedAllChunkings(archive, /bad pax size/);
  });

  test('an empty stream is not an archive', () => {
    assert.throws(() => new TarValidator().finish(), (error: unknown) => error instanceof InvalidArchiveError && /truncated/.test(error.message));
  });
});

describe('TarValidator: unsafe names are warnings, not errors', () => {
  test('"../etc/passwd" and "/etc/shadow" are accepted with a warning each', async () => {
    const archive = await packWithTarStream([
      { name: 'fine.txt', content: 'ok' },
      { name: '../etc/passwd', content: 'root:x:0:0' },
      { name: '/etc/shadow', content: 'root:*' },
      { name: 'a/b/../c.txt', content: 'dot-dot in the middle' },
      { name: 'a/..b/c..', content: 'dots but no ".." component' },
    ]);
    const summary = validateAllChunkings(archive);
    assert.equal(summary.entries, 5);
    assert.equal(summary.warnings.length, 3, summary.warnings.join('\n'));
    assert.ok(summary.warnings.some((warning) => warning.includes('"../etc/passwd"') && warning.includes('..')));
    assert.ok(summary.warnings.some((warning) => warning.includes('"/etc/shadow"') && warning.includes('absolute')));
    assert.ok(summary.warnings.some((warning) => warning.includes('"a/b/../c.txt"')));
    assert.ok(!summary.warnings.some((warning) => warning.includes('..b')));
  });

  test('unsafe long names (pax path) are found too', async () => {
    const longUnsafe = `../${'x'.repeat(150)}`;
    const archive = await packWithTarStream([{ name: longUnsafe, content: 'x' }]);
    const summary = validateAllChunkings(archive);
    assert.equal(summary.entries, 1);
    assert.equal(summary.warnings.length, 1);
    assert.ok(summary.warnings[0]!.includes(longUnsafe), summary.warnings[0]);
  });

  test('absolute and ".." names written by GNU tar -P (ustar and GNU long names)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bysu-tar-'));
    try {
      fs.mkdirSync(path.join(dir, 'sub'));
      const longFile = `${'l'.repeat(120)}.txt`;
      fs.writeFileSync(path.join(dir, longFile), 'long\n');
      fs.writeFileSync(path.join(dir, 'abs.txt'), 'abs\n');
      const absolute = path.join(dir, 'abs.txt');
      const archive = gnuTar(['-P', '-cf', '-', '-C', path.join(dir, 'sub'), `../${longFile}`, absolute]);
      const summary = validateAllChunkings(archive);
      assert.equal(summary.entries, 2);
      assert.ok(summary.warnings.some((warning) => warning.includes(`"../${longFile}"`)), summary.warnings.join('\n'));
      assert.ok(summary.warnings.some((warning) => warning.includes(`"${absolute}"`) && warning.includes('absolute')), summary.warnings.join('\n'));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an absolute name in a GNU incremental (-G) archive is warned about', () => {
    // GNU-format headers carry atime/ctime where POSIX ustar has its name
    // prefix (bytes 345…); with --incremental GNU tar fills them in. They
    // must not be mistaken for a prefix that hides the leading "/".
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bysu-tar-'));
    try {
      const absolute = path.join(dir, 'abs.txt');
      fs.writeFileSync(absolute, 'abs\n');
      const archive = gnuTar(['--format=gnu', '-G', '-P', '-cf', '-', absolute]);
      assert.match(gnuTar(['-tf', '-'], archive).toString(), new RegExp(`^${absolute.replace(/[.]/g, '\\.')}$`, 'm'));
      const summary = validateAllChunkings(archive);
      assert.equal(summary.entries, 1);
      assert.deepEqual(summary.warnings, [`entry "${absolute}": absolute path`]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test(`warnings at the bound: ${MAX_WARNINGS_PER_PART} unsafe names are all kept, one more is only counted`, async () => {
    // Fails before the fix: the old cap was 50 and the 21st name was kept whole.
    const unsafeNames = (count: number) => Array.from({ length: count }, (_, index) => ({ name: `/abs/${index}`, content: `${index}` }));
    const atBound = validateAllChunkings(await packWithTarStream(unsafeNames(MAX_WARNINGS_PER_PART)));
    assert.equal(atBound.warnings.length, MAX_WARNINGS_PER_PART);
    assert.equal(atBound.omittedWarnings, undefined);
    const overBound = validateAllChunkings(await packWithTarStream(unsafeNames(MAX_WARNINGS_PER_PART + 1)));
    assert.equal(overBound.entries, MAX_WARNINGS_PER_PART + 1);
    assert.deepEqual(overBound.warnings, atBound.warnings);
    assert.equal(overBound.omittedWarnings, 1);
    // A hundred thousand more cost a counter, not memory.
    const many = validateAllChunkings(await packWithTarStream(unsafeNames(20_000)));
    assert.equal(many.warnings.length, MAX_WARNINGS_PER_PART);
    assert.equal(many.omittedWarnings, 20_000 - MAX_WARNINGS_PER_PART);
  });

  test(`a 256 KiB name is cut to ${MAX_WARNING_NAME_BYTES} bytes in its warning, with its length; control characters are escaped`, async () => {
    // Fails before the fix: the warning held the whole name, JSON-escaped to about 1.5 M characters.
    const head = '/\u001b[2J\u009b31m\u202e';
    const name = head + '\u0001'.repeat(256 * 1024 - Buffer.byteLength(head));
    const summary = validateAllChunkings(await packWithTarStream([{ name, content: 'x' }]));
    assert.equal(summary.warnings.length, 1);
    const warning = summary.warnings[0]!;
    assert.ok(Buffer.byteLength(warning) <= MAX_WARNING_NAME_BYTES + 50, `a warning of ${Buffer.byteLength(warning)} bytes`);
    assert.ok(warning.startsWith('entry "/\\u001b[2J\\u009b31m\\u202e\\u0001'), warning);
    assert.ok(warning.endsWith(`"… (${256 * 1024}-byte name): absolute path`), warning);
    assert.doesNotMatch(warning, /[\u0000-\u001f\u007f-\u009f\u202e]/);
    // A short name with an escape sequence is kept whole, escaped.
    const short = validateAllChunkings(await packWithTarStream([{ name: '../\u001b]0;title\u0007', content: 'x' }]));
    assert.deepEqual(short.warnings, ['entry "../\\u001b]0;title\\u0007": ".." in path']);
  });
});

describe('PartInspector', () => {
  let goodTar: Buffer;

  before(async () => {
    goodTar = await packWithTarStream([
      { name: 'a.txt', content: 'hello\n' },
      { name: 'b.bin', content: pseudoRandomBytes(20_000, 8) },
      { name: '../escape', content: 'x' },
    ]);
  });

  function sha256(buffer: Buffer): string {
    return createHash('sha256').update(buffer).digest('hex');
  }

  async function inspect(file: string, buffer: Buffer, chunkSize: number) {
    const inspector = new PartInspector(file);
    try {
      for (let offset = 0; offset < buffer.length; offset += chunkSize) await inspector.update(buffer.subarray(offset, offset + chunkSize));
      return await inspector.finish();
    } catch (error) {
      inspector.discard();
      throw error;
    }
  }

  /** Fail the test instead of hanging when a promise never settles. */
  async function withinSeconds<T>(seconds: number, what: string, promise: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not settle within ${seconds}s`)), seconds * 1000);
    });
    try {
      return await Promise.race([promise, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  test('a gzipped good tar validates; sha256 and bytes are of the compressed file', async () => {
    const gz = gzipSync(goodTar);
    for (const chunkSize of [gz.length, 1, 511, 4096]) {
      for (const file of ['data.tar.gz', 'data.tgz']) {
        const inspection = await withinSeconds(10, `${file} in ${chunkSize}-byte chunks`, inspect(file, gz, chunkSize));
        assert.equal(inspection.bytes, gz.length);
        assert.equal(inspection.sha256, sha256(gz));
        assert.equal(inspection.tar?.entries, 3);
        assert.deepEqual(inspection.tar?.warnings, ['entry "../escape": ".." in path']);
      }
    }
  });

  test('a gzipped GNU tar archive validates', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bysu-tgz-'));
    try {
      fs.writeFileSync(path.join(dir, 'f.bin'), pseudoRandomBytes(30_000, 9));
      const tgz = gnuTar(['-czf', '-', '-C', dir, '.']);
      const inspection = await withinSeconds(10, 'gnu tgz', inspect('site.tar.gz', tgz, 1000));
      assert.equal(inspection.tar?.entries, 2);
      assert.equal(inspection.sha256, sha256(tgz));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a truncated gzip stream is rejected', async () => {
    const gz = gzipSync(goodTar);
    for (const cut of [gz.length - 8, Math.floor(gz.length / 2), 30]) {
      await assert.rejects(
        withinSeconds(10, `gzip cut at ${cut}`, inspect('data.tar.gz', gz.subarray(0, cut), 1000)),
        (error: unknown) => error instanceof InvalidArchiveError,
        `cut at ${cut}`,
      );
    }
  });

  test('a complete gzip stream of a truncated tar is rejected', async () => {
    const gz = gzipSync(goodTar.subarray(0, endOfEntries(goodTar)));
    await assert.rejects(withinSeconds(10, 'gzip of truncated tar', inspect('data.tar.gz', gz, 1000)), (error: unknown) => error instanceof InvalidArchiveError && /truncated/.test(error.message));
  });

  test('a gzip stream of garbage is rejected', async () => {
    const gz = gzipSync(pseudoRandomBytes(100_000, 10));
    await assert.rejects(withinSeconds(10, 'gzip of garbage', inspect('data.tar.gz', gz, 1000)), (error: unknown) => error instanceof InvalidArchiveError && /checksum/.test(error.message));
  });

  test('a .tar.gz part that is not gzip at all is rejected (and does not hang)', async () => {
    // E.g. a command that writes a plain tar to a part named *.tar.gz.
    for (const chunkSize of [goodTar.length, 1000]) {
      await assert.rejects(
        withinSeconds(5, `plain tar as .tar.gz in ${chunkSize}-byte chunks`, inspect('data.tar.gz', goodTar, chunkSize)),
        (error: unknown) => error instanceof InvalidArchiveError && /gzip/.test(error.message),
      );
    }
  });

  test('a gzip stream followed by zero padding is accepted; by other data, rejected', async () => {
    const gz = gzipSync(goodTar);
    const padded = await withinSeconds(5, 'gzip + zero padding', inspect('data.tgz', Buffer.concat([gz, Buffer.alloc(1024)]), 700));
    assert.equal(padded.tar?.entries, 3);
    await assert.rejects(
      withinSeconds(5, 'gzip + junk', inspect('data.tgz', Buffer.concat([gz, Buffer.alloc(512), Buffer.from('junk')]), 700)),
      /data after its end/,
    );
  });

  test('a plain .tar part is validated as it streams', async () => {
    const inspection = await inspect('data.tar', goodTar, 777);
    assert.equal(inspection.tar?.entries, 3);
    assert.equal(inspection.sha256, sha256(goodTar));
    await assert.rejects(inspect('data.tar', goodTar.subarray(0, 3000), 777), InvalidArchiveError);
    await assert.rejects(inspect('data.tar', pseudoRandomBytes(2048, 11), 777), /bad header checksum/);
  });

  test('a .sql part is only counted and hashed', async () => {
    const dump = Buffer.concat([Buffer.from('-- PostgreSQL database dump\n'), pseudoRandomBytes(70_000, 12)]);
    const inspection = await inspect('shop.sql', dump, 4096);
    assert.equal(inspection.bytes, dump.length);
    assert.equal(inspection.sha256, sha256(dump));
    assert.equal(inspection.tar, undefined);
    // Not tar, and not judged as such: garbage is fine, so is nothing at all.
    const empty = await inspect('empty.sql', Buffer.alloc(0), 1);
    assert.equal(empty.bytes, 0);
    assert.equal(empty.sha256, sha256(Buffer.alloc(0)));
  });
});

describe('old-GNU sparse archives (tar -S)', () => {
  test('a sparse file with many segments (extension headers) validates, as GNU tar reads it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bysu-sparse-'));
    try {
      const file = path.join(dir, 'sparse.img');
      fs.writeFileSync(file, '');
      fs.truncateSync(file, 10 * 1024 * 1024);
      const fd = fs.openSync(file, 'r+');
      // Whole 4 KiB blocks of data, so a validator that lost its place lands in data, not in zeros.
      for (let segment = 0; segment < 30; segment += 1) fs.writeSync(fd, Buffer.alloc(4096, 88), 0, 4096, segment * 74 * 4096);
      fs.closeSync(fd);
      const archive = gnuTar(['-S', '-C', dir, '-cf', '-', 'sparse.img']);
      assert.equal(archive[156], 'S'.charCodeAt(0), 'GNU tar wrote an old-GNU sparse header');
      assert.notEqual(archive[482], 0, 'with extension blocks');
      assert.deepEqual(validateAllChunkings(archive), { entries: 1, warnings: [] });
      assertRejectedAllChunkings(archive.subarray(0, 2048), /truncated/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * BYSU's verdict beside GNU tar's and bsdtar's on archives crafted block by
 * block (test/helpers/crafted-tars.ts says what each case expects and why).
 * Fails before the fix: on class 1 (a NUL in the keyword, no final newline,
 * CR for LF, a hexadecimal length: accepted), class 2 (x, L, K then the end
 * marker: accepted) and class 3 (one NUL before the digits: refused; a
 * base-256 checksum: accepted).
 */
describe('TarValidator against GNU tar and bsdtar', () => {
  function bysuAccepts(archive: Buffer): boolean {
    try {
      validateAllChunkings(archive);
      return true;
    } catch (error) {
      if (error instanceof InvalidArchiveError) return false;
      throw error;
    }
  }

  const skip = haveBsdtar() ? false : 'bsdtar is not installed (apt-get install libarchive-tools): nothing to compare with';
  for (const { title, cases } of craftedTarClasses()) {
    test(`${title}: BYSU's verdict beside GNU tar's and bsdtar's`, { skip }, () => {
      const wrong: string[] = [];
      for (const { name, side, archive } of cases) {
        const verdicts = { gnu: toolAccepts('tar', archive), bsd: toolAccepts('bsdtar', archive), bysu: bysuAccepts(archive) };
        if (!verdictAsExpected(side, verdicts)) {
          const say = (accepts: boolean) => (accepts ? 'accepts' : 'refuses');
          wrong.push(`${name} (${side}): GNU tar ${say(verdicts.gnu)}, bsdtar ${say(verdicts.bsd)}, BYSU ${say(verdicts.bysu)}`);
        }
      }
      assert.deepEqual(wrong, [], `verdicts not as expected:\n${wrong.join('\n')}`);
    });
  }
});

describe('TarValidator: onEntry (what bysu restore --extract judges)', () => {
  /** Given an archive, return the entries onEntry saw, with every chunking agreeing. */
  function entriesOf(archive: Buffer): { name: string; type: string; linkName: string }[] {
    const seen = CHUNKINGS.map((size) => {
      const entries: { name: string; type: string; linkName: string }[] = [];
      const validator = new TarValidator({ onEntry: (entry) => entries.push(entry) });
      if (size === 0) validator.write(archive);
      else for (let offset = 0; offset < archive.length; offset += size) validator.write(archive.subarray(offset, offset + size));
      validator.finish();
      return entries;
    });
    for (const entries of seen) assert.deepEqual(entries, seen[0]);
    return seen[0]!;
  }

  test('names, types and link targets as GNU tar wrote them: ustar, a GNU long link name, a pax linkpath', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bysu-tar-'));
    try {
      const long = `${'deep/'.repeat(30)}target.txt`;
      fs.mkdirSync(path.join(dir, 'tree'));
      fs.writeFileSync(path.join(dir, 'tree/file.txt'), 'x\n');
      fs.symlinkSync('file.txt', path.join(dir, 'tree/short'));
      fs.symlinkSync(long, path.join(dir, 'tree/long'));
      fs.linkSync(path.join(dir, 'tree/file.txt'), path.join(dir, 'tree/hard'));
      for (const format of ['gnu', 'pax', 'ustar'] as const) {
        // ustar cannot hold a link target over 100 bytes: that archive leaves the long link out.
        const members = format === 'ustar' ? ['tree/file.txt', 'tree/short', 'tree/hard'] : ['tree/file.txt', 'tree/short', 'tree/long', 'tree/hard'];
        const archive = gnuTar([`--format=${format}`, '-cf', '-', '-C', dir, ...members]);
        const entries = entriesOf(archive);
        const expected = [
          { name: 'tree/file.txt', type: '0', linkName: '' },
          { name: 'tree/short', type: '2', linkName: 'file.txt' },
          ...(format === 'ustar' ? [] : [{ name: 'tree/long', type: '2', linkName: long }]),
          { name: 'tree/hard', type: '1', linkName: 'tree/file.txt' },
        ];
        assert.deepEqual(entries, expected, format);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the hook does not change the verdict: the same summary with and without it', async () => {
    const archive = await packWithTarStream([{ name: '../up.txt', content: 'x' }, { name: 'ok.txt', content: 'y' }]);
    const without = validate(archive, 0);
    const validator = new TarValidator({ onEntry: () => undefined });
    validator.write(archive);
    assert.deepEqual(validator.finish(), without);
  });
});
