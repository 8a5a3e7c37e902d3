/**
 * An app's summary: what `bysu status`, /metrics and /api need to know of an
 * app (its complete snapshots with their sizes, the last final failure, the
 * last verification, the last drill), in one small file,
 * `<app>/.summary/summary.json`, so that reading a fleet of a thousand apps is
 * a thousand small reads instead of fourteen thousand manifests.
 *
 * It is a cache and nothing depends on it being right. Every writer (a
 * commit, retention, a drill, a final failure, a verification) rebuilds it
 * from the files after its change. It records what it was built from: the
 * modification times of the app directory and of `.drills` (read before the
 * files, so a change made during the build makes it outdated, never wrong),
 * and the names of the snapshot directories. A reader that finds it missing,
 * unreadable, or built from other times or names rebuilds it from the files
 * (a snapshot deleted by hand, a writer that crashed before the update) and
 * says so at debug level. Writers and readers need no lock for that: a
 * summary written by a slower builder carries the older times and is rebuilt
 * at the next read. It lives in its own directory so that writing it does
 * not change the app directory's time.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../log.ts';
import { makeDirectory, replaceFile } from './durable.ts';
import { appDirectory, compareSnapshotIds, DRILLS_DIR, isSnapshotId, MANIFEST_FILE, SUMMARY_DIR, SUMMARY_FILE, SUMMARY_FORMAT } from './layout.ts';
import type { Manifest } from './manifest.ts';
import { latestDrillResults } from './read.ts';
import { readFailureRecord, readVerifyRecord, type FailureRecord, type VerifyRecord } from './records.ts';

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
  /** Modification times (ns, decimal) of the app directory and `.drills` (null: none) and the snapshot-id names, read before the build. */
  source: { appDir: string; drills: string | null; entries: string[] };
}

