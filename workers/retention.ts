/**
 * The retention worker: BullMQ wiring around src/retention. Each job names
 * one app (after a commit) or every configured app (the daily sweep); each
 * app is handled under its lock, so a commit of the same app never runs
 * meanwhile, and one failing app does not stop the others.
 */
import { Queue, Worker, type Job } from 'bullmq';
import type { Config } from '../src/config/load.ts';
import { toError } from '../src/errors.ts';
import type { Logger } from '../src/log.ts';
import { withAppLock } from '../src/queue/app-lock.ts';
import { createWorkerConnection, redactRedisUrl } from '../src/queue/connection.ts';
import { retentionTargetFor } from '../src/queue/enqueue.ts';
import { RETENTION_QUEUE, SNAPSHOT_QUEUE, type RetentionJobData, type RetentionResult, type RetentionTarget } from '../src/queue/jobs.ts';
import { runningSnapshotJobs } from '../src/queue/running-jobs.ts';
import { applyRetention } from '../src/retention/apply.ts';
import { requireRepository } from '../src/repository/marker.ts';

export interface RunningRetentionWorker {
  worker: Worker<RetentionJobData, RetentionResult>;
  close(): Promise<void>;
}

/**
 * Given the worker's config and a target from a job (made when the job was
 * enqueued), return the target to apply: the larger `keep` and age of the two,
 * so a raised `keep` protects at once; null when the app is no longer
 * configured (its snapshots are never pruned).
 */
export function effectiveTarget(config: Config, requested: RetentionTarget): RetentionTarget | null {
  const app = config.apps.find((candidate) => candidate.name === requested.app);
  if (!app) return null;
  const current = retentionTargetFor(config, app);
  return { app: app.name, keep: Math.max(requested.keep, current.keep), incomingMaxAgeMs: Math.max(requested.incomingMaxAgeMs, current.incomingMaxAgeMs) };
}

/** Given the config and a logger, start a retention worker and return it. */
export async function startRetentionWorker(config: Config, logger: Logger): Promise<RunningRetentionWorker> {
  await requireRepository(config.repository);
  const connection = createWorkerConnection(config.redis.url);
  connection.on('error', (error) => logger.warn({ err: error.message, redis: redactRedisUrl(config.redis.url) }, 'redis connection error'));
  const snapshotQueue = new Queue(SNAPSHOT_QUEUE, { connection, prefix: config.redis.prefix });
  snapshotQueue.on('error', (error) => logger.warn({ err: error.message }, 'snapshot queue error'));

  const processor = async (job: Job<RetentionJobData, RetentionResult>): Promise<RetentionResult> => {
    const running = await runningSnapshotJobs(snapshotQueue);
    const result: RetentionResult = { apps: [] };
    const failures: string[] = [];
    for (const requested of job.data.targets ?? []) {
      const log = logger.child({ app: requested.app, jobId: job.id, reason: job.data.reason });
      const target = effectiveTarget(config, requested);
      if (target === null) {
        log.warn('app is not in this worker\'s config: its snapshots are kept (BYSU never prunes an app that left the config)');
        continue;
      }
      try {
        const outcome = await applyRetention(config.repository, target, running, {
          logger: log,
          lock: (fn) => withAppLock(connection, config.redis.prefix, target.app, fn),
        });
        result.apps.push({ app: target.app, deleted: outcome.deleted, kept: outcome.plan.keep, removedIncoming: outcome.removedIncoming });
        log.info({ kept: outcome.plan.keep.length, deleted: outcome.deleted.length, removedIncoming: outcome.removedIncoming.length }, 'retention applied');
      } catch (thrown) {
        const error = toError(thrown);
        failures.push(`${target.app}: ${error.message}`);
        result.apps.push({ app: target.app, deleted: [], kept: [], removedIncoming: [], error: error.message });
        log.error({ err: error.message }, 'retention failed');
      }
    }
    if (failures.length > 0) throw new Error(`retention failed for ${failures.join('; ')}`);
    return result;
  };

  const worker = new Worker<RetentionJobData, RetentionResult>(RETENTION_QUEUE, processor, {
    connection,
    prefix: config.redis.prefix,
    concurrency: 1,
    autorun: true,
  });
  worker.on('error', (error) => logger.error({ err: error.message }, 'retention worker error'));
  await worker.waitUntilReady();
  logger.info({ repository: config.repository }, 'retention worker started');
  return {
    worker,
    async close() {
      logger.info('retention worker stopping');
      await Promise.race([worker.close(), new Promise((resolve) => setTimeout(resolve, config.shutdownGraceMs).unref())]);
      await snapshotQueue.close();
      await connection.quit().catch(() => connection.disconnect());
      logger.info('retention worker stopped');
    },
  };
}
