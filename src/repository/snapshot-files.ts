/**
 * A snapshot's files as `bysu restore` and `bysu cat` read them: the snapshot
 * chosen by id or the newest complete one, its SHA256SUMS, its manifest.json
 * parsed from the very bytes SHA256SUMS vouches for, and each file opened as
 * a regular file of the snapshot directory (never through a symbolic link)
 * and hashed as it is read. Nothing here writes.
 */
import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SnapshotDamagedError } from '../errors.ts';
import { escapeControls } from '../printable.ts';
import { MANIFEST_FILE, SUMS_FILE } from './layout.ts';
import { parseSums, type Manifest } from './manifest.ts';
import { listSnapshots, newestSnapshot, NotRegularFileError, openRegularFile, type SnapshotEntry } from './read.ts';

/** A manifest.json or SHA256SUMS larger than this is not a BYSU one (a few KiB is usual): refused rather than read into memory. */
const MAX_LISTING_BYTES = 16 * 1024 * 1024;

/** A snapshot whose SHA256SUMS was read and whose manifest.json matched it. */
export interface CheckedSnapshot {
  app: string;
  id: string;
  /** The snapshot directory. */
  path: string;
  /** Parsed from the bytes whose sha256 SHA256SUMS lists. */
  manifest: Manifest;
  /** The entries of SHA256SUMS, in its order, each with its line as written. */
  sums: { file: string; sha256: string; line: string }[];
}

/**
 * Given the repository, an app and a snapshot id (undefined: the newest
 * complete snapshot, the one `bysu latest` names), return that snapshot, or
 * null when the app has no such complete snapshot.
 */
export async function findSnapshot(repository: string, app: string, id: string | undefined): Promise<SnapshotEntry | null> {
  if (id === undefined) return newestSnapshot(repository, app);
  return (await listSnapshots(repository, app)).find((snapshot) => snapshot.id === id) ?? null;
}

/** Given a snapshot's app and id and one of its files, return the name messages use: `shop/20261126T021500Z/shop.sql`. */
export function snapshotFileLabel(snapshot: { app: string; id: string }, file?: string): string {
  return file === undefined ? `${snapshot.app}/${snapshot.id}` : `${snapshot.app}/${snapshot.id}/${escapeControls(file)}`;
}

/**
 * Given a snapshot directory and a file name, open the file for reading as a
 * regular file of that directory (openRegularFile: no link followed, no FIFO
 * waited for) and return the handle with the file's size. Throw
 * SnapshotDamagedError when it is missing, a link or not a regular file.
 */
export async function openSnapshotFile(snapshot: { app: string; id: string; path: string }, file: string): Promise<{ handle: FileHandle; size: number }> {
  const label = snapshotFileLabel(snapshot, file);
  try {
    return await openRegularFile(path.join(snapshot.path, file));
  } catch (error) {
    if (error instanceof NotRegularFileError) throw new SnapshotDamagedError(`${label} is ${error.message}`);
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new SnapshotDamagedError(`${label} is missing`);
    throw new SnapshotDamagedError(`cannot read ${label}: ${code ?? (error as Error).message}`, { cause: error });
  }
}

