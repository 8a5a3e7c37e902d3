/**
 * Retention of one app: read its state, plan, and (unless dry-run) delete
 * what the plan says, each deletion re-checked on disk, under the app's lock
 * so that no commit of the same app (and no other retention) runs meanwhile.
 */
import type { Logger } from '../log.ts';
import type { RetentionTarget } from '../queue/jobs.ts';
import { requireRepository } from '../repository/marker.ts';
import { readAppState } from '../repository/read.ts';
import { refreshAppSummary } from '../repository/summary.ts';
import { hideSnapshot, removeCommitMarker, removeDrillResult, removeIncoming } from '../repository/remove.ts';
import { planRetention, type RetentionPlan } from './plan.ts';

export interface RetentionOutcome {
  app: string;
  plan: RetentionPlan;
  /** Snapshots actually deleted (all of plan.delete unless one failed). */
  deleted: string[];
  removedIncoming: string[];
  /** Drill results actually deleted from `.drills` (all of plan.deleteDrillResults unless one failed). */
  deletedDrillResults: string[];
}

/**
 * Given the repository, an app's retention target and the job names of
 * running snapshot jobs, apply retention (or only plan it, with dryRun).
 * `lock` wraps the part that must not interleave with a commit of the same
 * app: reading, planning, renaming doomed snapshots out of sight and deleting
 * old drill results (one unlink each). The slow part, deleting the snapshots'
 * files, runs after it. Every deletion is tried; the first StorageError is
 * thrown at the end. Throw RepositoryUnavailableError before anything when
 * the root is missing or unmarked.
 */
export async function applyRetention(
  repository: string,
  target: RetentionTarget,
  runningJobs: ReadonlySet<string>,
  options: { dryRun?: boolean; logger?: Logger; now?: number; lock?: <T>(fn: () => Promise<T>) => Promise<T>; refreshSummary?: boolean; protect?: ReadonlySet<string> } = {},
): Promise<RetentionOutcome> {
  await requireRepository(repository);
  const lock = options.lock ?? (<T>(fn: () => Promise<T>) => fn());
  let firstError: unknown = null;
  const { plan, hidden, deletedDrillResults } = await lock(async () => {
    const state = await readAppState(repository, target.app);
    const planned = planRetention(state, { keep: target.keep, incomingMaxAgeMs: target.incomingMaxAgeMs, now: options.now ?? Date.now(), runningJobs, ...(options.protect ? { protect: options.protect } : {}) });
    const renamed: { id: string; entry: string }[] = [];
    const drillResults: string[] = [];
    if (!options.dryRun) {
      for (const id of planned.delete) {
        try {
          renamed.push({ id, entry: await hideSnapshot(repository, target.app, id) });
        } catch (error) {
          firstError ??= error;
          options.logger?.error({ app: target.app, id, err: (error as Error).message }, 'cannot delete snapshot');
        }
      }
      // Only names read under this lock go: a result a drill writes meanwhile is not among them.
      const removeDrillFile = async (name: string): Promise<boolean> => {
        try {
          await removeDrillResult(repository, target.app, name);
          return true;
        } catch (error) {
          firstError ??= error;
          options.logger?.error({ app: target.app, drillResult: name, err: (error as Error).message }, 'cannot delete drill result');
          return false;
        }
      };
      for (const name of planned.deleteDrillResults) if (await removeDrillFile(name)) drillResults.push(name);
      for (const name of planned.deleteDrillTemporaries) await removeDrillFile(name);
      // A cache: an outdated summary is rebuilt by its next reader, so this is logged, never a failed retention.
      // Only under the app's lock (see changeApp); the daily sweep rebuilds every app's, so that what no
      // writer announces (a manifest removed by hand inside a snapshot) is seen within a day.
      if (options.lock && (renamed.length > 0 || drillResults.length > 0 || options.refreshSummary)) {
        await refreshAppSummary(repository, target.app).catch((error: unknown) => options.logger?.warn({ app: target.app, err: (error as Error).message }, 'cannot update the app summary'));
      }
    }
    return { plan: planned, hidden: renamed, deletedDrillResults: drillResults };
  });
  const outcome: RetentionOutcome = { app: target.app, plan, deleted: [], removedIncoming: [], deletedDrillResults };
  if (deletedDrillResults.length > 0) options.logger?.info({ app: target.app, deleted: deletedDrillResults.length, kept: plan.keepDrillResults.length }, 'old drill results deleted by retention');
  if (options.dryRun) return outcome;
  for (const { id, entry } of hidden) {
    outcome.deleted.push(id);
    options.logger?.info({ app: target.app, id }, 'snapshot deleted by retention');
    // Out of sight already; if removing the files fails, the next run removes the `deleting.` entry.
    await removeIncoming(repository, target.app, entry).catch((error: unknown) => (firstError ??= error));
  }
  for (const name of plan.deleteIncoming) {
    try {
      await removeIncoming(repository, target.app, name);
      outcome.removedIncoming.push(name);
      options.logger?.info({ app: target.app, entry: name }, 'stale attempt removed from .incoming');
    } catch (error) {
      firstError ??= error;
    }
  }
  for (const name of plan.deleteMarkers) await removeCommitMarker(repository, target.app, name).catch((error: unknown) => (firstError ??= error));
  if (firstError !== null) throw firstError;
  return outcome;
}
