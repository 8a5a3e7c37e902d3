/**
 * The retention worker: BullMQ wiring around src/retention. Each job names
 * one app (after a commit) or every configured app (the daily sweep); each
 * app is handled under its lock, so a commit of the same app never runs
 * meanwhile, and one failing app does not stop the others.
 */
import { Worker, type Job } from 'bullmq';
import type { LiveConfig } from '../config/live.ts';
import type { Config } from '../config/load.ts';
import { toError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { withAppLock } from '../queue/app-lock.ts';
import { CLOSE_BOUND_MS, closeConnection, createWorkerConnection, settlesWithin } from '../queue/connection.ts';
import { RedisHealth } from '../queue/redis-health.ts';
import { retentionTargetFor } from '../queue/enqueue.ts';
import { openQueue } from '../queue/open-queue.ts';
import { RETENTION_QUEUE, SNAPSHOT_QUEUE, type RetentionJobData, type RetentionResult, type RetentionTarget } from '../queue/jobs.ts';
import { runningSnapshotJobs } from '../queue/running-jobs.ts';
import { applyRetention } from '../retention/apply.ts';
import { ActiveJobs, stopWorker } from './stop-worker.ts';
import { requireRepository } from '../repository/marker.ts';

export interface RunningRetentionWorker {
  worker: Worker<RetentionJobData, RetentionResult>;
  close(): Promise<void>;
}

/**
 * Given the worker's config, a target from a job (made when the job was
 * enqueued) and the fewest snapshots to keep now (LiveConfig.keepFloor),
 * return the target to apply: the larger `keep` and age of them, so a raised
 * `keep` protects at once; null when the app is no longer configured (its
 * snapshots are never pruned).
 */
export function effectiveTarget(config: Config, requested: RetentionTarget, keepFloor = 0): RetentionTarget | null {
  const app = config.apps.find((candidate) => candidate.name === requested.app);
  if (!app) return null;
  const current = retentionTargetFor(config, app);
  return { app: app.name, keep: Math.max(requested.keep, current.keep, keepFloor), incomingMaxAgeMs: Math.max(requested.incomingMaxAgeMs, current.incomingMaxAgeMs) };
}

/**
 * Given the live config and a logger, start a retention worker and return
 * it; each run prunes with the config as of its start (an app added by a
 * reload is pruned, a lowered `keep` applies). `redisHealth` is where Redis
 * errors are reported (`bysu up` shares one per process); by default the
 * worker has its own.
 */
export async function startRetentionWorker(live: LiveConfig, logger: Logger, options: { redisHealth?: RedisHealth } = {}): Promise<RunningRetentionWorker> {
  const started = live.current();
  await requireRepository(started.repository);
  const { prefix } = started.redis;
  const connection = createWorkerConnection(started.redis.url);
  const redisHealth = options.redisHealth ?? new RedisHealth(logger, started.redis.url);
  redisHealth.watch(connection, 'retention worker connection');
  const snapshotQueue = openQueue(SNAPSHOT_QUEUE, connection, prefix);
  redisHealth.watch(snapshotQueue, 'snapshot queue');

  const processor = async (job: Job<RetentionJobData, RetentionResult>): Promise<RetentionResult> => {
    const config = live.current();
    const running = await runningSnapshotJobs(snapshotQueue);
    const result: RetentionResult = { apps: [] };
    const failures: string[] = [];
    for (const requested of job.data.targets ?? []) {
      const log = logger.child({ app: requested.app, jobId: job.id, reason: job.data.reason });
      const floor = live.keepFloor(requested.app);
      if (floor === Infinity && config.apps.some((app) => app.name === requested.app)) {
        log.warn('the app came with a reload not yet verified (the file may have been cut short): its snapshots are pruned once the file is read again');
        continue;
      }
      const target = effectiveTarget(config, requested, floor);
      if (target === null) {
        log.warn('app is not in this worker\'s config: its snapshots are kept (BYSU never prunes an app that left the config)');
        continue;
      }
      try {
        const outcome = await applyRetention(config.repository, target, running, {
          logger: log,
          lock: (fn) => withAppLock(connection, prefix, target.app, fn),
          refreshSummary: job.data.reason === 'sweep',
        });
        result.apps.push({ app: target.app, deleted: outcome.deleted, kept: outcome.plan.keep, removedIncoming: outcome.removedIncoming, deletedDrillResults: outcome.deletedDrillResults.length });
        log.info({ kept: outcome.plan.keep.length, deleted: outcome.deleted.length, removedIncoming: outcome.removedIncoming.length, deletedDrillResults: outcome.deletedDrillResults.length }, 'retention applied');
      } catch (thrown) {
        const error = toError(thrown);
        failures.push(`${target.app}: ${error.message}`);
        result.apps.push({ app: target.app, deleted: [], kept: [], removedIncoming: [], deletedDrillResults: 0, error: error.message });
        log.error({ err: error.message }, 'retention failed');
      }
    }
    if (failures.length > 0) throw new Error(`retention failed for ${failures.join('; ')}`);
    return result;
  };

  const jobs = new ActiveJobs();
  const worker = new Worker<RetentionJobData, RetentionResult>(RETENTION_QUEUE, jobs.track(processor), {
    connection,
    prefix,
    concurrency: 1,
    autorun: true,
  });
  redisHealth.watch(worker, 'retention worker');
  await worker.waitUntilReady();
  logger.info({ repository: started.repository }, 'retention worker started');
  return {
    worker,
    async close() {
      const stopping = Date.now();
      const config = live.current();
      logger.info({ graceMs: config.shutdownGraceMs, running: jobs.ids() }, 'retention worker stopping');
      // A retention run has no abort: as before, it is given the grace period and then left to stall recovery.
      const waitedFor = await stopWorker({ worker, jobs, logger, kind: 'retention', graceMs: config.shutdownGraceMs, redisReady: () => connection.status === 'ready' });
      await settlesWithin(snapshotQueue.close(), CLOSE_BOUND_MS);
      const redis = await closeConnection(connection);
      logger.info({ stoppedInMs: Date.now() - stopping, waitedFor, redis }, 'retention worker stopped');
    },
  };
}
