/**
 * An app's summary: what `bysu status`, /metrics and /api need to know of an
 * app (its complete snapshots with their sizes, the last final failure, the
 * last verification, the last drill), in one small file,
 * `<app>/.summary/summary.json`, so that reading a fleet of a thousand apps is
 * a thousand small reads instead of fourteen thousand manifests.
 *
 * It is a cache and nothing depends on it being right. Every writer (a
 * commit, retention, a drill, a final failure, a verification) rebuilds it
 * from the files after its change, holding the app's lock for both (see
 * changeApp). It records what it was built from: the modification times of
 * the app directory and of `.drills` (read before the files, so a change
 * made during the build makes it outdated, never wrong), the names of the
 * snapshot directories, and which of them had no manifest yet. A reader that
 * finds it missing, unreadable, malformed, or built from other times or
 * names rebuilds it from the files (a snapshot deleted or copied in by hand,
 * a writer that crashed before the update) and says so at debug level. It
 * writes that back only when the times it read are older than RACY_MS: a
 * change within the same tick of a coarse filesystem clock keeps the time,
 * so a reader's build that raced a writer must not be trusted later (git's
 * "racily clean" rule). It lives in its own directory so that writing it
 * does not change the app directory's time.
 */
import { closeSync, constants as fsConstants, fstatSync, lstatSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { lstat, readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../log.ts';
import { toError } from '../errors.ts';
import { makeDirectory, ownerFor, replaceFile } from './durable.ts';
import { appDirectory, compareSnapshotIds, DRILLS_DIR, isSnapshotId, MANIFEST_FILE, SUMMARY_DIR, SUMMARY_FILE, SUMMARY_FORMAT } from './layout.ts';
import type { Manifest } from './manifest.ts';
import { latestDrillResults } from './read.ts';
import { isObject, readFailureRecord, readVerifyRecord, type FailureRecord, type VerifyRecord } from './records.ts';

/** A complete snapshot as the summary keeps it: its manifest without the parts' details. */
export interface SnapshotSummary {
  id: string;
  node: string;
  trigger: Manifest['trigger'];
  startedAt: string;
  finishedAt: string;
  bytes: number;
  /** How many parts (files besides manifest.json and SHA256SUMS) it holds. */
  parts: number;
  warnings: string[];
}

/** A drill result as the summary keeps it (without its steps). */
export interface DrillSummary {
  snapshotId: string | null;
  passed: boolean;
  finishedAt: string;
  node: string;
  error: string | null;
}

/** What an app's files say, as the summary holds it; the same whether read from the cache or the files. */
export interface AppSummary {
  app: string;
  /** Complete snapshots with a readable manifest, newest first. */
  snapshots: SnapshotSummary[];
  /** Snapshot directories whose manifest.json is not JSON. */
  unreadable: string[];
  lastFailure: FailureRecord | null;
  lastVerify: VerifyRecord | null;
  lastDrill: DrillSummary | null;
  /** When the newest passed drill finished. */
  lastDrillPassedAt: string | null;
}

/** The summary file: the summary, and what it was built from. */
interface SummaryFile extends AppSummary {
  format: typeof SUMMARY_FORMAT;
  builtAt: string;
  source: SummarySource;
}

/** What a summary was built from, read before the files. */
interface SummarySource {
  /** Modification time (ns, decimal) of the app directory. */
  appDir: string;
  /** Modification time (ns, decimal) of `.drills`; null when there is none. */
  drills: string | null;
  /** The snapshot-id directory names, oldest first. */
  entries: string[];
  /** Those of them without a manifest.json when it was built (a commit never leaves one; a `cp -a` in progress does). */
  incomplete: string[];
  /** Those of them whose manifest.json was not JSON then (one being copied or edited), with its size and mtime (ns) then. */
  unreadable: { id: string; size: number; mtime: string }[];
}

/** A summary built within this long of a change to what it describes is not written back by a reader (see the header). */
export const RACY_MS = 2000;
/** A summary file larger than this is not read (a cache must stay cheap to read): it is rebuilt instead. */
const MAX_SUMMARY_BYTES = 16 * 1024 * 1024;
/** Temporaries of a summary write older than this are a crashed writer's: the next refresh removes them. */
const LEFTOVER_MS = 60_000;

/** Given a directory, return its modification time in ns (decimal), or null when it does not exist. (Synchronous: see currentSummary.) */
function mtimeOf(dir: string): string | null {
  return statSync(dir, { bigint: true, throwIfNoEntry: false })?.mtimeNs.toString() ?? null;
}

/** Given an app directory, return the names in it that are snapshot ids (directories), oldest first; [] when it does not exist. */
function snapshotNames(appDir: string): string[] {
  try {
    return readdirSync(appDir, { withFileTypes: true }).filter((entry) => entry.isDirectory() && isSnapshotId(entry.name)).map((entry) => entry.name).sort(compareSnapshotIds);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

const text = (value: unknown, fallback = ''): string => (typeof value === 'string' ? value : fallback);

/** Given a parsed manifest of snapshot `id`, return its summary (fields a hand-edited manifest lacks read as empty). */
function summarizeManifest(id: string, manifest: Partial<Manifest>): SnapshotSummary {
  return {
    id,
    node: text(manifest.node),
    trigger: manifest.trigger === 'manual' ? 'manual' : 'schedule',
    startedAt: text(manifest.startedAt, text(manifest.finishedAt)),
    finishedAt: text(manifest.finishedAt),
    bytes: Number(manifest.bytes ?? 0),
    parts: Array.isArray(manifest.parts) ? manifest.parts.length : 0,
    warnings: Array.isArray(manifest.warnings) ? manifest.warnings.map(String) : [],
  };
}

/** Given a manifest's path, return it parsed, 'missing' when there is none, or 'unreadable' when it is not a JSON object. */
async function readManifest(file: string): Promise<Partial<Manifest> | 'missing' | 'unreadable'> {
  let content: string;
  try {
    content = await readFile(file, 'utf8');
  } catch {
    return 'missing';
  }
  try {
    const manifest = JSON.parse(content) as unknown;
    return typeof manifest === 'object' && manifest !== null && !Array.isArray(manifest) ? manifest as Partial<Manifest> : 'unreadable';
  } catch {
    return 'unreadable';
  }
}

/**
 * Given the repository and an app, read the summary from the files: every
 * snapshot's manifest, the failure and verify records and the drill results.
 * Return it with what it was built from (the times read first).
 */
async function buildSummary(repository: string, app: string): Promise<{ file: SummaryFile; racy: boolean }> {
  const appDir = appDirectory(repository, app);
  const started = Date.now();
  const source: SummarySource = { appDir: mtimeOf(appDir) ?? '', drills: mtimeOf(path.join(appDir, DRILLS_DIR)), entries: snapshotNames(appDir), incomplete: [], unreadable: [] };
  const snapshots: SnapshotSummary[] = [];
  const unreadable: string[] = [];
  for (const id of [...source.entries].reverse()) {
    const manifestPath = path.join(appDir, id, MANIFEST_FILE);
    let manifest = await readManifest(manifestPath);
    if (manifest === 'missing') {
      source.incomplete.push(id); // no manifest: not a complete snapshot (yet)
      continue;
    }
    if (manifest === 'unreadable') {
      // What a reader compares later, read before the manifest is read again: a write after it changes it.
      const info = await stat(manifestPath, { bigint: true }).catch(() => null);
      manifest = await readManifest(manifestPath);
      if (manifest === 'missing' || manifest === 'unreadable') {
        if (manifest === 'missing') source.incomplete.push(id);
        else unreadable.push(id);
        if (manifest === 'unreadable' && info) source.unreadable.push({ id, size: Number(info.size), mtime: info.mtimeNs.toString() });
        continue;
      }
    }
    snapshots.push(summarizeManifest(id, manifest));
  }
  const drills = await latestDrillResults(repository, app);
  const drill = drills.latest;
  const racyAfter = BigInt(started - RACY_MS) * 1_000_000n;
  const racy = [source.appDir, source.drills].some((mtime) => mtime !== null && mtime !== '' && BigInt(mtime) > racyAfter);
  const file: SummaryFile = {
    format: SUMMARY_FORMAT,
    app,
    builtAt: new Date().toISOString(),
    source,
    snapshots,
    unreadable,
    lastFailure: await readFailureRecord(appDir),
    lastVerify: await readVerifyRecord(appDir),
    lastDrill: drill ? { snapshotId: drill.snapshotId ?? null, passed: drill.passed === true, finishedAt: text(drill.finishedAt), node: text(drill.node), error: drill.error ?? null } : null,
    lastDrillPassedAt: drills.latestPassed ? text(drills.latestPassed.finishedAt) : null,
  };
  return { file, racy };
}

function withoutSource(file: SummaryFile): AppSummary {
  const { format: _format, builtAt: _builtAt, source: _source, ...summary } = file;
  return summary;
}

/** Given the repository and an app, return what its files say, read from them all (no cache): what the summary must equal. */
export async function scanAppSummary(repository: string, app: string): Promise<AppSummary> {
  return withoutSource((await buildSummary(repository, app)).file);
}

/**
 * Given an app directory, make `.summary` ready for a write: created (owned
 * like the app directory when root writes), refused when it is not a
 * directory of its own (a symlink would send the write elsewhere), and
 * cleared of temporaries a crashed writer left.
 */
async function summaryDirectory(appDir: string): Promise<string> {
  const dir = path.join(appDir, SUMMARY_DIR);
  await makeDirectory(dir, await ownerFor(appDir));
  const info = await lstat(dir);
  if (!info.isDirectory()) throw new Error(`${dir} is not a directory (a symlink?): remove it, BYSU recreates it`);
  const now = Date.now();
  for (const name of await readdir(dir)) {
    if (name === SUMMARY_FILE) continue;
    const entry = await lstat(path.join(dir, name)).catch(() => null);
    if (entry?.isFile() && now - entry.mtimeMs > LEFTOVER_MS) await rm(path.join(dir, name), { force: true });
  }
  return dir;
}

/**
 * Given the repository and an app whose files a writer has just changed
 * under the app's lock, rebuild its summary and write it. Throw when the
 * summary cannot be written; the change itself stands (a reader rebuilds a
 * summary it finds outdated), so callers log that and go on. Nothing is
 * created for an app without a directory. Only under the app's lock: two
 * writers' builds racing within one clock tick could leave the older trusted.
 */
export async function refreshAppSummary(repository: string, app: string): Promise<AppSummary> {
  const appDir = appDirectory(repository, app);
  if (mtimeOf(appDir) === null) return scanAppSummary(repository, app);
  // Made ready before the times are read: creating it changes the app directory's time.
  const dir = await summaryDirectory(appDir);
  const { file } = await buildSummary(repository, app);
  await replaceFile(dir, SUMMARY_FILE, `${JSON.stringify(file)}\n`, { durable: false, owner: await ownerFor(appDir) });
  return withoutSource(file);
}

/** How a writer holds the app's lock (withAppLock); see changeApp. */
export type AppLock = <T>(fn: () => Promise<T>) => Promise<T>;

/**
 * Given the repository, an app, how to hold its lock (null when it cannot be
 * had: Redis unreachable) and a change to the app's files, make the change
 * and rebuild the summary, both under the lock. Without the lock only the
 * change is made: it outdates the summary, and readers rebuild it. A summary
 * that cannot be written is passed to `onSummaryError`, never thrown.
 */
export async function changeApp<T>(repository: string, app: string, lock: AppLock | null, change: () => Promise<T>, onSummaryError: (error: Error) => void): Promise<T> {
  if (lock === null) return change();
  return lock(async () => {
    const result = await change();
    await refreshAppSummary(repository, app).catch((error: unknown) => onSummaryError(toError(error)));
    return result;
  });
}

const isString = (value: unknown): value is string => typeof value === 'string';
const isNullableString = (value: unknown) => value === null || typeof value === 'string';
const isStringArray = (value: unknown): value is string[] => Array.isArray(value) && value.every(isString);

/** Given a parsed summary file, say whether every field has the type the readers rely on (a hand-edited or foreign file must not break status for every app). */
function wellFormed(file: Record<string, unknown>): file is Record<string, unknown> & SummaryFile {
  const source = file.source;
  if (!isObject(source) || !isString(source.appDir) || !isNullableString(source.drills) || !isStringArray(source.entries) || !isStringArray(source.incomplete)) return false;
  if (!Array.isArray(source.unreadable) || !source.unreadable.every((entry) => isObject(entry) && isString(entry.id) && typeof entry.size === 'number' && isString(entry.mtime))) return false;
  if (!Array.isArray(file.snapshots) || !isStringArray(file.unreadable)) return false;
  const snapshotOk = (snapshot: unknown) => isObject(snapshot) && [snapshot.id, snapshot.node, snapshot.trigger, snapshot.startedAt, snapshot.finishedAt].every(isString)
    && typeof snapshot.bytes === 'number' && typeof snapshot.parts === 'number' && isStringArray(snapshot.warnings);
  if (!file.snapshots.every(snapshotOk)) return false;
  const failure = file.lastFailure;
  if (failure !== null && !(isObject(failure) && isString(failure.at) && isString(failure.reason) && isString(failure.jobId) && typeof failure.attempts === 'number')) return false;
  const verify = file.lastVerify;
  if (verify !== null && !(isObject(verify) && isString(verify.at) && isString(verify.app) && Array.isArray(verify.snapshots)
    && verify.snapshots.every((snapshot) => isObject(snapshot) && isString(snapshot.id) && typeof snapshot.ok === 'boolean' && isStringArray(snapshot.problems) && isString(snapshot.at)))) return false;
  const drill = file.lastDrill;
  if (drill !== null && !(isObject(drill) && isNullableString(drill.snapshotId) && typeof drill.passed === 'boolean' && isString(drill.finishedAt) && isString(drill.node) && isNullableString(drill.error))) return false;
  return isNullableString(file.lastDrillPassedAt);
}

/** Given the parsed summary file and what the app's files look like now, say why it is outdated, or null when it is current. */
function outdated(file: unknown, app: string, now: Pick<SummarySource, 'appDir' | 'drills' | 'entries'>): string | null {
  if (!isObject(file)) return 'missing or unreadable';
  if (file.format !== SUMMARY_FORMAT || file.app !== app || !wellFormed(file)) return `not a well-formed ${SUMMARY_FORMAT} summary of ${app}`;
  if (file.source.appDir !== now.appDir) return 'the app directory changed since it was built';
  if (file.source.drills !== now.drills) return '.drills changed since it was built';
  const entries = file.source.entries;
  if (entries.length !== now.entries.length || entries.some((name, index) => name !== now.entries[index])) return 'the snapshot directories changed since it was built';
  return null;
}

/**
 * Given an app directory and what its summary was built from, say whether a
 * snapshot directory's manifest changed since without changing the app
 * directory: one that was missing exists now (a copy completed), or one that
 * was not JSON has another size or time (written whole since). Normally
 * there is none of either, and this costs nothing.
 */
function manifestsChanged(appDir: string, source: SummarySource): boolean {
  for (const id of source.incomplete) {
    if (lookAt(() => lstatSync(path.join(appDir, id, MANIFEST_FILE), { throwIfNoEntry: false })) !== undefined) return true;
  }
  for (const { id, size, mtime } of source.unreadable) {
    const info = lookAt(() => statSync(path.join(appDir, id, MANIFEST_FILE), { bigint: true, throwIfNoEntry: false }));
    if (info === undefined || Number(info.size) !== size || info.mtimeNs.toString() !== mtime) return true;
  }
  return false;
}

/**
 * Given a stat call, return what it found, or undefined when the path is
 * missing or cannot be looked at: a manifest in a directory that a root
 * `cp -a` has not opened yet (EACCES) is still missing.
 */
function lookAt<T>(call: () => T | undefined): T | undefined {
  try {
    return call();
  } catch {
    return undefined;
  }
}

/**
 * Given the summary file's path, return its JSON, or null when it is missing,
 * not a regular file, too large or not JSON. Opened without blocking: a FIFO
 * put there must not hold the event loop (the read is synchronous).
 */
function readSummaryFile(file: string): unknown {
  let fd;
  try {
    fd = openSync(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOFOLLOW);
  } catch {
    return null;
  }
  try {
    const info = fstatSync(fd);
    if (!info.isFile() || info.size > MAX_SUMMARY_BYTES) return null;
    return JSON.parse(readFileSync(fd, 'utf8')) as unknown;
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

/**
 * Given the repository and an app, look at its summary file and what it
 * describes, and return the summary when it is current; else why it is not,
 * with the app directory's owner (null: there is no app directory). Throw
 * when the app directory cannot be read (EACCES, EIO).
 *
 * Synchronous on purpose: it is a handful of metadata calls on what the
 * kernel has cached (a stat, the small file, a readdir), which take a few
 * microseconds each, where a round trip through libuv's thread pool costs
 * ten times that; a fleet's read takes them in batches (readAppSummaries)
 * and yields between them, so a dashboard is never held for long.
 */
function currentSummary(repository: string, app: string): { summary: AppSummary } | { reason: string; owner: number | null } {
  const appDir = appDirectory(repository, app);
  const info = statSync(appDir, { bigint: true, throwIfNoEntry: false });
  if (info === undefined) return { reason: 'no app directory', owner: null };
  const cached = readSummaryFile(path.join(appDir, SUMMARY_DIR, SUMMARY_FILE));
  let reason = outdated(cached, app, { appDir: info.mtimeNs.toString(), drills: mtimeOf(path.join(appDir, DRILLS_DIR)), entries: snapshotNames(appDir) });
  if (reason === null && manifestsChanged(appDir, (cached as SummaryFile).source)) reason = 'a snapshot\'s manifest appeared or changed since it was built';
  return reason === null ? { summary: withoutSource(cached as SummaryFile) } : { reason, owner: Number(info.uid) };
}

export interface ReadSummaryOptions {
  logger?: Logger;
}

/**
 * Given the repository, an app and why its summary is not current, rebuild
 * it from the files, and write it back when this process owns the app
 * directory (so a root shell's `bysu status` never leaves a file the workers
 * cannot replace). An app without a directory has an empty summary.
 */
async function rebuildSummary(repository: string, app: string, outdatedBy: { reason: string; owner: number | null }, options: ReadSummaryOptions): Promise<AppSummary> {
  if (outdatedBy.owner === null) return scanAppSummary(repository, app);
  const appDir = appDirectory(repository, app);
  options.logger?.debug({ app, reason: outdatedBy.reason }, 'summary rebuilt from the snapshots');
  // Written back only by the app directory's owner (a root shell must not leave files the workers cannot
  // replace), and only when no change was within RACY_MS of the build (it may have raced a writer). The
  // directory is made ready before the build: creating it changes the app directory's time.
  const writable = process.getuid?.() === outdatedBy.owner;
  const dir = writable ? await summaryDirectory(appDir).catch((error: unknown) => {
    options.logger?.debug({ app, err: toError(error).message }, 'cannot write the rebuilt summary');
    return null;
  }) : null;
  const { file, racy } = await buildSummary(repository, app);
  if (dir !== null && !racy) {
    await replaceFile(dir, SUMMARY_FILE, `${JSON.stringify(file)}\n`, { durable: false })
      .catch((error: unknown) => options.logger?.debug({ app, err: toError(error).message }, 'cannot write the rebuilt summary'));
  }
  return withoutSource(file);
}

/**
 * Given the repository and an app, return its summary: from
 * `.summary/summary.json` when that was built from the files as they are
 * now, else rebuilt from the files (see rebuildSummary). Throw when the app
 * directory cannot be read (EACCES, EIO).
 */
export async function readAppSummary(repository: string, app: string, options: ReadSummaryOptions = {}): Promise<AppSummary> {
  const current = currentSummary(repository, app);
  return 'summary' in current ? current.summary : rebuildSummary(repository, app, current, options);
}

/** How many apps' summaries are looked at between two turns of the event loop (about a millisecond's work). */
const CHECK_BATCH = 64;
/** How many outdated summaries are rebuilt at once: enough to keep libuv's four threads busy. */
const REBUILD_CONCURRENCY = 16;

const asError = (error: unknown) => (error instanceof Error ? error : new Error(String(error)));

/**
 * Given the repository and app names, return each app's summary, or the
 * error that kept it from being read, in the order given. The current
 * summaries are read in batches of synchronous calls, yielding to the event
 * loop between batches; the outdated ones are rebuilt several at once.
 */
export async function readAppSummaries(repository: string, apps: readonly string[], options: ReadSummaryOptions = {}): Promise<Map<string, AppSummary | Error>> {
  const results = new Map<string, AppSummary | Error>();
  const outdatedApps: { app: string; outdatedBy: { reason: string; owner: number | null } }[] = [];
  for (let start = 0; start < apps.length; start += CHECK_BATCH) {
    if (start > 0) await new Promise((resolve) => setImmediate(resolve));
    for (const app of apps.slice(start, start + CHECK_BATCH)) {
      try {
        const current = currentSummary(repository, app);
        if ('summary' in current) results.set(app, current.summary);
        else outdatedApps.push({ app, outdatedBy: current });
      } catch (error) {
        results.set(app, asError(error));
      }
    }
  }
  let next = 0;
  const rebuilder = async () => {
    while (next < outdatedApps.length) {
      const { app, outdatedBy } = outdatedApps[next]!;
      next += 1;
      results.set(app, await rebuildSummary(repository, app, outdatedBy, options).catch(asError));
    }
  };
  await Promise.all(Array.from({ length: Math.min(REBUILD_CONCURRENCY, outdatedApps.length) }, rebuilder));
  return new Map(apps.map((app) => [app, results.get(app)!]));
}
