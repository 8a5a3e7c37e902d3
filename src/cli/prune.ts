/** `bysu prune <app>...|--all [--dry-run]`: apply retention now, or show what it would delete. */
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

export async function prune(globals: GlobalOptions, names: string[], options: { all?: boolean; dryRun?: boolean }): Promise<number> {
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
        console.log(`${app.name}: keep ${outcome.plan.keep.length} (${outcome.plan.keep.join(', ') || 'none'}), ${verb} ${outcome.plan.delete.length}${outcome.plan.delete.length ? ` (${outcome.plan.delete.join(', ')})` : ''}` +
          (outcome.plan.deleteIncoming.length ? `, ${options.dryRun ? 'would remove' : 'removed'} ${outcome.plan.deleteIncoming.length} stale attempt(s) from .incoming` : '') +
          (drills.length ? `; drill results: keep ${outcome.plan.keepDrillResults.length}, ${verb} ${drills.length}` : ''));
        // A dry run names each drill result it would delete, one per line, as `<app>/.drills/<file>`.
        if (options.dryRun) for (const name of drills) console.log(`  ${app.name}/${DRILLS_DIR}/${name}`);
      } catch (error) {
        failures += 1;
        console.log(`${app.name}: FAILED: ${toError(error).message}`);
      }
    }
  } finally {
    await queue.close();
    connection.disconnect();
  }
  return failures === 0 ? EXIT_OK : EXIT_FAILED;
}
