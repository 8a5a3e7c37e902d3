/**
 * Names and places in the repository: snapshot ids, the directories of an
 * app, and the modes everything is created with. The format is meant to be
 * read without BYSU, so these never change lightly.
 */
import path from 'node:path';

/** The `format` of a snapshot's manifest.json. */
export const MANIFEST_FORMAT = 'bysu-snapshot/1';
/** The `format` of a drill result under `.drills`. */
export const DRILL_RESULT_FORMAT = 'bysu-drill/1';
/** The file at the repository root that makes a directory a BYSU repository (written by `bysu init` only). */
export const REPOSITORY_MARKER_FILE = '.bysu-repository';
/** The `format` the marker names; a root whose marker names another format is refused. */
export const REPOSITORY_FORMAT = 'bysu-repository/1';
export const MANIFEST_FILE = 'manifest.json';
export const SUMS_FILE = 'SHA256SUMS';
export const LATEST_LINK = 'latest';
/** Attempts in progress; never read as snapshots. */
export const INCOMING_DIR = '.incoming';
/** One marker per committed job id: the fence against committing a job twice. */
export const COMMITS_DIR = '.commits';
/** Results of restore drills, one JSON file each. */
export const DRILLS_DIR = '.drills';
/** A drill result's file name: `<finishedAt to the second, UTC>-<job>.json`, so names sort by time. */
export const DRILL_RESULT_PATTERN = /^\d{8}T\d{6}Z-[A-Za-z0-9._-]*\.json$/;
/** A drill result being written: `.<result name>.<8 hex>`, renamed into place when complete. */
export const DRILL_TEMPORARY_PATTERN = /^\.\d{8}T\d{6}Z-[A-Za-z0-9._-]*\.json\.[0-9a-f]{8}$/;
/** The app's summary, a cache of what the files above say: `.summary/summary.json` (see summary.ts). */
export const SUMMARY_DIR = '.summary';
export const SUMMARY_FILE = 'summary.json';
/** The `format` of an app's summary. */
export const SUMMARY_FORMAT = 'bysu-summary/1';
/** The app's last final failure, replaced at each one (see records.ts). */
export const FAILURE_RECORD_FILE = '.last-failure.json';
/** What the app's last verification found, replaced at each one (see records.ts). */
export const VERIFY_RECORD_FILE = '.last-verify.json';
/** The `format` of the verify record. */
export const VERIFY_RECORD_FORMAT = 'bysu-verify/1';
export const DIR_MODE = 0o700;
export const FILE_MODE = 0o600;

/** `20261126T021500Z`, optionally `-2`, `-3`… when that second was taken. */
export const SNAPSHOT_ID_PATTERN = /^(\d{8}T\d{6}Z)(?:-([2-9]|[1-9]\d+))?$/;

/** Given the start time of a snapshot, return its base id (UTC, to the second). */
export function snapshotIdFor(startedAt: Date): string {
  return startedAt.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
}

/** Given a base id and n ≥ 1, return the nth candidate: the base itself, then `-2`, `-3`… */
export function snapshotIdCandidate(baseId: string, n: number): string {
  return n === 1 ? baseId : `${baseId}-${n}`;
}

export function isSnapshotId(name: string): boolean {
  return SNAPSHOT_ID_PATTERN.test(name);
}

/** Order snapshot ids oldest first (time, then collision suffix numerically). */
export function compareSnapshotIds(a: string, b: string): number {
  const [, baseA = '', suffixA = '1'] = SNAPSHOT_ID_PATTERN.exec(a) ?? [];
  const [, baseB = '', suffixB = '1'] = SNAPSHOT_ID_PATTERN.exec(b) ?? [];
  if (baseA !== baseB) return baseA < baseB ? -1 : 1;
  return Number(suffixA) - Number(suffixB);
}

/** Given a snapshot id, return its start time. */
export function snapshotIdTime(id: string): Date {
  const base = SNAPSHOT_ID_PATTERN.exec(id)?.[1] ?? '';
  return new Date(base.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'));
}

export function appDirectory(repository: string, app: string): string {
  return path.join(repository, app);
}

/** Turn a job id into a file name (job ids are BYSU's own, but stay defensive). */
export function safeJobName(jobId: string): string {
  return jobId.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 120);
}

/** Whether a part's file is validated as a tar archive, and whether it is gzipped. */
export function archiveKind(file: string): 'tar' | 'tar.gz' | null {
  if (file.endsWith('.tar')) return 'tar';
  if (file.endsWith('.tar.gz') || file.endsWith('.tgz')) return 'tar.gz';
  return null;
}
