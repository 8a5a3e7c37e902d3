/**
 * An app's mirror record, `<app>/.mirror.json`: what its source said at the
 * last run that reached it, written by the mirror worker (run-mirror.ts) and
 * read by status, /metrics and /api. A JSON file beside the snapshots, so it
 * reads without BYSU too.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { makeDirectory, replaceFile, storageError } from '../repository/durable.ts';
import { NAME_PATTERN } from '../config/formats.ts';
import { appDirectory } from '../repository/layout.ts';
import { listAppDirectories } from '../repository/read.ts';

/** An app's mirror record, `<app>/.mirror.json`: what its source said at the last run that reached it. */
export const MIRROR_RECORD_FILE = '.mirror.json';
export const MIRROR_RECORD_FORMAT = 'bysu-mirror/1';

export interface MirrorRecord {
  format: typeof MIRROR_RECORD_FORMAT;
  /** The mirror (mirrors[].name) and its source's URL. */
  source: string;
  url: string;
  /** When the source last listed the app's snapshots to this mirror (ISO). */
  checkedAt: string;
  /** The source's complete snapshots then, newest first. */
  sourceSnapshots: { id: string; finishedAt: string }[];
  /** The largest keep the source has said for the app (null: it never said). */
  sourceKeep: number | null;
  /** The keep applied here at the first run and at the last (whether the source said it, the config or defaults.keep). */
  keepFirst: number | null;
  keepUsed: number | null;
  /** The last copy committed here, and the last run's failure for this app (cleared by a run without one). */
  lastCopy: { id: string; at: string } | null;
  /** local: the failure was this side's (a full disk, the repository unavailable), and the app is FAILING. */
  lastError: { at: string; reason: string; local?: boolean } | null;
}

/** Given a value read from a record, return it as a keep (a whole number of at least 1), or null. */
const asKeep = (value: unknown): number | null => (typeof value === 'number' && Number.isSafeInteger(value) && value >= 1 ? value : null);

/** Given an app directory's `.mirror.json` text, return the record, or null when it is not one. */
export function parseMirrorRecord(text: string): MirrorRecord | null {
  try {
    const record = JSON.parse(text) as Partial<MirrorRecord>;
    if (record.format !== MIRROR_RECORD_FORMAT || typeof record.source !== 'string' || typeof record.checkedAt !== 'string' || !Array.isArray(record.sourceSnapshots)) return null;
    return {
      format: MIRROR_RECORD_FORMAT,
      source: record.source,
      url: typeof record.url === 'string' ? record.url : '',
      checkedAt: record.checkedAt,
      sourceSnapshots: record.sourceSnapshots.filter((entry) => typeof entry?.id === 'string' && typeof entry.finishedAt === 'string'),
      sourceKeep: asKeep(record.sourceKeep),
      // A keep is a whole number of at least 1; anything else (a record from before these fields, or edited by
      // hand) reads as absent, and the run falls back to what the release before applied (run-mirror.ts).
      keepFirst: asKeep(record.keepFirst) ?? asKeep((record as { sourceKeepFirst?: unknown }).sourceKeepFirst),
      keepUsed: asKeep(record.keepUsed),
      lastCopy: record.lastCopy && typeof record.lastCopy.id === 'string' ? record.lastCopy : null,
      lastError: record.lastError && typeof record.lastError.reason === 'string' ? record.lastError : null,
    };
  } catch {
    return null;
  }
}

/** Given the repository and an app, return its mirror record, or null. */
export async function readMirrorRecord(repository: string, app: string): Promise<MirrorRecord | null> {
  const text = await readFile(path.join(appDirectory(repository, app), MIRROR_RECORD_FILE), 'utf8').catch(() => null);
  return text === null ? null : parseMirrorRecord(text);
}

/**
 * Given the repository, the apps configured here and which mirrors count
 * (names), return the app directories holding copies of one of them: those
 * whose `.mirror.json` names it. Sorted.
 */
export async function appsHeldBy(repository: string, configured: ReadonlySet<string>, mirrors: ReadonlySet<string>): Promise<string[]> {
  const held: string[] = [];
  for (const name of (await listAppDirectories(repository)).filter((candidate) => NAME_PATTERN.test(candidate) && !configured.has(candidate))) {
    const record = await readMirrorRecord(repository, name);
    if (record !== null && mirrors.has(record.source)) held.push(name);
  }
  return held.sort();
}

/** Given the repository, an app and its record, replace the app's `.mirror.json` atomically. */
export async function writeMirrorRecord(repository: string, app: string, record: MirrorRecord): Promise<void> {
  const dir = appDirectory(repository, app);
  try {
    await makeDirectory(dir);
    await replaceFile(dir, MIRROR_RECORD_FILE, `${JSON.stringify(record, null, 2)}\n`);
  } catch (error) {
    throw storageError(error, `write ${path.join(dir, MIRROR_RECORD_FILE)}`);
  }
}


/** A mirror's contact with its source, `<repository>/.mirrors/<name>.json`: whether the source answers at all (an app's record cannot say that before the first copy). */
export const MIRRORS_DIR = '.mirrors';

export interface MirrorContact {
  /** When this mirror first ran here, when its source last answered (null: never), and its last run's failure to reach it. */
  firstRunAt: string;
  lastContactAt: string | null;
  lastError: { at: string; reason: string } | null;
}

/** Given the repository and a mirror's name, return its contact record, or null before its first run. */
export async function readMirrorContact(repository: string, mirror: string): Promise<MirrorContact | null> {
  const text = await readFile(path.join(repository, MIRRORS_DIR, `${mirror}.json`), 'utf8').catch(() => null);
  if (text === null) return null;
  try {
    const record = JSON.parse(text) as Partial<MirrorContact>;
    if (typeof record.firstRunAt !== 'string') return null;
    return {
      firstRunAt: record.firstRunAt,
      lastContactAt: typeof record.lastContactAt === 'string' ? record.lastContactAt : null,
      lastError: record.lastError && typeof record.lastError.reason === 'string' ? record.lastError : null,
    };
  } catch {
    return null;
  }
}

/** Given the repository, a mirror's name and how the run went (reached, or the error), update its contact record. */
export async function recordMirrorContact(repository: string, mirror: string, outcome: { at: string; error?: string }): Promise<void> {
  const previous = await readMirrorContact(repository, mirror);
  const contact: MirrorContact = {
    firstRunAt: previous?.firstRunAt ?? outcome.at,
    lastContactAt: outcome.error === undefined ? outcome.at : previous?.lastContactAt ?? null,
    lastError: outcome.error === undefined ? null : { at: outcome.at, reason: outcome.error },
  };
  const dir = path.join(repository, MIRRORS_DIR);
  try {
    await makeDirectory(dir);
    await replaceFile(dir, `${mirror}.json`, `${JSON.stringify(contact, null, 2)}\n`);
  } catch (error) {
    throw storageError(error, `write ${path.join(dir, `${mirror}.json`)}`);
  }
}
