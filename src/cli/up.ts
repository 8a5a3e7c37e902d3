/**
 * `bysu up`: the scheduler, both workers and the dashboard in one process,
 * the default for a single small server. SIGHUP reloads the schedules;
 * SIGTERM/SIGINT stop everything gracefully (the dashboard first, the
 * snapshot worker last, so running snapshots get the grace period).
 */
import { checkSshFiles, resolveConfigPath } from '../config/load.ts';
import { checkDashboardExposure } from '../dashboard/auth.ts';
import { startDashboard } from '../dashboard/server.ts';
import { createLogger } from '../log.ts';
import { startScheduler } from '../../scheduler/index.ts';
import { startRetentionWorker } from '../../workers/retention.ts';
import { startSnapshotWorker } from '../../workers/snapshot.ts';
import { EXIT_OK, loadCliConfig, type GlobalOptions } from './context.ts';
import { runUntilSignal } from './run-until-signal.ts';

export async function up(globals: GlobalOptions): Promise<number> {
  const config = loadCliConfig(globals);
  // Everything that can be refused is refused before anything starts.
  checkSshFiles(config);
  checkDashboardExposure(config.dashboard);
  const logger = createLogger(config.log.level, 'bysu');
  const snapshotWorker = await startSnapshotWorker(config, logger.child({ component: 'worker-snapshot' }));
  const retentionWorker = await startRetentionWorker(config, logger.child({ component: 'worker-retention' }));
  const scheduler = await startScheduler(resolveConfigPath(globals.config), config, logger.child({ component: 'scheduler' }));
  const dashboard = await startDashboard(config, logger.child({ component: 'dashboard' }));
  logger.info({ dashboard: dashboard.url }, 'bysu up: scheduler, workers and dashboard running');
  await runUntilSignal(
    logger,
    async () => {
      await dashboard.close();
      await scheduler.close();
      await retentionWorker.close();
      await snapshotWorker.close();
    },
    () => scheduler.reload(),
  );
  return EXIT_OK;
}
