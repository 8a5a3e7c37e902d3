/**
 * The snapshot worker: the snapshot action on the node-job skeleton
 * (node-job-worker.ts: slot, abort, hand-back, failures, close). Its own part:
 * the commit is fenced with the job lock and taken under the app's lock; after
 * it, retention is enqueued, the app's alert state recorded and its ping sent;
 * a final failure is recorded for status and alerted once.
 */
import type { LiveConfig } from '../config/live.ts';
import type { Config } from '../config/load.ts';
import { CommitConflictError, toError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { withAppLock } from '../queue/app-lock.ts';
import { CLOSE_BOUND_MS, settlesWithin } from '../queue/connection.ts';
import { enqueueRetention, retentionTargetFor } from '../queue/enqueue.ts';
import { redisKeys, RETENTION_QUEUE, SNAPSHOT_QUEUE, type SnapshotJobData, type SnapshotResult } from '../queue/jobs.ts';
import { openQueue } from '../queue/open-queue.ts';
import type { RedisHealth } from '../queue/redis-health.ts';
import { writeFailureRecord, type FailureRecord } from '../repository/records.ts';
import { changeApp } from '../repository/summary.ts';
import { checkSnapshotJobData, takeSnapshot } from '../snapshot/take-snapshot.ts';
import { startNodeJobWorker, type RunningNodeJobWorker } from './node-job-worker.ts';

export interface SnapshotWorkerOptions {
  /** BullMQ job lock. @defaultValue config.concurrency.lockDuration */
  lockDurationMs?: number;
  /** How often stalled jobs are looked for. @defaultValue config.concurrency.stalledInterval */
  stalledIntervalMs?: number;
  /** Node slot lease. @defaultValue NODE_SLOT_LEASE_MS */
  slotLeaseMs?: number;
  /** Where Redis errors are reported (`bysu up` shares one per process). @defaultValue a RedisHealth of this worker's own */
  redisHealth?: RedisHealth;
}

/**
 * Given the live config and a logger, start a snapshot worker and return it.
 * Each job runs with the config as of its start (repository, SSH settings,
 * alerts); a reload that changes concurrency.global applies it to the queue.
 * Throws ConfigError when the SSH identity cannot be read, RepositoryUnavailableError
 * when the repository is missing or has no marker (the worker refuses to start).
 */
export function startSnapshotWorker(live: LiveConfig, logger: Logger, options: SnapshotWorkerOptions = {}): Promise<RunningNodeJobWorker<typeof SNAPSHOT_QUEUE>> {
  return startNodeJobWorker({ queueName: SNAPSHOT_QUEUE, live, logger, check: checkSnapshotJobData, ...options }, async ({ connection, prefix, notifier, redisHealth, lockDurationMs }) => {
    const started = live.current();
    const queue = openQueue(SNAPSHOT_QUEUE, connection, prefix);
    redisHealth.watch(queue, 'snapshot queue');
    await queue.setGlobalConcurrency(started.concurrency.global);
    live.onReload((config, previous) => {
      if (config.concurrency.global === previous.concurrency.global) return;
      queue.setGlobalConcurrency(config.concurrency.global).then(
        () => logger.info({ global: config.concurrency.global }, 'concurrency.global applied'),
        (error: unknown) => logger.error({ err: toError(error).message }, 'cannot apply concurrency.global; it applies at the next start'),
      );
    });
    const retentionQueue = openQueue(RETENTION_QUEUE, connection, prefix);
    redisHealth.watch(retentionQueue, 'retention queue');

    /** Retention, alert state and ping after a commit; none of it may fail the committed snapshot. */
    const afterCommit = async (config: Config, data: SnapshotJobData, result: SnapshotResult, log: Logger): Promise<void> => {
      const target = retentionTargetFor(config, { name: data.app, keep: data.keep, timeoutMs: data.limits.timeoutMs });
      await enqueueRetention(retentionQueue, target).catch((error: unknown) => log.error({ err: toError(error).message }, 'cannot enqueue retention; the daily sweep will do it'));
      await notifier.report({ event: 'recovered', app: data.app, node: data.node.name, at: new Date().toISOString(), lastSnapshot: { id: result.id, finishedAt: result.finishedAt } })
        .catch((error: unknown) => log.error({ err: toError(error).message }, 'cannot record the app state'));
      notifier.ping(data.app, data.ping, true);
    };

    return {
      startedFields: { global: started.concurrency.global },
      async run(job, { config, connect, signal, log, token }) {
        const data = job.data;
        log.info({ trigger: data.trigger, parts: data.parts.length }, 'snapshot started');
        const result = await takeSnapshot(data, {
          jobId: String(job.id),
          attempt: job.attemptsMade + 1,
          repository: config.repository,
          ...connect,
          logger: log,
          signal,
          fence: async () => {
            if (token === undefined) return;
            const extended = await job.extendLock(token, lockDurationMs);
            if (!extended) throw new CommitConflictError(`lost the lock of job ${job.id}; another worker may be running it`);
          },
          onProgress: (progress) => {
            job.updateProgress(progress).catch(() => undefined);
          },
          // A dump may have taken hours: wait long for a retention run rather than throw it away.
          lockApp: (fn) => withAppLock(connection, prefix, data.app, fn, { waitMs: 10 * 60_000 }),
        });
        log.info({ id: result.id, bytes: result.bytes, warnings: result.warnings.length, alreadyCommitted: result.alreadyCommitted }, 'snapshot committed');
        await afterCommit(config, data, result, log);
        return result;
      },
      /** Record a final failure for status, alert once per change of state, ping <url>/fail. */
      async failedForGood(job, reason) {
        const data = job.data;
        const record: FailureRecord = { at: new Date().toISOString(), reason, jobId: String(job.id), attempts: job.attemptsMade };
        try {
          await connection.hset(redisKeys.lastFailure(prefix), data.app, JSON.stringify(record));
          await connection.hincrby(redisKeys.failuresTotal(prefix), data.app, 1);
          // Beside the snapshots too, so that status can say it without Redis (not when the repository itself is
          // the failure). After Redis: a worker killed in between must leave the failure where status looks first.
          const { repository } = live.current();
          await changeApp(repository, data.app, (fn) => withAppLock(connection, prefix, data.app, fn), () => writeFailureRecord(repository, data.app, record),
            (error) => logger.warn({ app: data.app, err: error.message }, 'cannot update the app summary'))
            .catch((error: unknown) => logger.warn({ app: data.app, err: toError(error).message }, 'cannot record the failure in the repository'));
          await notifier.report({ event: 'failed', app: data.app, node: data.node?.name, at: record.at, reason });
        } finally {
          notifier.ping(data.app, data.ping, false);
        }
      },
      async close() {
        await settlesWithin(Promise.all([retentionQueue.close(), queue.close()]), CLOSE_BOUND_MS);
      },
    };
  });
}
