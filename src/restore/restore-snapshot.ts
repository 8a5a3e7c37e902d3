/**
 * The restore action (`bysu restore`): given a checked snapshot, the files to
 * restore and a target directory, check every chosen file against
 * SHA256SUMS first, then copy each into a staging directory (hashing it again
 * as it is copied), or, with `extract`, extract its tar parts there with GNU
 * tar (see archive.ts), and only when all of it is written, checked and on
 * disk, put it under the target's name (see target.ts). Any failure removes
 * the staging directory: the target either holds the whole restore or
 * nothing. Reads the repository only; knows nothing of Redis.
 */
import { execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { SnapshotDamagedError, UnsafeArchiveError } from '../errors.ts';
import { fsyncPath } from '../repository/durable.ts';
import { archiveKind, FILE_MODE, MANIFEST_FILE, SUMS_FILE } from '../repository/layout.ts';
import { PartInspector, inspectingSink } from '../repository/part-inspector.ts';
import { checkSnapshotFile, checksumMismatch, expectedSha256, HashingStream, openSnapshotFile, snapshotFileLabel, type CheckedSnapshot } from '../repository/snapshot-files.ts';
import { checkExtractedTree, extractArchive, gnuTarProblem, UnsafeEntries } from './archive.ts';
import { checkTarget, createStaging, discardStaging, publishStaging, type TargetState } from './target.ts';

export interface RestoreRequest {
  snapshot: CheckedSnapshot;
  /** Part files to restore, each one the manifest lists. */
  files: string[];
  /** Absolute path of the directory to create (or an empty one to fill). */
  target: string;
  /** Extract tar parts (`*.tar`, `*.tar.gz`, `*.tgz`) instead of copying them. */
  extract: boolean;
  /** Aborts the restore (Ctrl-C): the staging directory is removed. */
  signal?: AbortSignal;
}

export interface RestoredFile {
  file: string;
  /** Size of the file in the snapshot. */
  bytes: number;
  /** For an extracted tar part: how many entries the archive held. */
  extractedEntries?: number;
}

export interface RestoreResult {
  target: string;
  files: RestoredFile[];
  /** manifest.json and SHA256SUMS, when written beside the files (not when a tar part was extracted). */
  listings: string[];
}

/** The target was refused (not empty, not a directory, taken meanwhile): a usage error, nothing was written. */
export class RestoreTargetError extends Error {}

/** What the first pass learnt of a file. */
interface Checked {
  file: string;
  bytes: number;
  extractAs: 'tar' | 'tar.gz' | null;
  entries?: number;
}

/**
 * Given a snapshot, one of its files and whether to judge its tar entries for
 * extraction, read it whole, compare its sha256 with SHA256SUMS and return
 * what was learnt. Throw SnapshotDamagedError on a mismatch, UnsafeArchiveError
 * for an archive with entries that would land outside, and SnapshotDamagedError
 * for an archive that is not a complete tar archive.
 */
async function checkFile(snapshot: CheckedSnapshot, file: string, extractAs: 'tar' | 'tar.gz' | null, signal?: AbortSignal): Promise<Checked> {
  if (extractAs === null) return { file, extractAs, ...(await checkSnapshotFile(snapshot, file, signal)) };
  // An archive to extract is read once for its hash, its validity and every entry's name and link.
  const expected = expectedSha256(snapshot, file);
  const label = snapshotFileLabel(snapshot, file);
  const unsafe = new UnsafeEntries();
  const inspector = new PartInspector(file, { keepHashingInvalidArchives: true, onTarEntry: unsafe.check });
  const { handle } = await openSnapshotFile(snapshot, file);
  try {
    await pipeline(handle.createReadStream({ autoClose: false }), inspectingSink(inspector), signal ? { signal } : {});
  } catch (error) {
    inspector.discard();
    throw error;
  } finally {
    await handle.close();
  }
  const inspection = await inspector.finish();
  if (inspection.sha256 !== expected) throw checksumMismatch(snapshot, file, expected, inspection.sha256);
  if (inspection.archiveProblem) throw new SnapshotDamagedError(`${label}: cannot extract it: ${inspection.archiveProblem}`);
  const refusal = unsafe.refusal(label);
  if (refusal) throw refusal;
  return { file, bytes: inspection.bytes, extractAs, ...(inspection.tar ? { entries: inspection.tar.entries } : {}) };
}

/**
 * Given a snapshot, one of its files and a destination, copy the file (mode
 * 0600, never over an existing file) while hashing it, and fsync it. Throw
 * SnapshotDamagedError when the bytes copied are not those SHA256SUMS lists
 * (the file changed since it was checked).
 */
async function copyFile(snapshot: CheckedSnapshot, file: string, destination: string, signal?: AbortSignal): Promise<void> {
  const expected = expectedSha256(snapshot, file);
  const { handle } = await openSnapshotFile(snapshot, file);
  const hashing = new HashingStream();
  try {
    await pipeline(handle.createReadStream({ autoClose: false }), hashing, createWriteStream(destination, { flags: 'wx', mode: FILE_MODE }), signal ? { signal } : {});
  } finally {
    await handle.close();
  }
  await fsyncPath(destination);
  const actual = hashing.digest();
  if (actual !== expected) throw checksumMismatch(snapshot, file, expected, `${actual} (it changed while it was copied)`);
}

/** Given a snapshot, one of its tar parts and the staging directory, extract it there, checking the bytes tar read against SHA256SUMS. */
async function extractFile(snapshot: CheckedSnapshot, file: string, kind: 'tar' | 'tar.gz', staging: string, signal?: AbortSignal): Promise<void> {
  const expected = expectedSha256(snapshot, file);
  const { handle } = await openSnapshotFile(snapshot, file);
  let result: { sha256: string };
  try {
    result = await extractArchive(handle, kind, staging, snapshotFileLabel(snapshot, file), signal);
  } finally {
    await handle.close();
  }
  if (result.sha256 !== expected) throw checksumMismatch(snapshot, file, expected, `${result.sha256} (it changed while it was extracted)`);
}

/**
 * Given the restore request, restore it (see the file's header) and return
 * what was written where. Throw RestoreTargetError when the target cannot
 * be used (nothing written), SnapshotDamagedError when a file does not match
 * SHA256SUMS, UnsafeArchiveError when an archive would write or point outside
 * the target, and whatever the filesystem or tar threw; in every case the
 * target holds nothing of the restore.
 */
export async function restoreSnapshot(request: RestoreRequest): Promise<RestoreResult> {
  const { snapshot, target, signal } = request;
  const state: TargetState | { refused: string } = await checkTarget(target);
  if ('refused' in state) throw new RestoreTargetError(state.refused);
  const extracting = request.extract ? request.files.filter((file) => archiveKind(file) !== null) : [];
  if (extracting.length > 0) {
    const problem = await gnuTarProblem();
    if (problem) throw new UnsafeArchiveError(`--extract needs GNU tar, and ${problem}: restore without --extract, then extract by hand`);
  }
  // First pass: every chosen file against SHA256SUMS (manifest.json was, with the listing) before anything is written.
  const checked: Checked[] = [];
  for (const file of request.files) checked.push(await checkFile(snapshot, file, extracting.includes(file) ? archiveKind(file) : null, signal));
  // An extracted tree is meant to be copied into place whole: no listing of BYSU's is added to it.
  const listings = extracting.length > 0 ? [] : [MANIFEST_FILE, SUMS_FILE];

  const staging = await createStaging(target, state);
  try {
    for (const file of checked) {
      if (file.extractAs) await extractFile(snapshot, file.file, file.extractAs, staging, signal);
      else await copyFile(snapshot, file.file, path.join(staging, file.file), signal);
    }
    if (extracting.length > 0) {
      await checkExtractedTree(staging, extracting.map((file) => snapshotFileLabel(snapshot, file)).join(', '));
      // tar does not fsync: flush the filesystem once before the name appears.
      await promisify(execFile)('sync', ['-f', staging]);
    }
    if (listings.length > 0) {
      await copyFile(snapshot, MANIFEST_FILE, path.join(staging, MANIFEST_FILE), signal);
      // SHA256SUMS of what is here: the snapshot's own lines (byte for byte) for the files restored and the manifest.
      const kept = new Set([...request.files, MANIFEST_FILE]);
      const sums = await open(path.join(staging, SUMS_FILE), 'wx', FILE_MODE);
      try {
        await sums.writeFile(snapshot.sums.filter((entry) => kept.has(entry.file)).map((entry) => `${entry.line}\n`).join(''));
        await sums.sync();
      } finally {
        await sums.close();
      }
    }
    await fsyncPath(staging);
    const refused = await publishStaging(staging, target, state);
    if (refused) throw new RestoreTargetError(refused.refused);
  } catch (error) {
    await discardStaging(staging);
    throw error;
  }
  return {
    target,
    files: checked.map((file) => ({ file: file.file, bytes: file.bytes, ...(file.extractAs && file.entries !== undefined ? { extractedEntries: file.entries } : {}) })),
    listings,
  };
}