/** Given a directory, return its modification time in ns (decimal), or null when it does not exist. */
async function mtimeOf(dir: string): Promise<string | null> {
  try {
    return (await stat(dir, { bigint: true })).mtimeNs.toString();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/** Given an app directory, return the names in it that are snapshot ids (directories), oldest first; [] when it does not exist. */
async function snapshotNames(appDir: string): Promise<string[]> {
  try {
    return (await readdir(appDir, { withFileTypes: true })).filter((entry) => entry.isDirectory() && isSnapshotId(entry.name)).map((entry) => entry.name).sort(compareSnapshotIds);
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

/**
 * Given the repository and an app, read the summary from the files: every
 * snapshot's manifest, the failure and verify records and the drill results.
 * Return it with what it was built from (the times read first).
 */
async function buildSummary(repository: string, app: string): Promise<SummaryFile> {
  const appDir = appDirectory(repository, app);
  const source = { appDir: (await mtimeOf(appDir)) ?? '', drills: await mtimeOf(path.join(appDir, DRILLS_DIR)), entries: await snapshotNames(appDir) };
  const snapshots: SnapshotSummary[] = [];
  const unreadable: string[] = [];
  for (const id of [...source.entries].reverse()) {
    let manifestText: string;
    try {
      manifestText = await readFile(path.join(appDir, id, MANIFEST_FILE), 'utf8');
    } catch {
      continue; // no manifest: not a complete snapshot
    }
    try {
      const manifest = JSON.parse(manifestText) as unknown;
      if (typeof manifest !== 'object' || manifest === null) throw new TypeError('not an object');
      snapshots.push(summarizeManifest(id, manifest as Partial<Manifest>));
    } catch {
      unreadable.push(id);
    }
  }
  const drills = await latestDrillResults(repository, app);
  const drill = drills.latest;
  return {
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
}

function withoutSource(file: SummaryFile): AppSummary {
  const { format: _format, builtAt: _builtAt, source: _source, ...summary } = file;
  return summary;
}

/** Given the repository and an app, return what its files say, read from them all (no cache): what the summary must equal. */
export async function scanAppSummary(repository: string, app: string): Promise<AppSummary> {
  return withoutSource(await buildSummary(repository, app));
}

/** Given an app directory and a summary built from it, write it as `.summary/summary.json` (not fsynced: a cache). */
async function writeSummary(appDir: string, file: SummaryFile): Promise<void> {
  await replaceFile(path.join(appDir, SUMMARY_DIR), SUMMARY_FILE, `${JSON.stringify(file)}\n`, { durable: false });
}

/**
 * Given the repository and an app whose files a writer has just changed,
 * rebuild its summary and write it. Call it after every change (under the
 * app's lock where the change holds it). Throw when the summary cannot be
 * written; the change itself stands (a reader rebuilds a summary it finds
 * outdated), so callers log that and go on. Nothing is created for an app
 * without a directory.
 */
export async function refreshAppSummary(repository: string, app: string): Promise<AppSummary> {
  const appDir = appDirectory(repository, app);
  if ((await mtimeOf(appDir)) === null) return scanAppSummary(repository, app);
  // Created before the times are read: creating it changes the app directory's time.
  await makeDirectory(path.join(appDir, SUMMARY_DIR));
  const file = await buildSummary(repository, app);
  await writeSummary(appDir, file);
  return withoutSource(file);
}

/** Given the parsed summary file and what the app's files look like now, say why it is outdated, or null when it is current. */
function outdated(file: unknown, app: string, now: SummaryFile['source']): string | null {
  if (typeof file !== 'object' || file === null) return 'missing or unreadable';
  const summary = file as Partial<SummaryFile>;
  if (summary.format !== SUMMARY_FORMAT || summary.app !== app || !summary.source || !Array.isArray(summary.snapshots)) return `not a ${SUMMARY_FORMAT} summary of ${app}`;
  if (summary.source.appDir !== now.appDir) return 'the app directory changed since it was built';
  if (summary.source.drills !== now.drills) return '.drills changed since it was built';
  const entries = summary.source.entries ?? [];
  if (entries.length !== now.entries.length || entries.some((name, index) => name !== now.entries[index])) return 'the snapshot directories changed since it was built';
  return null;
}

export interface ReadSummaryOptions {
  logger?: Logger;
}

/**
 * Given the repository and an app, return its summary: from
 * `.summary/summary.json` when that was built from the files as they are
 * now, else rebuilt from the files (and written back when this process owns
 * the app directory, so a root shell's `bysu status` never leaves a file the
 * workers cannot replace). An app without a directory has an empty summary.
 * Throw when the app directory cannot be read (EACCES, EIO).
 */
export async function readAppSummary(repository: string, app: string, options: ReadSummaryOptions = {}): Promise<AppSummary> {
  const appDir = appDirectory(repository, app);
  let info;
  try {
    info = await stat(appDir, { bigint: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return scanAppSummary(repository, app);
    throw error;
  }
  const [cached, drills, entries] = await Promise.all([
    readFile(path.join(appDir, SUMMARY_DIR, SUMMARY_FILE), 'utf8').then((content) => JSON.parse(content) as unknown).catch(() => null),
    mtimeOf(path.join(appDir, DRILLS_DIR)),
    snapshotNames(appDir),
  ]);
  const reason = outdated(cached, app, { appDir: info.mtimeNs.toString(), drills, entries });
  if (reason === null) return withoutSource(cached as SummaryFile);
  options.logger?.debug({ app, reason }, 'summary rebuilt from the snapshots');
  if (process.getuid?.() !== Number(info.uid)) return scanAppSummary(repository, app);
  return refreshAppSummary(repository, app).catch(async (error: unknown) => {
    options.logger?.debug({ app, err: (error as Error).message }, 'cannot write the rebuilt summary');
    return scanAppSummary(repository, app);
  });
}

/** How many apps' summaries are read at once: enough to keep libuv's four threads busy. */
const READ_CONCURRENCY = 16;

/**
 * Given the repository and app names, return each app's summary, or the
 * error that kept it from being read, in the order given, reading several at once.
 */
export async function readAppSummaries(repository: string, apps: readonly string[], options: ReadSummaryOptions = {}): Promise<Map<string, AppSummary | Error>> {
  const results = new Map<string, AppSummary | Error>();
  let next = 0;
  const reader = async () => {
    while (next < apps.length) {
      const app = apps[next]!;
      next += 1;
      results.set(app, await readAppSummary(repository, app, options).catch((error: unknown) => (error instanceof Error ? error : new Error(String(error)))));
    }
  };
  await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, apps.length) }, reader));
  return new Map(apps.map((app) => [app, results.get(app)!]));
}
