/**
 * The retention plan: a pure function from what is on disk to what may be
 * deleted. It keeps the newest `keep` complete snapshots and the target of
 * `latest`, deletes only complete snapshots beyond those (failed attempts
 * never count, so a run of failed nights deletes nothing), and removes only
 * BYSU's own leftovers in `.incoming` once they are old and not owned by a
 * running job. Anything it does not recognise, it leaves alone.
 */
import { compareSnapshotIds, isSnapshotId } from '../repository/layout.ts';
import type { AppState } from '../repository/read.ts';

export type { AppState };

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

  return { keep: keep.sort(compareSnapshotIds).reverse(), delete: deleted, deleteIncoming, deleteMarkers };
}
