/**
 * A streaming tar validator: it walks the archive block by block as the bytes
 * arrive and keeps nothing but the current header (and pax or GNU long-name
 * data, capped), so a 2 GiB archive costs the same memory as a 2 KiB one.
 *
 * It fails an archive that is truncated anywhere (mid-header, mid-entry, or
 * exactly at an entry boundary: the two zero blocks that end an archive are
 * required), that has a bad header checksum or size field, that has data after
 * its end, whose pax / long-name headers exceed the cap, whose pax header has
 * a malformed record, or whose pax / long-name header is followed by the end
 * of the archive instead of the entry it describes. Entry names that are
 * absolute or contain `..` are recorded as warnings, not errors: a snapshot
 * never extracts (`bysu restore --extract` judges each entry itself, through
 * the `onEntry` option). It understands ustar, GNU (long names, long link
 * names, base-256 sizes, old-GNU sparse entries) and pax.
 *
 * Where GNU tar and bsdtar agree on an archive, so does this validator, except
 * for three deliberate strictnesses (README, "Archive validation"): the end
 * marker is required, a lone zero block at the end is not enough, and nothing
 * but zeros may follow the end marker. Where the two tools disagree it reads
 * as GNU tar does, but refuses what only GNU tar tolerates: a pax or long-name
 * header with no entry after it (GNU tar drops it without a word), a numeric
 * field with a tab or with text after its terminator. The unit tests put each
 * case beside the verdicts of both tools.
 */
import { InvalidArchiveError } from '../errors.ts';
import { quoteName } from '../printable.ts';
import { MAX_WARNING_NAME_BYTES, MAX_WARNINGS_PER_PART } from './manifest.ts';

const BLOCK = 512;
/** Largest pax or GNU long-name header data accepted. */
export const MAX_META_BYTES = 1024 * 1024;
/** Type flags whose size field is not followed by data. */
const NO_DATA_TYPES = new Set(['1', '2', '3', '4', '5', '6']);

export interface TarSummary {
  /** Files, directories, links… (pax and long-name headers not counted). */
  entries: number;
  /** At most MAX_WARNINGS_PER_PART, each naming its entry cut to MAX_WARNING_NAME_BYTES with control characters escaped. */
  warnings: string[];
  /** Present when more warnings were found than kept: how many were left out. */
  omittedWarnings?: number;
}

type State = 'header' | 'data' | 'meta' | 'sparse' | 'end';

/** An entry of the archive as the validator read its header (pax and long-name headers applied). */
export interface TarEntry {
  name: string;
  /** The type flag: '0' a file, '1' a hard link, '2' a symbolic link, '5' a directory… */
  type: string;
  /** The target of a hard or symbolic link (empty for other entries). */
  linkName: string;
}

export interface TarValidatorOptions {
  /** Called with each entry as its header is read, in archive order. */
  onEntry?: (entry: TarEntry) => void;
}

export class TarValidator {
  private offset = 0;
  private state: State = 'header';
  private header = Buffer.alloc(BLOCK);
  private headerFill = 0;
  /** Bytes of entry data (plus padding) still to skip. */
  private skip = 0;
  private meta: { type: string; size: number; padded: number; chunks: Buffer[]; received: number; offset: number } | null = null;
  private pending: { path?: string; size?: number; longName?: string; linkPath?: string; longLink?: string } = {};
  /** The pax or long-name header read since the last entry, which that entry must follow. */
  private pendingMeta: { type: string; offset: number } | null = null;
  private globalPax: { path?: string; size?: number; linkPath?: string } = {};
  private zeroBlocks = 0;
  /** Data bytes of an old-GNU sparse entry, skipped after its extension headers. */
  private sparseData = 0;
  private entries = 0;
  private warnings: string[] = [];
  private suppressedWarnings = 0;

  constructor(private readonly options: TarValidatorOptions = {}) {}

