/**
 * Tar archives crafted block by block, and the verdict BYSU should give on
 * each beside GNU tar's and bsdtar's. The unit test of the validator and the
 * fault suite share them, so the ledger counts the same archives the unit
 * test checks.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const BLOCK = 512;
/** The end-of-archive marker: two zero blocks. */
export const END = Buffer.alloc(2 * BLOCK);

/** A ustar header block built by hand, with a correct checksum unless `checksumField` writes its own. */
export function headerBlock(options: { name: string; size: number; type: string; sizeField?: Buffer; magic?: 'ustar' | 'gnu'; checksumField?: (sum: number) => Buffer }): Buffer {
  const block = Buffer.alloc(BLOCK);
  block.write(options.name, 0, 100, 'utf8');
  block.write('0000644\0', 100, 'latin1');
  block.write('0000000\0', 108, 'latin1');
  block.write('0000000\0', 116, 'latin1');
  if (options.sizeField) options.sizeField.copy(block, 124);
  else block.write(`${options.size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  block.write(`${Math.floor(Date.UTC(2026, 10, 26) / 1000).toString(8).padStart(11, '0')}\0`, 136, 'latin1');
  block.write(options.type, 156, 'latin1');
  if (options.magic === 'gnu') block.write('ustar  \0', 257, 'latin1');
  else block.write('ustar\x0000', 257, 'latin1');
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  if (options.checksumField) options.checksumField(sum).copy(block, 148);
  else block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return block;
}

export function padToBlock(data: Buffer): Buffer {
  const padded = Buffer.alloc(Math.ceil(data.length / BLOCK) * BLOCK);
  data.copy(padded);
  return padded;
}

/** Offset just after the last entry's padded data (i.e. where the end-of-archive marker starts). */
export function endOfEntries(archive: Buffer): number {
  let last = archive.length - 1;
  while (last >= 0 && archive[last] === 0) last -= 1;
  return Math.ceil((last + 1) / BLOCK) * BLOCK;
}

/**
 * Whose verdict BYSU should give:
 * - 'both': GNU tar and bsdtar agree (checked, so a new tool version that
 *   changes its mind is noticed) and BYSU must agree with them;
 * - 'gnu' / 'bsdtar': the tools disagree and BYSU deliberately sides with one;
 * - 'strict': both tools pass the archive and BYSU refuses it on purpose
 *   (README, "Archive validation").
 */
export type Side = 'both' | 'gnu' | 'bsdtar' | 'strict';

export interface CraftedTar {
  name: string;
  side: Side;
  archive: Buffer;
}

export interface CraftedClass {
  title: string;
  cases: CraftedTar[];
}

/** True when bsdtar (libarchive-tools) is installed. */
export function haveBsdtar(): boolean {
  return spawnSync('bsdtar', ['--version']).status === 0;
}

/** Given a tool and an archive, say whether `<tool> -tf -` reads it without error (exit 0). */
export function toolAccepts(tool: 'tar' | 'bsdtar', archive: Buffer): boolean {
  const result = spawnSync(tool, ['-tf', '-'], { input: archive });
  if (result.error) throw result.error;
  return result.status === 0;
}

/** Given the verdicts, say whether BYSU's is the one its case expects. */
export function verdictAsExpected(side: Side, verdicts: { gnu: boolean; bsd: boolean; bysu: boolean }): boolean {
  const { gnu, bsd, bysu } = verdicts;
  switch (side) {
    case 'both': return gnu === bsd && bysu === gnu;
    case 'gnu': return gnu !== bsd && bysu === gnu;
    case 'bsdtar': return gnu !== bsd && bysu === bsd;
    case 'strict': return gnu && bsd && !bysu;
  }
}

function gnuTarOf(files: Record<string, string>): Buffer {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bysu-crafted-'));
  try {
    for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), content);
    const result = spawnSync('tar', ['-cf', '-', '-C', dir, ...Object.keys(files)]);
    if (result.status !== 0) throw new Error(`tar -c failed: ${result.stderr.toString()}`);
    return result.stdout;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The three classes where BYSU's validator disagreed with both tools (issue
 * 11), the cases around them, and the deliberate strictness.
 */
export function craftedTarClasses(): CraftedClass[] {
  const file = (name = 'f.txt', content = 'abcdefghij') => [headerBlock({ name, size: Buffer.byteLength(content), type: '0' }), padToBlock(Buffer.from(content))];
  const paxHeader = (records: string, type = 'x') => {
    const data = Buffer.from(records, 'latin1');
    return [headerBlock({ name: 'PaxHeaders/f.txt', size: data.length, type }), padToBlock(data)];
  };
  const longName = (type: 'L' | 'K', text: string) => {
    const data = Buffer.from(`${text}\0`);
    return [headerBlock({ name: '././@LongLink', size: data.length, type, magic: 'gnu' }), padToBlock(data)];
  };
  /** A 10-byte file (or an empty one) whose size field is written as given, then another file. */
  const sizeField = (field: string, content = 'abcdefghij') => [
    headerBlock({ name: 'f.txt', size: 0, type: '0', sizeField: Buffer.from(field, 'latin1') }),
    ...(content ? [padToBlock(Buffer.from(content))] : []),
    ...file('after.txt', 'z'),
    END,
  ];
  const checksum = (write: (sum: number) => Buffer) => [headerBlock({ name: 'f.txt', size: 0, type: '0', checksumField: write }), END];
  const archive = (...blocks: Buffer[]) => Buffer.concat(blocks);

  const pax: CraftedTar[] = [
    { name: 'pax: a good record', side: 'both', archive: archive(...paxHeader('12 path=abc\n'), ...file(), END) },
    { name: 'pax: a record with no "="', side: 'both', archive: archive(...paxHeader('12 pathxabc\n'), ...file(), END) },
    { name: 'pax: a NUL inside the keyword', side: 'both', archive: archive(...paxHeader('12 pa\0h=abc\n'), ...file(), END) },
    { name: 'pax: a NUL where the keyword starts', side: 'both', archive: archive(...paxHeader('13 \0path=abc\n'), ...file(), END) },
    { name: 'pax: a record that does not end in a newline', side: 'both', archive: archive(...paxHeader('12 path=abcX'), ...file(), END) },
    { name: 'pax: a record ending in CR, not LF', side: 'both', archive: archive(...paxHeader('12 path=abc\r'), ...file(), END) },
    { name: 'pax: a second record without its newline', side: 'both', archive: archive(...paxHeader('12 path=abc\n12 path=abcX'), ...file(), END) },
    { name: 'pax: a length longer than the record', side: 'both', archive: archive(...paxHeader('13 path=abc\n'), ...file(), END) },
    { name: 'pax: a length shorter than the record', side: 'both', archive: archive(...paxHeader('11 path=abc\n'), ...file(), END) },
    { name: 'pax: a length past the header', side: 'both', archive: archive(...paxHeader('99 path=abc\n'), ...file(), END) },
    { name: 'pax: a hexadecimal length', side: 'both', archive: archive(...paxHeader('0xd path=abc\n'), ...file(), END) },
    { name: 'pax: a length with leading zeros that matches', side: 'both', archive: archive(...paxHeader('013 path=abc\n'), ...file(), END) },
    { name: 'pax: a NUL inside the value', side: 'both', archive: archive(...paxHeader('12 path=a\0c\n'), ...file(), END) },
    { name: 'pax: an unknown keyword', side: 'both', archive: archive(...paxHeader('15 foo.bar=abc\n'), ...file(), END) },
    { name: 'pax: a NUL after the last record (GNU tar stops there; bsdtar refuses)', side: 'gnu', archive: archive(...paxHeader('12 path=abc\n\0\0\0'), ...file(), END) },
    { name: 'pax: a malformed global record (bsdtar ignores global headers; GNU tar refuses)', side: 'gnu', archive: archive(...paxHeader('12 path=abcX', 'g'), ...file(), END) },
  ];

  const orphans: CraftedTar[] = [
    ...(['x', 'L', 'K'] as const).flatMap((type): CraftedTar[] => {
      const meta = type === 'x' ? paxHeader('12 path=abc\n') : longName(type, 'a-long-name');
      return [
        { name: `a lone ${type} header, then the end marker (GNU tar drops it silently; bsdtar: damaged)`, side: 'bsdtar', archive: archive(...meta, END) },
        { name: `a file, then a ${type} header, the end marker and zero padding`, side: 'bsdtar', archive: archive(...file(), ...meta, END, Buffer.alloc(8192)) },
      ];
    }),
    { name: 'an empty x header, then the end marker', side: 'bsdtar', archive: archive(headerBlock({ name: 'PaxHeaders/f', size: 0, type: 'x' }), END) },
    { name: 'a global (g) header, then the end marker', side: 'both', archive: archive(...paxHeader('12 path=abc\n', 'g'), END) },
    { name: 'a file, then a global (g) header and the end marker', side: 'both', archive: archive(...file(), ...paxHeader('12 path=abc\n', 'g'), END) },
    { name: 'a long name, then a pax header, then its file', side: 'both', archive: archive(...longName('L', 'a-long-name'), ...paxHeader('12 path=abc\n'), ...file(), END) },
  ];

  const b256Checksum = (sum: number) => {
    const field = Buffer.alloc(8);
    field[0] = 0x80;
    field.writeUInt32BE(sum, 4);
    return field;
  };
  const numeric: CraftedTar[] = [
    { name: 'size: one NUL before the octal digits, size 0', side: 'both', archive: archive(...sizeField('\x000000000000\0', '')) },
    { name: 'size: one NUL before the octal digits (bsdtar reads 0, skips the data it calls damaged, exit 0)', side: 'both', archive: archive(...sizeField('\x000000000012\0')) },
    { name: 'size: one NUL, spaces, then the octal digits', side: 'both', archive: archive(...sizeField('\0        12\0')) },
    { name: 'size: leading spaces', side: 'both', archive: archive(...sizeField('         12\0')) },
    { name: 'size: trailing space and NUL', side: 'both', archive: archive(...sizeField('0000000012 \0')) },
    { name: 'size: trailing spaces', side: 'both', archive: archive(...sizeField('12          ')) },
    { name: 'size: trailing NULs', side: 'both', archive: archive(...sizeField('12\0\0\0\0\0\0\0\0\0\0')) },
    { name: 'size: twelve digits, no terminator', side: 'both', archive: archive(...sizeField('000000000012')) },
    { name: 'size: all NULs (0)', side: 'both', archive: archive(...sizeField('\0'.repeat(12), '')) },
    { name: 'size: GNU base-256 (0x80)', side: 'both', archive: archive(...sizeField(`\x80${'\0'.repeat(10)}\x0a`)) },
    { name: 'size: base-256 with 0x81', side: 'both', archive: archive(...sizeField(`\x81${'\0'.repeat(10)}\x0a`)) },
    { name: 'size: a non-octal digit', side: 'both', archive: archive(...sizeField('00000000018\0')) },
    { name: 'size: spaces, a NUL, then digits', side: 'both', archive: archive(...sizeField('        \x0012\0')) },
    { name: 'size: a plus sign (GNU tar base-64)', side: 'both', archive: archive(...sizeField('+0000000012\0')) },
    { name: 'size: two NULs before the digits (GNU tar refuses; bsdtar reads 0)', side: 'gnu', archive: archive(...sizeField('\0\x00000000012\0')) },
    { name: 'size: blanks only (GNU tar refuses; bsdtar reads 0)', side: 'gnu', archive: archive(...sizeField(' '.repeat(12), '')) },
    { name: 'size: a tab before the digits (bsdtar refuses; GNU tar reads it)', side: 'bsdtar', archive: archive(...sizeField('\t0000000012\0')) },
    { name: 'size: text after the terminating NUL (bsdtar refuses; GNU tar ignores it)', side: 'bsdtar', archive: archive(...sizeField('12\0xyz\0\0\0\0\0\0\0')) },
    { name: 'checksum: spaces before the digits', side: 'both', archive: archive(...checksum((sum) => Buffer.from(`  ${sum.toString(8)}\0 `, 'latin1'))) },
    { name: 'checksum: eight digits, no terminator', side: 'both', archive: archive(...checksum((sum) => Buffer.from(sum.toString(8).padStart(8, '0'), 'latin1'))) },
    { name: 'checksum: base-256 (both tools read the checksum as octal only)', side: 'both', archive: archive(...checksum(b256Checksum)) },
    { name: 'checksum: two NULs before the digits', side: 'both', archive: archive(...checksum((sum) => Buffer.from(`\0\0${sum.toString(8)}\0`, 'latin1'))) },
  ];

  const one = gnuTarOf({ a: 'the first archive\n' });
  const strict: CraftedTar[] = [
    { name: 'strict: cut exactly at an entry boundary (no end marker)', side: 'strict', archive: one.subarray(0, endOfEntries(one)) },
    { name: 'strict: a single zero block at the end', side: 'strict', archive: one.subarray(0, endOfEntries(one) + BLOCK) },
    { name: 'strict: `{ tar c a; tar c b; }`, two archives in a row (GNU tar reads only the first)', side: 'strict', archive: Buffer.concat([one, gnuTarOf({ b: 'the second archive\n' })]) },
    { name: 'strict: text after the end marker', side: 'strict', archive: Buffer.concat([one, Buffer.from('junk\n')]) },
  ];

  return [
    { title: 'class 1, malformed pax records', cases: pax },
    { title: 'class 2, a pax or long-name header with no entry after it', cases: orphans },
    { title: 'class 3, numeric fields', cases: numeric },
    { title: 'the deliberate strictness', cases: strict },
  ];
}
