/**
 * `bysu up`: the scheduler, the five workers (snapshot, retention, drill,
 * verify, mirror) and the dashboard, the default for a single server. The snapshot worker
 * runs in `snapshotWorkerCount` processes of its own (one per core by
 * default; worker-processes.ts), or in this process when that is 1; the rest
 * runs here. The dashboard binds first (a port in use fails before any job is
 * taken); a component that fails to start stops those already started.
 * SIGHUP reloads the config for all of them (the worker processes each
 * reload the file themselves; each job and request then runs with the new
 * one; see LiveConfig); SIGTERM/SIGINT stop everything at once, so the
 * snapshot workers stop taking jobs immediately and running snapshots get
 * their grace period. The components of this process report Redis errors to
 * one RedisHealth: an outage is one line for the process, not one per
 * component (and one per worker process).
 */
import { startDashboard } from '../dashboard/server.ts';
import { createLogger } from '../log.ts';
import { RedisHealth } from '../queue/redis-health.ts';
import { startScheduler } from '../scheduler/scheduler.ts';
import { startDrillWorker } from '../workers/drill.ts';
import { startRetentionWorker } from '../workers/retention.ts';
import { startSnapshotWorker } from '../workers/snapshot.ts';
import { startVerifyWorker } from '../workers/verify.ts';
import { startMirrorWorker } from '../workers/mirror.ts';
import { EXIT_OK, loadLiveConfig, type GlobalOptions } from './context.ts';
import { runUntilSignal } from './run-until-signal.ts';
import { checkUp } from './start-checks.ts';
import { warnAboutMissingFlags } from './runtime-flags.ts';
import { childEnvironment, snapshotWorkerCount, WorkerProcesses } from './worker-processes.ts';

export async function up(globals: GlobalOptions): Promise<number> {
  // Everything that can be refused is refused before anything starts.
  const live = await loadLiveConfig(globals, checkUp);
  const config = live.current();
  const logger = createLogger(config.log.level, 'bysu');
  const workerCount = snapshotWorkerCount(config);
  const redisHealth = new RedisHealth(logger, config.redis.url);
  const started: { close(): Promise<void> }[] = [];
  const closeAll = async () => {
    await Promise.allSettled(started.map((component) => component.close()));
  };
  let workerProcesses: WorkerProcesses | null = null;
  // A stop asked for while the components start (systemd stopping it, a Ctrl-C) stops what has started and
  // exits: Node's default action killed this process with the dashboard and worker processes already running,
  // and waiting for the start to finish could wait for ever (a component waits for Redis to answer).
  let stoppingWhileStarting = false;
  const stopWhileStarting = (signal: NodeJS.Signals) => {
    if (stoppingWhileStarting) process.exit(1); // a second signal: at once, as when running
    stoppingWhileStarting = true;
    const since = Date.now();
    logger.info({ signal }, 'stopping (asked while starting)');
    void closeAll().finally(() => {
      logger.info({ signal, stoppedInMs: Date.now() - since }, 'stopped');
      process.exit(EXIT_OK);
    });
  };
  process.on('SIGTERM', stopWhileStarting);
  process.on('SIGINT', stopWhileStarting);
  try {
    const dashboard = await startDashboard(live, logger.child({ component: 'dashboard' }), { redisHealth });
    started.push(dashboard);
    let workersRunning: Promise<void> = Promise.resolve();
    if (workerCount === 1) {
      warnAboutMissingFlags(logger);
      started.push(await startSnapshotWorker(live, logger.child({ component: 'worker-snapshot' }), { redisHealth }));
    } else {
      // Started first and awaited last: they load while the components below start.
      workerProcesses = new WorkerProcesses({ count: workerCount, configFile: live.file, logger: logger.child({ component: 'worker-processes' }), graceMs: config.shutdownGraceMs, env: childEnvironment(config) });
      started.push(workerProcesses);
      workersRunning = workerProcesses.start();
      workersRunning.catch(() => undefined); // awaited below
    }
    started.push(await startRetentionWorker(live, logger.child({ component: 'worker-retention' }), { redisHealth }));
    // Always: a drill added later by SIGHUP must find a worker.
    started.push(await startDrillWorker(live, logger.child({ component: 'worker-drill' }), { redisHealth }));
    // Here, not in a process of its own: it mostly waits for its bound (and for verify.schedule).
    started.push(await startVerifyWorker(live, logger.child({ component: 'worker-verify' }), { redisHealth }));
    // Always, like the drill worker: a mirror added later by SIGHUP must find a worker. It mostly waits on the network.
    started.push(await startMirrorWorker(live, logger.child({ component: 'worker-mirror' }), { redisHealth }));
    started.push(await startScheduler(live, logger.child({ component: 'scheduler' }), { redisHealth }));
    await workersRunning;
    logger.info({ dashboard: dashboard.url, snapshotWorkerProcesses: workerCount === 1 ? 0 : workerCount }, 'bysu up: scheduler, workers and dashboard running');
  } catch (error) {
    if (stoppingWhileStarting) return new Promise<never>(() => undefined); // the stop above ends the process
    await closeAll();
    throw error;
  } finally {
    if (!stoppingWhileStarting) {
      process.off('SIGTERM', stopWhileStarting);
      process.off('SIGINT', stopWhileStarting);
    }
  }
  // The stop above ends the process once what started has stopped.
  if (stoppingWhileStarting) return new Promise<never>(() => undefined);
  await runUntilSignal(logger, closeAll, live, { passOn: (signal) => workerProcesses?.signal(signal) });
  return EXIT_OK;
}