  /** Given the next bytes of the archive, check them; throw InvalidArchiveError on the first problem. */
  write(chunk: Buffer): void {
    let position = 0;
    while (position < chunk.length) {
      switch (this.state) {
        case 'data': {
          const take = Math.min(this.skip, chunk.length - position);
          this.skip -= take;
          position += take;
          this.offset += take;
          if (this.skip === 0) this.state = 'header';
          break;
        }
        case 'meta': {
          const meta = this.meta!;
          const take = Math.min(meta.padded - meta.received, chunk.length - position);
          const wanted = Math.max(0, Math.min(take, meta.size - meta.received));
          if (wanted > 0) meta.chunks.push(Buffer.from(chunk.subarray(position, position + wanted)));
          meta.received += take;
          position += take;
          this.offset += take;
          if (meta.received === meta.padded) this.finishMeta();
          break;
        }
        case 'header':
        case 'sparse': {
          const take = Math.min(BLOCK - this.headerFill, chunk.length - position);
          chunk.copy(this.header, this.headerFill, position, position + take);
          this.headerFill += take;
          position += take;
          this.offset += take;
          if (this.headerFill === BLOCK) {
            this.headerFill = 0;
            if (this.state === 'header') this.readHeader();
            else this.readSparseExtension();
          }
          break;
        }
        case 'end': {
          // After the end marker only zero padding (to the record size) may follow.
          for (let index = position; index < chunk.length; index += 1) {
            if (chunk[index] !== 0) this.fail(`non-zero data after the end-of-archive marker at byte ${this.offset + index - position}`);
          }
          this.offset += chunk.length - position;
          position = chunk.length;
          break;
        }
      }
    }
  }

  /** Call when the stream has ended: throw unless the archive ended with its two zero blocks. */
  finish(): TarSummary {
    if (this.state !== 'end') {
      const where = this.state === 'header' && this.headerFill === 0 && this.zeroBlocks === 0
        ? 'at an entry boundary without the end-of-archive marker'
        : this.state === 'header' && this.zeroBlocks === 1 && this.headerFill === 0
          ? 'after a single zero block (the end-of-archive marker is two)'
          : 'in the middle of an entry';
      this.fail(`archive is truncated ${where} (${this.offset} bytes read)`);
    }
    const warnings = [...this.warnings];
    return this.suppressedWarnings > 0 ? { entries: this.entries, warnings, omittedWarnings: this.suppressedWarnings } : { entries: this.entries, warnings };
  }

  private fail(reason: string): never {
    throw new InvalidArchiveError(`not a valid tar archive: ${reason}`);
  }

  private readHeader(): void {
    const block = this.header;
    const headerOffset = this.offset - BLOCK;
    if (block.every((byte) => byte === 0)) {
      if (this.pendingMeta) {
        // GNU tar drops such a header without a word; bsdtar calls the archive damaged. An entry is missing: refuse.
        const { type, offset } = this.pendingMeta;
        this.fail(`the ${metaKind(type)} header at byte ${offset} is followed by the end-of-archive marker, not by the entry it describes`);
      }
      this.zeroBlocks += 1;
      if (this.zeroBlocks === 2) this.state = 'end';
      return;
    }
    if (this.zeroBlocks === 1) this.fail(`a lone zero block before the header at byte ${headerOffset}`);
    if (!checksumMatches(block)) this.fail(`bad header checksum at byte ${headerOffset}`);

    const typeflag = block[156] === 0 ? '0' : String.fromCharCode(block[156]!);
    let size = parseNumeric(block.subarray(124, 136));
    if (size === null) this.fail(`bad size field in the header at byte ${headerOffset}`);

    if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
      if (size > MAX_META_BYTES) {
        this.fail(`a ${typeflag === 'L' || typeflag === 'K' ? 'GNU long-name' : 'pax'} header of ${size} bytes at byte ${headerOffset} exceeds ${MAX_META_BYTES}`);
      }
      // A global header ('g') stands alone (both tools accept one right before the end); the others describe the next entry.
      if (typeflag !== 'g') this.pendingMeta ??= { type: typeflag, offset: headerOffset };
      this.meta = { type: typeflag, size, padded: roundUp(size), chunks: [], received: 0, offset: headerOffset };
      this.state = size === 0 ? 'header' : 'meta';
      if (size === 0) this.finishMeta();
      return;
    }

