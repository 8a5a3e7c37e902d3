/**
 * `bysu up`: the scheduler, the three workers (snapshot, retention, drill)
 * and the dashboard in one process, the default for a single small server.
 * The dashboard binds first (a port in use fails before any job is taken); a
 * component that fails to start stops those already started. SIGHUP reloads
 * the config for all of them (each job and request then runs with the new
 * one; see LiveConfig); SIGTERM/SIGINT stop everything at once, so the
 * snapshot worker stops taking jobs immediately and running snapshots get
 * their grace period. All components report Redis errors to one RedisHealth:
 * an outage is one line for the whole process, not one per component.
 */
import { startDashboard } from '../dashboard/server.ts';
import { createLogger } from '../log.ts';
import { RedisHealth } from '../queue/redis-health.ts';
import { startScheduler } from '../scheduler/scheduler.ts';
import { startDrillWorker } from '../workers/drill.ts';
import { startRetentionWorker } from '../workers/retention.ts';
import { startSnapshotWorker } from '../workers/snapshot.ts';
import { EXIT_OK, loadLiveConfig, type GlobalOptions } from './context.ts';
import { runUntilSignal } from './run-until-signal.ts';
import { checkUp } from './start-checks.ts';
import { warnAboutMissingFlags } from './runtime-flags.ts';

export async function up(globals: GlobalOptions): Promise<number> {
  // Everything that can be refused is refused before anything starts.
  const live = await loadLiveConfig(globals, checkUp);
  const config = live.current();
  const logger = createLogger(config.log.level, 'bysu');
  warnAboutMissingFlags(logger);
  const redisHealth = new RedisHealth(logger, config.redis.url);
  const started: { close(): Promise<void> }[] = [];
  const closeAll = async () => {
    await Promise.allSettled(started.map((component) => component.close()));
  };
  try {
    const dashboard = await startDashboard(live, logger.child({ component: 'dashboard' }), { redisHealth });
    started.push(dashboard);
    started.push(await startSnapshotWorker(live, logger.child({ component: 'worker-snapshot' }), { redisHealth }));
    started.push(await startRetentionWorker(live, logger.child({ component: 'worker-retention' }), { redisHealth }));
    // Always: a drill added later by SIGHUP must find a worker.
    started.push(await startDrillWorker(live, logger.child({ component: 'worker-drill' }), { redisHealth }));
    started.push(await startScheduler(live, logger.child({ component: 'scheduler' }), { redisHealth }));
    logger.info({ dashboard: dashboard.url }, 'bysu up: scheduler, workers and dashboard running');
  } catch (error) {
    await closeAll();
    throw error;
  }
  await runUntilSignal(logger, closeAll, live);
  return EXIT_OK;
}
