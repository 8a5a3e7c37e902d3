/**
 * The snapshot worker: BullMQ wiring around the snapshot action. It takes a
 * per-node slot (a busy node delays the job without using an attempt),
 * fences the commit with the job lock, maps errors that a retry cannot help to
 * UnrecoverableError, and on shutdown stops taking jobs, lets running ones
 * finish within the grace period, then hands the rest back to the queue
 * without using an attempt.
 */
import { Queue, Worker, type Job } from 'bullmq';
import type { LiveConfig } from '../config/live.ts';
import type { Config } from '../config/load.ts';
import { AbortedError, CommitConflictError, toError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { CLOSE_BOUND_MS, closeConnection, createWorkerConnection, settlesWithin } from '../queue/connection.ts';
import { withAppLock } from '../queue/app-lock.ts';
import { enqueueRetention, retentionTargetFor } from '../queue/enqueue.ts';
import { redisKeys, RETENTION_QUEUE, SNAPSHOT_QUEUE, type FailureRecord, type RetentionJobData, type SnapshotJobData, type SnapshotResult } from '../queue/jobs.ts';
import { Notifier } from '../notify/notifier.ts';
import { NODE_SLOT_LEASE_MS, NodeSlots } from '../queue/node-slots.ts';
import { RedisHealth } from '../queue/redis-health.ts';
import { requireRepository } from '../repository/marker.ts';
import { checkSnapshotJobData, takeSnapshot } from '../snapshot/take-snapshot.ts';
import { connectSettings, FINAL_FAILURE_RECORD_BOUND_MS, finalFailureReason, handBack, IdentityCache, jobFailure, MAX_STALLED_COUNT, MAX_STARTED_ATTEMPTS, takeNodeSlot, WorkerShutdownError } from './node-job.ts';
import { ActiveJobs, stopWorker } from './stop-worker.ts';

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

export interface RunningWorker {
  worker: Worker<SnapshotJobData, SnapshotResult>;
  /** Stop taking jobs, let running ones finish within the grace period, hand back the rest, close connections. */
  close(): Promise<void>;
}

/** Someone cancelled the job (BullMQ's cancelJob): it is not retried. */
class CancelledError extends AbortedError {}

/**
 * Given the live config and a logger, start a snapshot worker and return it.
 * Each job runs with the config as of its start (repository, SSH settings,
 * alerts); a reload that changes concurrency.global applies it to the queue.
 * Throws ConfigError when the SSH identity cannot be read, RepositoryUnavailableError
 * when the repository is missing or has no marker (the worker refuses to start).
 */
export async function startSnapshotWorker(live: LiveConfig, logger: Logger, options: SnapshotWorkerOptions = {}): Promise<RunningWorker> {
  const started = live.current();
  const identities = new IdentityCache(live);
  await requireRepository(started.repository);
  const { prefix } = started.redis;
  const connection = createWorkerConnection(started.redis.url);
  const redisHealth = options.redisHealth ?? new RedisHealth(logger, started.redis.url);
  redisHealth.watch(connection, 'snapshot worker connection');
  const slots = new NodeSlots(connection, prefix, options.slotLeaseMs ?? NODE_SLOT_LEASE_MS);
  const lockDuration = options.lockDurationMs ?? started.concurrency.lockDurationMs;
  const shutdown = new AbortController();

  const queue = new Queue(SNAPSHOT_QUEUE, { connection, prefix });
  redisHealth.watch(queue, 'snapshot queue');
  await queue.setGlobalConcurrency(started.concurrency.global);
  live.onReload((config, previous) => {
    if (config.concurrency.global === previous.concurrency.global) return;
    queue.setGlobalConcurrency(config.concurrency.global).then(
      () => logger.info({ global: config.concurrency.global }, 'concurrency.global applied'),
      (error: unknown) => logger.error({ err: toError(error).message }, 'cannot apply concurrency.global; it applies at the next start'),
    );
  });
  const retentionQueue = new Queue<RetentionJobData>(RETENTION_QUEUE, { connection, prefix });
  redisHealth.watch(retentionQueue, 'retention queue');
  const notifier = new Notifier(connection, prefix, () => live.current().notify, logger);

  const processor = async (job: Job<SnapshotJobData, SnapshotResult>, token?: string, cancel?: AbortSignal): Promise<SnapshotResult> => {
    const data = job.data;
    const config = live.current();
    const attempt = job.attemptsMade + 1;
    const log = logger.child({ app: data?.app, node: data?.node?.name, jobId: job.id, attempt });
    const slot = await takeNodeSlot(job, token, {
      check: checkSnapshotJobData,
      nodeOf: (payload: SnapshotJobData) => ({ name: payload.node.name, perNode: payload.limits.perNode }),
      shutdown: shutdown.signal,
      slots,
      busyDelayMs: config.concurrency.busyNodeDelayMs,
      leaseMs: options.slotLeaseMs ?? NODE_SLOT_LEASE_MS,
      log,
    });
    const controller = new AbortController();
    const onShutdown = () => controller.abort(new WorkerShutdownError('worker is shutting down'));
    const onCancel = () => controller.abort(new CancelledError(`job cancelled${cancel?.reason ? `: ${String(cancel.reason)}` : ''}`));
    const onLost = () => controller.abort(slot.lost.reason);
    shutdown.signal.addEventListener('abort', onShutdown, { once: true });
    cancel?.addEventListener('abort', onCancel, { once: true });
    slot.lost.addEventListener('abort', onLost, { once: true });

    log.info({ trigger: data.trigger, parts: data.parts.length }, 'snapshot started');
    try {
      const result = await takeSnapshot(data, {
        jobId: String(job.id),
        attempt,
        repository: config.repository,
        ...connectSettings(config, identities.get()),
        logger: log,
        signal: controller.signal,
        fence: async () => {
          if (token === undefined) return;
          const extended = await job.extendLock(token, lockDuration);
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
    } catch (thrown) {
      const error = toError(thrown);
      if (error instanceof WorkerShutdownError) {
        log.warn('snapshot interrupted by shutdown; handing the job back without using an attempt');
        await handBack(job, token);
      }
      const failure = jobFailure(error, error instanceof CancelledError);
      log.error({ err: failure.message, retryable: failure.name !== 'UnrecoverableError' }, 'snapshot failed');
      throw failure;
    } finally {
      shutdown.signal.removeEventListener('abort', onShutdown);
      cancel?.removeEventListener('abort', onCancel);
      slot.lost.removeEventListener('abort', onLost);
      await slot.release();
    }
  };

  /** Retention, alert state and ping after a commit; none of it may fail the committed snapshot. */
  const afterCommit = async (config: Config, data: SnapshotJobData, result: SnapshotResult, log: Logger): Promise<void> => {
    const target = retentionTargetFor(config, { name: data.app, keep: data.keep, timeoutMs: data.limits.timeoutMs });
    await enqueueRetention(retentionQueue, target).catch((error: unknown) => log.error({ err: toError(error).message }, 'cannot enqueue retention; the daily sweep will do it'));
    await notifier.report({ event: 'recovered', app: data.app, node: data.node.name, at: new Date().toISOString(), lastSnapshot: { id: result.id, finishedAt: result.finishedAt } })
      .catch((error: unknown) => log.error({ err: toError(error).message }, 'cannot record the app state'));
    notifier.ping(data.app, data.ping, true);
  };

  /** Record a final failure, alert once per change of state, ping <url>/fail. */
  const afterFinalFailure = async (job: Job<SnapshotJobData, SnapshotResult>, reason: string): Promise<void> => {
    const data = job.data;
    const record: FailureRecord = { at: new Date().toISOString(), reason, jobId: String(job.id), attempts: job.attemptsMade };
    try {
      await connection.hset(redisKeys.lastFailure(prefix), data.app, JSON.stringify(record));
      await connection.hincrby(redisKeys.failuresTotal(prefix), data.app, 1);
      await notifier.report({ event: 'failed', app: data.app, node: data.node?.name, at: record.at, reason });
    } catch (error) {
      logger.error({ app: data.app, err: toError(error).message }, 'cannot record the failure');
    }
    notifier.ping(data.app, data.ping, false);
  };

  const jobs = new ActiveJobs();
  const worker = new Worker<SnapshotJobData, SnapshotResult>(SNAPSHOT_QUEUE, jobs.track(processor), {
    connection,
    prefix,
    concurrency: started.concurrency.perWorker,
    lockDuration,
    stalledInterval: options.stalledIntervalMs ?? started.concurrency.stalledIntervalMs,
    // BullMQ fails an ad-hoc job at the third stall; takeNodeSlot bounds the scheduler's jobs, which BullMQ exempts.
    maxStalledCount: MAX_STALLED_COUNT,
    // A job that finds its node busy is started again and again; this bounds the loop (≈ a day at the default delay).
    maxStartedAttempts: MAX_STARTED_ATTEMPTS,
    autorun: true,
  });
  redisHealth.watch(worker, 'snapshot worker');
  // Every final failure passes here, whatever its cause (BullMQ moves a job to failed only in a worker's
  // handleFailed), and only final ones have finishedOn. The notifier alerts once per change of state.
  const finalFailures = new Set<Promise<void>>();
  worker.on('failed', (job, error) => {
    const reason = job === undefined ? null : finalFailureReason(job, error);
    if (job && reason !== null) {
      logger.error({ app: job.data.app, node: job.data.node?.name, jobId: job.id, attempt: job.attemptsMade, reason }, 'snapshot failed for good');
      // Tracked: a stop waits for the record and the alert of a failure that happened just before it.
      const recording = afterFinalFailure(job, reason);
      finalFailures.add(recording);
      void recording.finally(() => finalFailures.delete(recording));
    }
  });
  await worker.waitUntilReady();
  logger.info({ concurrency: started.concurrency.perWorker, global: started.concurrency.global, repository: started.repository }, 'snapshot worker started');

  return {
    worker,
    async close() {
      const stopping = Date.now();
      const config = live.current();
      logger.info({ graceMs: config.shutdownGraceMs, running: jobs.ids() }, 'snapshot worker stopping');
      const waitedFor = await stopWorker({
        worker,
        jobs,
        logger,
        kind: 'snapshot',
        graceMs: config.shutdownGraceMs,
        interrupt: () => shutdown.abort(),
        // Every phase of a snapshot is abortable; a login in progress may take up to connectTimeout.
        interruptBoundMs: config.ssh.connectTimeoutMs + 10_000,
        redisReady: () => connection.status === 'ready',
      });
      if (!(await settlesWithin(Promise.allSettled([...finalFailures]), FINAL_FAILURE_RECORD_BOUND_MS))) {
        logger.error({ left: finalFailures.size }, 'the failure record of a job that failed during the stop was not written; the scheduler\'s next check alerts it if the record arrived');
      }
      await notifier.flushBeforeExit();
      await settlesWithin(Promise.all([retentionQueue.close(), queue.close()]), CLOSE_BOUND_MS);
      const redis = await closeConnection(connection);
      logger.info({ stoppedInMs: Date.now() - stopping, waitedFor, redis }, 'snapshot worker stopped');
    },
  };
}