    const pending = this.pending;
    this.pending = {};
    this.pendingMeta = null;
    size = pending.size ?? this.globalPax.size ?? size;
    const name = pending.longName ?? pending.path ?? this.globalPax.path ?? ustarName(block);
    this.entries += 1;
    this.checkName(name);
    if (this.options.onEntry) {
      const linkName = pending.longLink ?? pending.linkPath ?? this.globalPax.linkPath ?? cString(block.subarray(157, 257));
      this.options.onEntry({ name, type: typeflag, linkName });
    }
    const dataBytes = NO_DATA_TYPES.has(typeflag) ? 0 : roundUp(size);
    if (typeflag === 'S' && block[482] !== 0) {
      // Old-GNU sparse entry (`tar -S`): more sparse maps follow in extension blocks, then the data.
      this.sparseData = dataBytes;
      this.state = 'sparse';
      return;
    }
    this.skipData(dataBytes);
  }

  /** An old-GNU sparse extension block: 21 map entries, then "another block follows" at byte 504. */
  private readSparseExtension(): void {
    if (this.header[504] !== 0) return;
    this.state = 'header';
    this.skipData(this.sparseData);
  }

  private skipData(bytes: number): void {
    if (bytes > 0) {
      this.skip = bytes;
      this.state = 'data';
    }
  }

  private finishMeta(): void {
    const meta = this.meta!;
    this.meta = null;
    this.state = 'header';
    const data = Buffer.concat(meta.chunks);
    if (meta.type === 'L') {
      this.pending.longName = cString(data);
    } else if (meta.type === 'K') {
      // Long link target: not needed for validation, only for onEntry.
      if (this.options.onEntry) this.pending.longLink = cString(data);
    } else {
      const records = parsePax(data);
      if (typeof records === 'string') this.fail(`malformed pax header at byte ${meta.offset}: ${records}`);
      const target = meta.type === 'g' ? this.globalPax : this.pending;
      if (records.path !== undefined) target.path = records.path;
      if (records.linkpath !== undefined) target.linkPath = records.linkpath;
      if (records.size !== undefined) {
        const parsed = /^\d+$/.test(records.size) ? Number(records.size) : NaN;
        if (!Number.isSafeInteger(parsed)) this.fail(`bad pax size ${quoteName(records.size, 64)} in the header at byte ${meta.offset}`);
        target.size = parsed;
      }
    }
  }

  private checkName(name: string): void {
    const unsafe = name.startsWith('/') ? 'absolute path' : name.split('/').includes('..') ? '".." in path' : null;
    if (unsafe === null) return;
    // Past the cap only counted: a node sending a million unsafe names costs no memory and no manifest space.
    if (this.warnings.length < MAX_WARNINGS_PER_PART) this.warnings.push(`entry ${quoteName(name, MAX_WARNING_NAME_BYTES)}: ${unsafe}`);
    else this.suppressedWarnings += 1;
  }
}

function roundUp(size: number): number {
  return Math.ceil(size / BLOCK) * BLOCK;
}

