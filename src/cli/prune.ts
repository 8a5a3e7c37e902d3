/** `bysu prune <app>...|--all [--dry-run] [--json]`: apply retention now, or show what it would delete. */
import { findApp } from '../config/load.ts';
import { toError } from '../errors.ts';
import { withAppLock } from '../queue/app-lock.ts';
import { connectProducer } from '../queue/connection.ts';
import { retentionTargetFor } from '../queue/enqueue.ts';
import { SNAPSHOT_QUEUE } from '../queue/jobs.ts';
import { openQueue } from '../queue/open-queue.ts';
import { runningSnapshotJobs } from '../queue/running-jobs.ts';
import { DRILLS_DIR } from '../repository/layout.ts';
import { requireRepository } from '../repository/marker.ts';
import { applyRetention } from '../retention/apply.ts';
import { EXIT_FAILED, EXIT_OK, loadCliConfig, requireAppNames, type GlobalOptions } from './context.ts';

/** One app's outcome, as `prune --json` prints it. */
interface PruneOutcome {
  app: string;
  dryRun: boolean;
  /** Snapshot ids kept, and deleted (or that would be). */
  keep: string[];
  delete: string[];
  /** Stale attempt directories removed from .incoming (or that would be). */
  incoming: string[];
  /** Drill result files deleted (or that would be), in <app>/.drills/. */
  drillResults: string[];
  error: string | null;
}

export async function prune(globals: GlobalOptions, names: string[], options: { all?: boolean; dryRun?: boolean; json?: boolean }): Promise<number> {
  const say = (line: string) => {
    if (!options.json) console.log(line);
  };
  const outcomes: PruneOutcome[] = [];
  const config = loadCliConfig(globals);
  const apps = requireAppNames(config, names, options.all).map((name) => findApp(config, name));
  await requireRepository(config.repository);
  const connection = await connectProducer(config.redis.url);
  const queue = openQueue(SNAPSHOT_QUEUE, connection, config.redis.prefix);
  let failures = 0;
  try {
    const running = await runningSnapshotJobs(queue);
    for (const app of apps) {
      const target = retentionTargetFor(config, app);
      try {
        const outcome = await applyRetention(config.repository, target, running, {
          dryRun: options.dryRun === true,
          lock: (fn) => withAppLock(connection, config.redis.prefix, app.name, fn),
        });
        const verb = options.dryRun ? 'would delete' : 'deleted';
        const drills = options.dryRun ? outcome.plan.deleteDrillResults : outcome.deletedDrillResults;
        outcomes.push({ app: app.name, dryRun: options.dryRun === true, keep: outcome.plan.keep, delete: outcome.plan.delete, incoming: outcome.plan.deleteIncoming, drillResults: drills, error: null });
        say(`${app.name}: keep ${outcome.plan.keep.length} (${outcome.plan.keep.join(', ') || 'none'}), ${verb} ${outcome.plan.delete.length}${outcome.plan.delete.length ? ` (${outcome.plan.delete.join(', ')})` : ''}` +
          (outcome.plan.deleteIncoming.length ? `, ${options.dryRun ? 'would remove' : 'removed'} ${outcome.plan.deleteIncoming.length} stale attempt(s) from .incoming` : '') +
          (drills.length ? `; drill results: keep ${outcome.plan.keepDrillResults.length}, ${verb} ${drills.length}` : ''));
        // A dry run names each drill result it would delete, one per line, as `<app>/.drills/<file>`.
        if (options.dryRun) for (const name of drills) say(`  ${app.name}/${DRILLS_DIR}/${name}`);
      } catch (error) {
        failures += 1;
        outcomes.push({ app: app.name, dryRun: options.dryRun === true, keep: [], delete: [], incoming: [], drillResults: [], error: toError(error).message });
        say(`${app.name}: FAILED: ${toError(error).message}`);
      }
    }
  } finally {
    await queue.close();
    connection.disconnect();
  }
  if (options.json) console.log(JSON.stringify(outcomes, null, 2));
  return failures === 0 ? EXIT_OK : EXIT_FAILED;
}
