/**
 * Reading the repository: the complete snapshots of an app (newest first),
 * the newest one, the apps present, and verification of a snapshot against
 * its SHA256SUMS with tar parts re-validated. Nothing here writes.
 */
import { constants } from 'node:fs';
import { lstat, open, readdir, readFile, readlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { appDirectory, COMMITS_DIR, compareSnapshotIds, DRILL_RESULT_PATTERN, DRILL_TEMPORARY_PATTERN, DRILLS_DIR, INCOMING_DIR, isSnapshotId, LATEST_LINK, MANIFEST_FILE, SUMS_FILE } from './layout.ts';
import type { DrillResult } from './drill-result.ts';
import { isManifest, parseSums, type Manifest } from './manifest.ts';
import { inspectingSink, PartInspector } from './part-inspector.ts';
import type { ReadThrottle } from './read-throttle.ts';

export interface SnapshotEntry {
  id: string;
  path: string;
  /** Null when manifest.json exists but cannot be read as JSON. */
  manifest: Manifest | null;
}

/**
 * Given the repository and an app, return its complete snapshots (a directory
 * with a valid id and a manifest.json), newest first. An app with no
 * directory has none.
 */
export async function listSnapshots(repository: string, app: string): Promise<SnapshotEntry[]> {
  const appDir = appDirectory(repository, app);
  const snapshots: SnapshotEntry[] = [];
  for (const id of await listSnapshotIds(repository, app)) {
    const snapshotPath = path.join(appDir, id);
    let text: string;
    try {
      text = await readFile(path.join(snapshotPath, MANIFEST_FILE), 'utf8');
    } catch {
      continue; // no manifest: not a complete snapshot
    }
    let manifest: Manifest | null = null;
    try {
      const parsed: unknown = JSON.parse(text);
      manifest = isManifest(parsed) ? parsed : null;
    } catch {
      manifest = null;
    }
    snapshots.push({ id, path: snapshotPath, manifest });
  }
  return snapshots;
}

/**
 * Given the repository and an app, return the names of its snapshot-id
 * directories, complete or not, newest first (none when the app has no
 * directory).
 */
export async function listSnapshotIds(repository: string, app: string): Promise<string[]> {
  try {
    const entries = await readdir(appDirectory(repository, app), { withFileTypes: true });
    return entries.filter((entry) => entry.isDirectory() && isSnapshotId(entry.name)).map((entry) => entry.name).sort(compareSnapshotIds).reverse();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/**
 * The problem a verification records for a snapshot directory that has no
 * readable manifest.json. BYSU publishes a snapshot whole (one rename of a
 * directory that holds it), so a published one without it was damaged or
 * changed by hand: it counts as damaged until it is removed, or a copy by
 * hand that was still in progress is verified again whole.
 */
export const NO_MANIFEST_PROBLEM = `${MANIFEST_FILE}: missing or unreadable, and a committed snapshot always has one`;

/** Given the repository and an app, return its newest complete snapshot with a readable manifest, or null. */
export async function newestSnapshot(repository: string, app: string): Promise<SnapshotEntry | null> {
  return (await listSnapshots(repository, app)).find((snapshot) => snapshot.manifest !== null) ?? null;
}

/** Given the repository, return the names of the app directories in it. */
export async function listAppDirectories(repository: string): Promise<string[]> {
  try {
    return (await readdir(repository, { withFileTypes: true })).filter((entry) => entry.isDirectory() && !entry.name.startsWith('.')).map((entry) => entry.name).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

export interface AppState {
  /** Directories of the app whose name is a snapshot id; complete when they hold manifest.json. */
  snapshots: { id: string; complete: boolean }[];
  /** Target of `latest`, when it is a symlink. */
  latest: string | null;
  /** Entries of `.incoming/`. */
  incoming: { name: string; mtimeMs: number }[];
  /** Entries of `.commits/`. */
  commitMarkers: { name: string; mtimeMs: number }[];
  /** Drill results in `.drills/` (regular files named like one), in no particular order. */
  drillResults: DrillResultEntry[];
  /** Drill results left half-written in `.drills/` by a crash. */
  drillTemporaries: { name: string; mtimeMs: number }[];
}

/** A drill result as retention sees it: its file name, and what it says (null when it cannot be read as a result). */
export interface DrillResultEntry {
  name: string;
  result: { passed: boolean; snapshotId: string | null } | null;
}

/**
 * Given the repository and an app, return what retention plans with: the
 * snapshot-id directories (complete or not), the target of `latest`, the
 * entries of `.incoming` and `.commits` with their modification times, and
 * the drill results in `.drills` with whether each passed and what it restored.
 */
export async function readAppState(repository: string, app: string): Promise<AppState> {
  const appDir = appDirectory(repository, app);
  const entries = await readdir(appDir, { withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [];
    throw error;
  });
  const snapshots: AppState['snapshots'] = [];
  for (const entry of entries) {
    if (!entry.isDirectory() || !isSnapshotId(entry.name)) continue;
    const manifest = await lstat(path.join(appDir, entry.name, MANIFEST_FILE)).catch(() => null);
    snapshots.push({ id: entry.name, complete: manifest?.isFile() === true });
  }
  const latest = await latestTarget(appDir);
  return {
    snapshots,
    latest,
    incoming: await entriesWithTimes(path.join(appDir, INCOMING_DIR)),
    commitMarkers: await entriesWithTimes(path.join(appDir, COMMITS_DIR)),
    drillResults: await readDrillResultEntries(path.join(appDir, DRILLS_DIR)),
    drillTemporaries: (await entriesWithTimes(path.join(appDir, DRILLS_DIR))).filter(({ name }) => DRILL_TEMPORARY_PATTERN.test(name)),
  };
}

/** Given a `.drills` directory, return its results, each read as latestDrillResults reads it (an unreadable one has a null result). */
async function readDrillResultEntries(dir: string): Promise<DrillResultEntry[]> {
  const entries: DrillResultEntry[] = [];
  for (const name of (await readdir(dir).catch(() => [] as string[])).filter((candidate) => DRILL_RESULT_PATTERN.test(candidate))) {
    const info = await lstat(path.join(dir, name)).catch(() => null);
    if (!info?.isFile()) continue; // not a file BYSU wrote: left alone
    let result: DrillResultEntry['result'] = null;
    try {
      const parsed = JSON.parse(await readFile(path.join(dir, name), 'utf8')) as Partial<DrillResult> | null;
      if (typeof parsed === 'object' && parsed !== null) result = { passed: Boolean(parsed.passed), snapshotId: typeof parsed.snapshotId === 'string' ? parsed.snapshotId : null };
    } catch {
      result = null;
    }
    entries.push({ name, result });
  }
  return entries;
}

async function entriesWithTimes(dir: string): Promise<{ name: string; mtimeMs: number }[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const result: { name: string; mtimeMs: number }[] = [];
  for (const name of names) {
    const info = await lstat(path.join(dir, name)).catch(() => null);
    if (info) result.push({ name, mtimeMs: info.mtimeMs });
  }
  return result;
}

/**
 * Given an app directory, return the snapshot id `latest` points at, however
 * the link is written (`id`, `./id`, or an absolute path into the app
 * directory); null when there is none or it points elsewhere.
 */
export async function latestTarget(appDir: string): Promise<string | null> {
  const link = await readlink(path.join(appDir, LATEST_LINK)).catch(() => null);
  if (link === null) return null;
  const relative = path.relative(appDir, path.resolve(appDir, link));
  return relative !== '' && !relative.includes(path.sep) && !relative.startsWith('..') ? relative : null;
}

export interface VerifyResult {
  id: string;
  path: string;
  ok: boolean;
  problems: string[];
  files: number;
  /** Bytes read and hashed. */
  bytes: number;
}

/**
 * How much of a file a verification reads at once. Against the default
 * 64 KiB, 1 MiB halves the CPU of an unbounded read (0.21 against 0.46 s for
 * 200 MiB here), and at 50 MiB/s saves the throttle 750 waits a second (0.35
 * against 0.78 s of CPU: a fifth of a core on its own).
 */
const VERIFY_READ_BYTES = 1024 * 1024;

export interface VerifyOptions {
  /** Paces every read (the verification's bandwidth bound); none: read as fast as the disk goes. */
  throttle?: ReadThrottle;
  /** Stops the verification: it then throws the signal's reason instead of returning a verdict. */
  signal?: AbortSignal;
}

/**
 * Given a snapshot directory, re-hash every file listed in SHA256SUMS,
 * re-validate tar parts, and check that every part of the manifest is listed.
 * Return the problems found (none = ok); never throws for a bad snapshot, only
 * when `options.signal` stopped it (with its reason).
 */
export async function verifySnapshot(snapshot: SnapshotEntry, options: VerifyOptions = {}): Promise<VerifyResult> {
  const { throttle, signal } = options;
  const problems: string[] = [];
  let sums: { file: string; sha256: string }[] = [];
  let bytes = 0;
  try {
    const { handle } = await openRegularFile(path.join(snapshot.path, SUMS_FILE));
    try {
      sums = parseSums(await handle.readFile('utf8'));
    } finally {
      await handle.close();
    }
  } catch (error) {
    problems.push(`${SUMS_FILE}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : (error as Error).message}`);
  }
  if (snapshot.manifest === null) problems.push(`${MANIFEST_FILE}: not valid JSON`);
  for (const part of snapshot.manifest?.parts ?? []) {
    if (!sums.some((entry) => entry.file === part.file)) problems.push(`${part.file}: listed in the manifest but not in ${SUMS_FILE}`);
  }
  for (const entry of sums) {
    if (entry.file.includes('/') || entry.file.startsWith('.')) {
      problems.push(`${entry.file}: not a plain file name`);
      continue;
    }
    signal?.throwIfAborted();
    const inspector = new PartInspector(entry.file, { keepHashingInvalidArchives: true });
    try {
      const { handle } = await openRegularFile(path.join(snapshot.path, entry.file));
      const source = handle.createReadStream({ highWaterMark: VERIFY_READ_BYTES });
      await (throttle
        ? pipeline(source, throttle.stream(), inspectingSink(inspector), signal ? { signal } : {})
        : pipeline(source, inspectingSink(inspector), signal ? { signal } : {}));
      const inspection = await inspector.finish();
      bytes += inspection.bytes;
      if (inspection.sha256 !== entry.sha256) problems.push(`${entry.file}: checksum mismatch (expected ${entry.sha256}, got ${inspection.sha256})`);
      const part = snapshot.manifest?.parts?.find((candidate) => candidate.file === entry.file);
      if (part && part.bytes !== inspection.bytes) problems.push(`${entry.file}: ${inspection.bytes} bytes, the manifest says ${part.bytes}`);
      if (inspection.archiveProblem) problems.push(`${entry.file}: ${inspection.archiveProblem}`);
    } catch (error) {
      inspector.discard();
      // Stopped, not damaged: no verdict.
      signal?.throwIfAborted();
      const code = (error as NodeJS.ErrnoException).code;
      problems.push(`${entry.file}: ${code === 'ENOENT' ? 'missing' : (error as Error).message}`);
    }
  }
  return { id: snapshot.id, path: snapshot.path, ok: problems.length === 0, problems, files: sums.length, bytes };
}

/** A snapshot's file that is not a regular file: its message says what it is instead ("a symbolic link, …"). */
export class NotRegularFileError extends Error {}

/**
 * Given a path in a snapshot, open it for reading only if it is a regular
 * file, and return the handle with its size: a symbolic link (to /dev/zero,
 * read for ever) is refused, not followed, and a FIFO is refused at once
 * instead of blocking the open for ever (O_NOFOLLOW|O_NONBLOCK, then checked
 * on the handle, so nothing can be swapped in afterwards). Throw
 * NotRegularFileError for either, the open's own error otherwise.
 */
export async function openRegularFile(file: string): Promise<{ handle: FileHandle; size: number }> {
  let handle: FileHandle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ELOOP') throw new NotRegularFileError('a symbolic link, not the file the snapshot wrote');
    throw error;
  }
  const info = await handle.stat();
  if (!info.isFile()) {
    await handle.close();
    throw new NotRegularFileError('not a regular file');
  }
  return { handle, size: info.size };
}

/** Given the repository and an app, return its newest drill result and its newest passed one (each null if none), in one pass. */
export async function latestDrillResults(repository: string, app: string): Promise<{ latest: DrillResult | null; latestPassed: DrillResult | null }> {
  const dir = path.join(appDirectory(repository, app), DRILLS_DIR);
  const names = (await readdir(dir).catch(() => [] as string[])).filter((name) => name.endsWith('.json') && !name.startsWith('.')).sort().reverse();
  let latest: DrillResult | null = null;
  for (const name of names) {
    let result: DrillResult;
    try {
      result = JSON.parse(await readFile(path.join(dir, name), 'utf8')) as DrillResult;
    } catch {
      continue; // an unreadable result is skipped
    }
    latest ??= result;
    if (result.passed) return { latest, latestPassed: result };
  }
  return { latest, latestPassed: null };
}