/** The header checksum: sum of all bytes with the checksum field as spaces (unsigned, or signed as some old tars did). */
function checksumMatches(block: Buffer): boolean {
  const stored = parseNumeric(block.subarray(148, 156), { octalOnly: true });
  if (stored === null) return false;
  let unsigned = 0;
  let signed = 0;
  for (let index = 0; index < BLOCK; index += 1) {
    const byte = index >= 148 && index < 156 ? 32 : block[index]!;
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  return stored === unsigned || stored === signed;
}

/**
 * Given a numeric header field, return its value as GNU tar reads it, or null
 * when malformed. GNU base-256: first byte 0x80 (0xff is negative; never for
 * the checksum, `octalOnly`). Octal: at most one leading NUL (old tars left
 * one when the field before overflowed; bsdtar reads such a field as 0),
 * leading spaces, octal digits (none: 0), then only NULs and spaces (GNU tar
 * ignores text after the terminator, bsdtar refuses it: refused). A field of
 * blanks only is refused, as GNU tar does.
 */
function parseNumeric(field: Buffer, options: { octalOnly?: boolean } = {}): number | null {
  if (field[0]! & 0x80) {
    if (field[0] !== 0x80 || options.octalOnly) return null; // 0xff is a negative number, the rest no number at all
    let value = 0;
    for (let index = 1; index < field.length; index += 1) value = value * 256 + field[index]!;
    return Number.isSafeInteger(value) ? value : null;
  }
  const text = field.toString('latin1');
  const rest = text.startsWith('\0') ? text.slice(1) : text;
  if (/^ +$/.test(rest)) return null; // "blanks in header where numeric value expected"
  const digits = /^ *([0-7]*)[\0 ]*$/.exec(rest)?.[1];
  if (digits === undefined) return null;
  return digits === '' ? 0 : parseInt(digits, 8);
}

function cString(buffer: Buffer): string {
  const end = buffer.indexOf(0);
  return buffer.subarray(0, end === -1 ? buffer.length : end).toString('utf8');
}

function ustarName(block: Buffer): string {
  const name = cString(block.subarray(0, 100));
  // POSIX ustar ("ustar\0") has a name prefix at 345; old GNU ("ustar  \0") keeps times there.
  const isUstar = block.subarray(257, 263).toString('latin1') === 'ustar\0';
  const prefix = isUstar ? cString(block.subarray(345, 500)) : '';
  return prefix ? `${prefix}/${name}` : name;
}

/**
 * Parse pax records `<length> <keyword>=<value>\n`, where the decimal length
 * counts the whole record. Return the records, or what is wrong with the
 * first malformed one, by the rules both GNU tar and bsdtar enforce: a length
 * of digits then a space, a record that fits in the header and ends in a
 * newline exactly where its length says, and an `=` after a keyword with no
 * NUL in it. A NUL where a record would start ends the records (GNU tar's
 * reading; bsdtar refuses it).
 */
function parsePax(data: Buffer): Record<string, string> | string {
  const records: Record<string, string> = {};
  let position = 0;
  while (position < data.length && data[position] !== 0) {
    const where = `the record at offset ${position}`;
    let cursor = position;
    while (cursor < data.length && data[cursor]! >= 0x30 && data[cursor]! <= 0x39) cursor += 1;
    if (cursor === position || data[cursor] !== 0x20) return `${where} does not start with a decimal length and a space`;
    const length = Number(data.subarray(position, cursor).toString('latin1'));
    const end = position + length;
    if (!Number.isSafeInteger(end) || end > data.length) return `${where} claims ${length} bytes, past the header's ${data.length}`;
    if (end <= cursor + 1 || data[end - 1] !== 0x0a) return `${where} does not end in a newline where its length (${length}) says it ends`;
    const equals = data.indexOf(0x3d, cursor + 1);
    if (equals === -1 || equals >= end - 1) return `${where} has no "=" after its keyword`;
    const nul = data.indexOf(0, cursor + 1);
    if (nul !== -1 && nul < equals) return `${where} has a NUL byte in its keyword`;
    records[data.subarray(cursor + 1, equals).toString('utf8')] = data.subarray(equals + 1, end - 1).toString('utf8');
    position = end;
  }
  return records;
}

function metaKind(type: string): string {
  return type === 'L' ? 'GNU long-name' : type === 'K' ? 'GNU long-link' : 'pax extended';
}