async function readListing(snapshot: { app: string; id: string; path: string }, file: string): Promise<Buffer> {
  const { handle, size } = await openSnapshotFile(snapshot, file);
  try {
    if (size > MAX_LISTING_BYTES) throw new SnapshotDamagedError(`${snapshotFileLabel(snapshot, file)} is ${size} bytes, more than a BYSU snapshot ever writes`);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/** Given SHA256SUMS text, return its entries with their lines; throw on a malformed line or a name that is not a plain file name. */
function parseSumLines(text: string, label: string): CheckedSnapshot['sums'] {
  let entries: { file: string; sha256: string }[];
  try {
    entries = parseSums(text);
  } catch (error) {
    throw new SnapshotDamagedError(`${label}/${SUMS_FILE}: ${(error as Error).message.replace(`${SUMS_FILE} `, '')}`);
  }
  const lines = text.split('\n').filter((line) => line !== '');
  return entries.map((entry, index) => {
    if (entry.file.includes('/') || entry.file.startsWith('.')) throw new SnapshotDamagedError(`${label}/${SUMS_FILE}: line ${index + 1} names ${JSON.stringify(escapeControls(entry.file))}, not a plain file name`);
    return { ...entry, line: lines[index]! };
  });
}

/**
 * Given a complete snapshot of an app, read its SHA256SUMS and manifest.json,
 * check that SHA256SUMS lists manifest.json with the sha256 of the bytes read
 * and lists every part the manifest names, and return the snapshot with the
 * manifest parsed from those bytes. Throw SnapshotDamagedError naming what is
 * wrong. The parts themselves are not read here (see hashSnapshotFile).
 */
export async function checkSnapshotListing(snapshot: SnapshotEntry, app: string): Promise<CheckedSnapshot> {
  const where = { app, id: snapshot.id, path: snapshot.path };
  const label = snapshotFileLabel(where);
  const sumsText = await readListing(where, SUMS_FILE);
  const sums = parseSumLines(sumsText.toString('utf8'), label);
  const manifestSum = sums.find((entry) => entry.file === MANIFEST_FILE);
  if (!manifestSum) throw new SnapshotDamagedError(`${label}: ${SUMS_FILE} does not list ${MANIFEST_FILE}`);
  const manifestBytes = await readListing(where, MANIFEST_FILE);
  const actual = createHash('sha256').update(manifestBytes).digest('hex');
  if (actual !== manifestSum.sha256) throw checksumMismatch(where, MANIFEST_FILE, manifestSum.sha256, actual);
  let manifest: Manifest;
  try {
    manifest = JSON.parse(manifestBytes.toString('utf8')) as Manifest;
  } catch (error) {
    throw new SnapshotDamagedError(`${label}/${MANIFEST_FILE}: not valid JSON (${(error as Error).message})`);
  }
  if (manifest === null || typeof manifest !== 'object' || !Array.isArray(manifest.parts) || !manifest.parts.every((part) => typeof part?.file === 'string')) {
    throw new SnapshotDamagedError(`${label}/${MANIFEST_FILE}: not a BYSU manifest (no list of parts)`);
  }
  const unlisted = manifest.parts.filter((part) => !sums.some((entry) => entry.file === part.file)).map((part) => escapeControls(part.file));
  if (unlisted.length > 0) throw new SnapshotDamagedError(`${label}: ${SUMS_FILE} does not list ${unlisted.join(', ')}, which ${MANIFEST_FILE} lists: those files cannot be checked`);
  return { ...where, manifest, sums };
}

/** Given a checked snapshot and a file it lists, return the sha256 SHA256SUMS gives for it. */
export function expectedSha256(snapshot: CheckedSnapshot, file: string): string {
  const entry = snapshot.sums.find((candidate) => candidate.file === file);
  if (!entry) throw new SnapshotDamagedError(`${snapshotFileLabel(snapshot)}: ${SUMS_FILE} does not list ${escapeControls(file)}`);
  return entry.sha256;
}

/** Given a snapshot, a file, the sha256 SHA256SUMS gives and the one read, return the error that names all three. */
export function checksumMismatch(snapshot: { app: string; id: string }, file: string, expected: string, actual: string): SnapshotDamagedError {
  return new SnapshotDamagedError(`${snapshotFileLabel(snapshot, file)}: checksum mismatch: ${SUMS_FILE} says ${expected}, the file has ${actual}`);
}

/** A pass-through stream that hashes (sha256) and counts what flows through it. */
export class HashingStream extends Transform {
  bytes = 0;
  private readonly hash: Hash = createHash('sha256');

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    callback(null, chunk);
  }

  /** The sha256 of everything that passed (call once, after the end). */
  digest(): string {
    return this.hash.digest('hex');
  }
}

/**
 * Given a checked snapshot and a file SHA256SUMS lists, read the file whole
 * and return its size; throw SnapshotDamagedError when its sha256 is not the
 * one SHA256SUMS gives (or it is missing, or not a regular file).
 */
export async function checkSnapshotFile(snapshot: CheckedSnapshot, file: string, signal?: AbortSignal): Promise<{ bytes: number }> {
  const expected = expectedSha256(snapshot, file);
  const { handle } = await openSnapshotFile(snapshot, file);
  const hashing = new HashingStream();
  try {
    await pipeline(handle.createReadStream({ autoClose: false }), hashing, new Writable({ write: (_chunk, _encoding, callback) => callback() }), signal ? { signal } : {});
  } finally {
    await handle.close();
  }
  const actual = hashing.digest();
  if (actual !== expected) throw checksumMismatch(snapshot, file, expected, actual);
  return { bytes: hashing.bytes };
}
