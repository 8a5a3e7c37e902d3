/**
 * The verification of one app, for `bysu verify` and the verify worker alike
 * (it knows nothing of BullMQ): every complete snapshot read again, newest
 * first, against its SHA256SUMS and manifest, tar parts re-validated, at the
 * pace of a ReadThrottle; the verdicts merged into `<app>/.last-verify.json`
 * (recordVerification) under the app's lock, and the app's summary rebuilt.
 * A damaged snapshot is recorded as soon as it is found, so status and the
 * alert know of it while the older snapshots are still being read (hours for
 * a large app at the bound); the rest is recorded at the end.
 */
import path from 'node:path';
import { toError } from '../errors.ts';
import type { ReadThrottle } from '../repository/read-throttle.ts';
import { appDirectory } from '../repository/layout.ts';
import { listSnapshotIds, listSnapshots, NO_MANIFEST_PROBLEM, verifySnapshot, type VerifyResult } from '../repository/read.ts';
import { recordVerification, type VerifiedSnapshot, type VerifyRecord } from '../repository/records.ts';
import { changeApp, type AppLock } from '../repository/summary.ts';

export interface VerifyAppOptions {
  /** Paces the reads (verify.maxBytesPerSecond); none: as fast as the disk goes. */
  throttle?: ReadThrottle;
  /** Stops the verification: it then throws the signal's reason, having recorded what it found so far only if that was damage. */
  signal?: AbortSignal;
  /** How to hold the app's lock while the record is written; null (Redis unreachable): the record alone is written, readers rebuild the summary. */
  lock: AppLock | null;
  /** Only this snapshot (its verdict is merged into the record like any other); none: every complete snapshot. */
  snapshotId?: string;
  /** Each snapshot's verdict, as it is found. */
  onSnapshot?: (result: VerifyResult) => void;
  /** The record as each write left it. */
  onRecorded?: (record: VerifyRecord) => Promise<void>;
  /** The record was written but the summary could not be (readers rebuild it). */
  onSummaryError: (error: Error) => void;
}

export interface AppVerification {
  /** Every snapshot read, newest first. */
  results: VerifyResult[];
  /** The record as the last write left it; null when nothing was recorded (no snapshot, or the write failed). */
  record: VerifyRecord | null;
  /** Why the record could not be written, if it could not; the verdicts stand. */
  recordError: Error | null;
  bytes: number;
}

/**
 * Given the repository, an app and the options, verify each complete
 * snapshot of the app, newest first, and record the verdicts; return them.
 * Throws only the signal's reason (stopped) or when the app's directory
 * cannot be listed; a record that cannot be written is returned as
 * `recordError`, after every snapshot was read.
 */
export async function verifyApp(repository: string, app: string, options: VerifyAppOptions): Promise<AppVerification> {
  const results: VerifyResult[] = [];
  const found: VerifiedSnapshot[] = [];
  let record: VerifyRecord | null = null;
  let recordError: Error | null = null;
  let unrecorded = false;
  const save = async () => {
    unrecorded = false;
    try {
      record = await changeApp(repository, app, options.lock, () => recordVerification(repository, app, found), options.onSummaryError);
      recordError = null;
    } catch (error) {
      recordError = toError(error);
      return;
    }
    await options.onRecorded?.(record);
  };
  const listed = new Map((await listSnapshots(repository, app)).map((snapshot) => [snapshot.id, snapshot]));
  // Every snapshot directory, newest first: one without a readable manifest is not listed as a snapshot, and
  // must not be skipped here (a deleted or unreadable manifest would otherwise clear its damage).
  const ids = (await listSnapshotIds(repository, app)).filter((id) => options.snapshotId === undefined || id === options.snapshotId);
  for (const id of ids) {
    const snapshot = listed.get(id);
    const result: VerifyResult = snapshot
      ? await verifySnapshot(snapshot, { ...(options.throttle ? { throttle: options.throttle } : {}), ...(options.signal ? { signal: options.signal } : {}) })
      : { id, path: path.join(appDirectory(repository, app), id), ok: false, problems: [NO_MANIFEST_PROBLEM], files: 0, bytes: 0 };
    results.push(result);
    found.push({ id: result.id, ok: result.ok, problems: result.problems, at: new Date().toISOString() });
    unrecorded = true;
    options.onSnapshot?.(result);
    if (!result.ok) await save();
  }
  if (unrecorded) await save();
  return { results, record, recordError, bytes: results.reduce((sum, result) => sum + result.bytes, 0) };
}

/** How many damaged snapshots an alert's reason names; the rest are counted. */
const NAMED_IN_REASON = 3;

/**
 * Given an app and its damaged snapshots, return one line for an alert:
 * `shop/20261126T021503Z: shop.sql: checksum mismatch (…)`, the first
 * problem of each of the first few, and how many more.
 */
export function damageReason(app: string, damaged: readonly { id: string; problems: string[] }[]): string {
  const named = damaged.slice(0, NAMED_IN_REASON).map(({ id, problems }) => `${app}/${id}: ${problems[0] ?? 'damaged'}`);
  const more = damaged.length - named.length;
  return `${named.join('; ')}${more > 0 ? `; and ${more} more damaged snapshot(s)` : ''}`;
}
