/**
 * Retention of one app: read its state, plan, and (unless dry-run) delete
 * what the plan says, each deletion re-checked on disk. The caller holds the
 * app's lock, so no commit of the same app runs meanwhile.
 */
import type { Logger } from '../log.ts';
import type { RetentionTarget } from '../queue/jobs.ts';
import { readAppState } from '../repository/read.ts';
import { removeCommitMarker, removeIncoming, removeSnapshot } from '../repository/remove.ts';
import { planRetention, type RetentionPlan } from './plan.ts';

export interface RetentionOutcome {
  app: string;
  plan: RetentionPlan;
  /** Snapshots actually deleted (all of plan.delete unless one failed). */
  deleted: string[];
  removedIncoming: string[];
}

/**
 * Given the repository, an app's retention target and the job names of
 * running snapshot jobs, apply retention (or only plan it, with dryRun).
 * Throws the first StorageError after trying every deletion.
 */
export async function applyRetention(
  repository: string,
  target: RetentionTarget,
  runningJobs: ReadonlySet<string>,
  options: { dryRun?: boolean; logger?: Logger; now?: number } = {},
): Promise<RetentionOutcome> {
  const state = await readAppState(repository, target.app);
  const plan = planRetention(state, { keep: target.keep, incomingMaxAgeMs: target.incomingMaxAgeMs, now: options.now ?? Date.now(), runningJobs });
  const outcome: RetentionOutcome = { app: target.app, plan, deleted: [], removedIncoming: [] };
  if (options.dryRun) return outcome;
  let firstError: unknown = null;
  for (const id of plan.delete) {
    try {
      await removeSnapshot(repository, target.app, id);
      outcome.deleted.push(id);
      options.logger?.info({ app: target.app, id }, 'snapshot deleted by retention');
    } catch (error) {
      firstError ??= error;
      options.logger?.error({ app: target.app, id, err: (error as Error).message }, 'cannot delete snapshot');
    }
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
