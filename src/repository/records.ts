/**
 * The records an app directory keeps beside its snapshots: drill results
 * (`.drills/<finishedAt>-<job>.json`, one per drill), the last final failure
 * (`.last-failure.json`) and the newest verdict of each kept snapshot
 * (`.last-verify.json`), each written whole and renamed into place. Like the
 * manifest they are plain JSON, meant to be read without BYSU, and the
 * summary (summary.ts) is rebuilt from them.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { cutToBytes } from '../printable.ts';
import type { DrillResult } from './drill-result.ts';
import { makeDirectory, ownerFor, replaceFile, storageError } from './durable.ts';
import { appDirectory, DRILLS_DIR, FAILURE_RECORD_FILE, safeJobName, VERIFY_RECORD_FILE, VERIFY_RECORD_FORMAT } from './layout.ts';
import { MAX_WARNING_BYTES, MAX_WARNINGS_PER_PART } from './manifest.ts';
import { requireRepository } from './marker.ts';
import { listSnapshotIds } from './read.ts';

/** An app's last final failure, as the snapshot worker records it (in Redis and in `.last-failure.json`). */
export interface FailureRecord {
  /** ISO time. */
  at: string;
  reason: string;
  jobId: string;
  attempts: number;
}

/** One snapshot's verdict: whether every file matched SHA256SUMS and the manifest, what did not, and when it was read. */
export interface VerifiedSnapshot {
  id: string;
  ok: boolean;
  problems: string[];
  /** When this snapshot was verified (ISO); a record written before this field had only the record's `at`. */
  at: string;
}

/** What the verifications of an app found: the newest verdict of each complete snapshot it has. */
export interface VerifyRecord {
  format: typeof VERIFY_RECORD_FORMAT;
  app: string;
  /** When the record was written (ISO): the end of a verification, or the moment one found a damaged snapshot. */
  at: string;
  snapshots: VerifiedSnapshot[];
}

/**
 * Given the repository, an app, a file name in its directory and the text,
 * replace the file atomically. Throw RepositoryUnavailableError when the
 * root is missing or unmarked (nothing is created), StorageError when it
 * cannot write.
 */
async function writeAppRecord(repository: string, app: string, subdirectory: string | null, name: string, text: string): Promise<string> {
  await requireRepository(repository);
  const appDir = appDirectory(repository, app);
  const dir = subdirectory === null ? appDir : path.join(appDir, subdirectory);
  try {
    await makeDirectory(appDir, await ownerFor(repository));
    const owner = await ownerFor(appDir);
    if (subdirectory !== null) await makeDirectory(dir, owner);
    return await replaceFile(dir, name, text, { owner });
  } catch (error) {
    throw storageError(error, `write ${path.join(dir, name)}`);
  }
}

/** Given the repository, an app and a drill result, write it as `<app>/.drills/<finishedAt>-<jobId>.json` (pretty JSON, 0600). */
export async function writeDrillResult(repository: string, app: string, result: DrillResult): Promise<string> {
  const name = `${result.finishedAt.replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z')}-${safeJobName(result.jobId)}.json`;
  return writeAppRecord(repository, app, DRILLS_DIR, name, `${JSON.stringify(result, null, 2)}\n`);
}

/** Given the repository, an app and its final failure, write it as `<app>/.last-failure.json`. */
export async function writeFailureRecord(repository: string, app: string, record: FailureRecord): Promise<string> {
  return writeAppRecord(repository, app, null, FAILURE_RECORD_FILE, `${JSON.stringify(record, null, 2)}\n`);
}

/**
 * Given the repository, an app and what its verification found, write it as
 * `<app>/.last-verify.json`. Each snapshot keeps at most
 * MAX_WARNINGS_PER_PART problems of MAX_WARNING_BYTES each: a snapshot with
 * a thousand bad files must not make a record status reads at every call big.
 */
export async function writeVerifyRecord(repository: string, app: string, record: VerifyRecord): Promise<string> {
  const bounded: VerifyRecord = {
    ...record,
    snapshots: record.snapshots.map((snapshot) => ({
      ...snapshot,
      problems: [
        ...snapshot.problems.slice(0, MAX_WARNINGS_PER_PART).map((problem) => cutToBytes(problem, MAX_WARNING_BYTES)),
        ...(snapshot.problems.length > MAX_WARNINGS_PER_PART ? [`… and ${snapshot.problems.length - MAX_WARNINGS_PER_PART} more problems`] : []),
      ],
    })),
  };
  return writeAppRecord(repository, app, null, VERIFY_RECORD_FILE, `${JSON.stringify(bounded, null, 2)}\n`);
}

/**
 * Given the repository, an app and the verdicts a verification has found so
 * far, merge them into `<app>/.last-verify.json` and return the record
 * written: each complete snapshot keeps its newest verdict (these, else the
 * one recorded before), and a snapshot no longer there (retention deleted
 * it, perhaps while it was being read) is dropped. Run it under the app's
 * lock: retention deletes under it, and two verifications must not lose each
 * other's verdicts. Throws as writeVerifyRecord does.
 */
export async function recordVerification(repository: string, app: string, found: readonly VerifiedSnapshot[], now = new Date()): Promise<VerifyRecord> {
  const appDir = appDirectory(repository, app);
  const previous = await readVerifyRecord(appDir);
  const verdicts = new Map((previous?.snapshots ?? []).map((snapshot) => [snapshot.id, snapshot]));
  for (const snapshot of found) verdicts.set(snapshot.id, snapshot);
  // Every snapshot directory still there keeps its verdict, one without a readable manifest too (damage).
  const snapshots = (await listSnapshotIds(repository, app)).flatMap((id) => verdicts.get(id) ?? []);
  const record: VerifyRecord = { format: VERIFY_RECORD_FORMAT, app, at: now.toISOString(), snapshots };
  await writeVerifyRecord(repository, app, record);
  return record;
}

/** Given a file, return its JSON, or null when it is missing or not JSON (a record is never worth failing a read for). */
async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as unknown;
  } catch {
    return null;
  }
}

/** Whether a parsed JSON value is an object (not null, not an array). */
export const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Given an app directory, return its last final failure, or null when there is none or it cannot be read as one. */
export async function readFailureRecord(appDir: string): Promise<FailureRecord | null> {
  const value = await readJson(path.join(appDir, FAILURE_RECORD_FILE));
  if (!isObject(value) || typeof value.at !== 'string' || Number.isNaN(Date.parse(value.at)) || typeof value.reason !== 'string') return null;
  return { at: value.at, reason: value.reason, jobId: String(value.jobId ?? ''), attempts: Number(value.attempts ?? 0) };
}

/** Given an app directory, return what its last verification found, or null when there was none or it cannot be read. */
export async function readVerifyRecord(appDir: string): Promise<VerifyRecord | null> {
  const value = await readJson(path.join(appDir, VERIFY_RECORD_FILE));
  if (!isObject(value) || value.format !== VERIFY_RECORD_FORMAT || typeof value.at !== 'string' || !Array.isArray(value.snapshots)) return null;
  const recordAt = value.at;
  const snapshots = value.snapshots.filter(isObject).map((snapshot) => ({
    id: String(snapshot.id),
    ok: snapshot.ok === true,
    problems: Array.isArray(snapshot.problems) ? snapshot.problems.map(String) : [],
    at: typeof snapshot.at === 'string' && !Number.isNaN(Date.parse(snapshot.at)) ? snapshot.at : recordAt,
  }));
  return { format: VERIFY_RECORD_FORMAT, app: String(value.app ?? ''), at: recordAt, snapshots };
}
