/**
 * The scheduler: reconciles BullMQ job schedulers with the config (one per
 * app on the snapshot queue, the daily sweep on the retention queue) at start
 * and on reload, writes a heartbeat so that `bysu status` can tell when no
 * scheduler runs, and looks for apps that went stale to alert once. Several
 * replicas may run: upserting a job scheduler is idempotent, and BullMQ makes
 * one job per tick of a scheduler however many replicas upsert it.
 */
import os from 'node:os';
import { Queue } from 'bullmq';
import { loadConfig, type Config } from '../src/config/load.ts';
import { toError } from '../src/errors.ts';
import type { Logger } from '../src/log.ts';
import { createWorkerConnection, redactRedisUrl } from '../src/queue/connection.ts';
import { buildSnapshotJob, KEEP_COMPLETED, KEEP_FAILED, retentionTargetFor, snapshotJobOptions } from '../src/queue/enqueue.ts';
import {
  redisKeys,
  RETENTION_QUEUE,
  RETENTION_SWEEP_JOB,
  RETENTION_SWEEP_SCHEDULER,
  SNAPSHOT_JOB,
  SNAPSHOT_QUEUE,
  SNAPSHOT_SCHEDULER_PREFIX,
  snapshotSchedulerId,
  type RetentionJobData,
  type SnapshotJobData,
} from '../src/queue/jobs.ts';
import { Notifier } from '../src/notify/notifier.ts';
import { collectStatus } from '../src/status/app-status.ts';

/** How often the heartbeat is written, and how long it lives. */
export const HEARTBEAT_INTERVAL_MS = 15_000;
export const HEARTBEAT_TTL_MS = 60_000;

export interface ReconcileResult {
  upserted: string[];
  removed: string[];
}

export interface RunningScheduler {
  /** Reload the config file and reconcile; an invalid file is logged and the schedules stay as they are. */
  reload(): Promise<void>;
  /** Check every app for staleness now (also runs every notify.staleCheckInterval). */
  checkStale(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Given the snapshot and retention queues and the config, make the job
 * schedulers match it: upsert one per app (schedule, time zone and the
 * resolved job), remove those of apps no longer configured, upsert the sweep.
 */
export async function reconcileSchedulers(snapshotQueue: Queue<SnapshotJobData>, retentionQueue: Queue<RetentionJobData>, config: Config): Promise<ReconcileResult> {
  const upserted: string[] = [];
  for (const app of config.apps) {
    const id = snapshotSchedulerId(app.name);
    await snapshotQueue.upsertJobScheduler(id, { pattern: app.schedule, tz: app.timezone }, {
      name: SNAPSHOT_JOB,
      data: buildSnapshotJob(config, app, 'schedule'),
      opts: snapshotJobOptions(app),
    });
    upserted.push(id);
  }
  const removed: string[] = [];
  for (const scheduler of await snapshotQueue.getJobSchedulers(0, -1)) {
    const id = scheduler.id ?? scheduler.key;
    if (id.startsWith(SNAPSHOT_SCHEDULER_PREFIX) && !upserted.includes(id)) {
      await snapshotQueue.removeJobScheduler(id);
      removed.push(id);
    }
  }
  await retentionQueue.upsertJobScheduler(RETENTION_SWEEP_SCHEDULER, { pattern: config.retention.sweepSchedule, tz: config.defaults.timezone }, {
    name: RETENTION_SWEEP_JOB,
    data: { targets: config.apps.map((app) => retentionTargetFor(config, app)), reason: 'sweep' },
    opts: { attempts: 3, backoff: { type: 'exponential', delay: 60_000 }, removeOnComplete: KEEP_COMPLETED, removeOnFail: KEEP_FAILED },
  });
  return { upserted, removed };
}

/** Given the config file, its loaded config and a logger, start the scheduler. */
export async function startScheduler(configFile: string, initial: Config, logger: Logger): Promise<RunningScheduler> {
  let config = initial;
  const connection = createWorkerConnection(config.redis.url);
  connection.on('error', (error) => logger.warn({ err: error.message, redis: redactRedisUrl(config.redis.url) }, 'redis connection error'));
  const snapshotQueue = new Queue<SnapshotJobData>(SNAPSHOT_QUEUE, { connection, prefix: config.redis.prefix });
  const retentionQueue = new Queue<RetentionJobData>(RETENTION_QUEUE, { connection, prefix: config.redis.prefix });
  for (const queue of [snapshotQueue, retentionQueue]) queue.on('error', (error) => logger.warn({ err: error.message }, 'queue error'));
  const notifier = new Notifier(connection, config.redis.prefix, config.notify, logger);

  const reconcile = async () => {
    const result = await reconcileSchedulers(snapshotQueue, retentionQueue, config);
    logger.info({ apps: result.upserted.length, removed: result.removed }, 'job schedulers reconciled');
  };

  const beat = async () => {
    const heartbeat = JSON.stringify({ at: new Date().toISOString(), host: os.hostname(), pid: process.pid });
    await connection.set(redisKeys.schedulerHeartbeat(config.redis.prefix), heartbeat, 'PX', HEARTBEAT_TTL_MS);
  };

  const checkStale = async () => {
    const report = await collectStatus(config, connection, snapshotQueue);
    for (const app of report.apps) {
      if (app.state !== 'stale') continue;
      const sent = await notifier.report({
        event: 'stale',
        app: app.app,
        ...(app.node ? { node: app.node } : {}),
        at: report.at,
        reason: app.newest ? `newest snapshot ${app.newest.id} is older than ${app.staleAfterMs} ms` : 'no snapshot',
        lastSnapshot: app.newest ? { id: app.newest.id, finishedAt: app.newest.finishedAt } : null,
      });
      if (sent) logger.warn({ app: app.app, ageMs: app.ageMs }, 'app is stale: alert sent');
    }
  };

  const guard = (what: string, fn: () => Promise<void>) => () => {
    fn().catch((error: unknown) => logger.error({ err: toError(error).message }, `${what} failed`));
  };

  await reconcile();
  await beat();
  const heartbeatTimer = setInterval(guard('heartbeat', beat), HEARTBEAT_INTERVAL_MS);
  const staleTimer = setInterval(guard('stale check', checkStale), config.notify.staleCheckIntervalMs);
  logger.info({ apps: config.apps.length }, 'scheduler started');

  return {
    async reload() {
      try {
        const next = loadConfig(configFile);
        if (next.redis.url !== config.redis.url || next.redis.prefix !== config.redis.prefix) {
          logger.warn('redis.url and redis.prefix changes need a restart; keeping the old ones');
          config = { ...next, redis: config.redis };
        } else {
          config = next;
        }
      } catch (error) {
        logger.error({ err: toError(error).message }, 'config reload failed; keeping the current schedules');
        return;
      }
      await reconcile();
    },
    checkStale,
    async close() {
      clearInterval(heartbeatTimer);
      clearInterval(staleTimer);
      await notifier.flush();
      await snapshotQueue.close();
      await retentionQueue.close();
      await connection.quit().catch(() => connection.disconnect());
      logger.info('scheduler stopped');
    },
  };
}
