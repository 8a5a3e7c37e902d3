/**
 * The retention plan: a pure function from what is on disk to what may be
 * deleted. It keeps the newest `keep` complete snapshots, the target of
 * `latest` and any the caller protects (a mirror's, see src/mirror/keep.ts),
 * deletes only complete snapshots beyond those (failed attempts never count,
 * so a run of failed nights deletes nothing), and removes only
 * BYSU's own leftovers in `.incoming` once they are old and not owned by a
 * running job. Anything it does not recognise, it leaves alone.
 *
 * Drill results in `.drills` are kept for the newest DRILL_RESULTS_KEPT
 * drills, the newest result of each snapshot that stays, the newest passed
 * result and the newest readable one; the rest go. The last two are what
 * status reads (the last drill and the last pass), so pruning never changes
 * what status says: a passing drill never turns overdue by retention.
 */
import { compareSnapshotIds, isSnapshotId } from '../repository/layout.ts';
import type { AppState, DrillResultEntry } from '../repository/read.ts';

export type { AppState, DrillResultEntry };

/** Drill results kept per app beyond those the plan keeps for a reason (a kept snapshot's, the newest pass). */
export const DRILL_RESULTS_KEPT = 20;
/** A drill result half-written this long ago was left by a crash (a write takes milliseconds). */
export const DRILL_TEMPORARY_MAX_AGE_MS = 3_600_000;

/** An attempt directory: `<job>.<attempt>.<8 hex>`; a snapshot being deleted: `deleting.<id>.<8 hex>`. */
const ATTEMPT_PATTERN = /^(.+)\.(\d+)\.[0-9a-f]{8}$/;
const DELETING_PATTERN = /^deleting\.(.+)\.[0-9a-f]{8}$/;
/** Commit markers outlive any retry of their job by far after this. */
export const COMMIT_MARKER_MAX_AGE_MS = 30 * 86_400_000;

export interface RetentionPolicy {
  keep: number;
  /** `.incoming` attempts older than this may be removed (the app's timeout plus a margin). */
  incomingMaxAgeMs: number;
  now: number;
  /** Job names (as in attempt directory names) of snapshot jobs running now. */
  runningJobs: ReadonlySet<string>;
  /** Complete snapshots that stay whatever their rank (a mirror's, by the days its copies arrived on or were taken on, src/mirror/keep.ts). */
  protect?: ReadonlySet<string>;
}

export interface RetentionPlan {
  /** Complete snapshots that stay, newest first. */
  keep: string[];
  /** Complete snapshots to delete, newest first. */
  delete: string[];
  /** `.incoming` entries to remove. */
  deleteIncoming: string[];
  /** `.commits` markers to remove. */
  deleteMarkers: string[];
  /** Drill results (file names in `.drills`) that stay, newest first. */
  keepDrillResults: string[];
  /** Drill results to delete, newest first. */
  deleteDrillResults: string[];
  /** Half-written drill results in `.drills` to remove. */
  deleteDrillTemporaries: string[];
}

/** Given the app's state on disk and the policy, return what to keep and what to delete. */
export function planRetention(state: AppState, policy: RetentionPolicy): RetentionPlan {
  if (!Number.isInteger(policy.keep) || policy.keep < 1) throw new Error(`keep must be at least 1, got ${policy.keep}`);
  const complete = state.snapshots
    .filter((snapshot) => snapshot.complete && isSnapshotId(snapshot.id))
    .map((snapshot) => snapshot.id)
    .sort(compareSnapshotIds)
    .reverse();
  const keep = complete.slice(0, policy.keep);
  if (state.latest !== null && complete.includes(state.latest) && !keep.includes(state.latest)) keep.push(state.latest);
  for (const id of complete) if (policy.protect?.has(id) && !keep.includes(id)) keep.push(id);
  const deleted = complete.filter((id) => !keep.includes(id));

  const deleteIncoming = state.incoming.filter(({ name, mtimeMs }) => {
    if (DELETING_PATTERN.test(name)) return true; // a deletion of ours that was interrupted
    const attempt = ATTEMPT_PATTERN.exec(name);
    if (!attempt) return false;
    return policy.now - mtimeMs > policy.incomingMaxAgeMs && !policy.runningJobs.has(attempt[1]!);
  }).map(({ name }) => name);

  const deleteMarkers = state.commitMarkers
    .filter(({ mtimeMs }) => policy.now - mtimeMs > COMMIT_MARKER_MAX_AGE_MS)
    .map(({ name }) => name);

  const drills = planDrillResults(state.drillResults, keep);
  const deleteDrillTemporaries = state.drillTemporaries
    .filter(({ mtimeMs }) => policy.now - mtimeMs > DRILL_TEMPORARY_MAX_AGE_MS)
    .map(({ name }) => name);

  return { keep: keep.sort(compareSnapshotIds).reverse(), delete: deleted, deleteIncoming, deleteMarkers, keepDrillResults: drills.keep, deleteDrillResults: drills.delete, deleteDrillTemporaries };
}

/**
 * Given an app's drill results and the snapshots that stay, return which
 * results stay and which go, each newest first (names sort by finish time).
 * Kept: the newest DRILL_RESULTS_KEPT, the newest of each kept snapshot, the
 * newest passed one and the newest readable one (both read by status).
 */
export function planDrillResults(results: readonly DrillResultEntry[], keptSnapshots: readonly string[]): { keep: string[]; delete: string[] } {
  const newestFirst = [...results].sort((a, b) => (a.name < b.name ? 1 : a.name > b.name ? -1 : 0));
  const kept = new Set(newestFirst.slice(0, DRILL_RESULTS_KEPT).map(({ name }) => name));
  const keepFirst = (matches: (entry: DrillResultEntry) => boolean) => {
    const found = newestFirst.find(matches);
    if (found) kept.add(found.name);
  };
  keepFirst((entry) => entry.result !== null);
  keepFirst((entry) => entry.result?.passed === true);
  for (const id of keptSnapshots) keepFirst((entry) => entry.result?.snapshotId === id);
  return {
    keep: newestFirst.filter(({ name }) => kept.has(name)).map(({ name }) => name),
    delete: newestFirst.filter(({ name }) => !kept.has(name)).map(({ name }) => name),
  };
}
