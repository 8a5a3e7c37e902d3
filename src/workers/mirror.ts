/**
 * The mirror worker: BullMQ wiring around src/mirror. Each job names one
 * mirror; a run copies what its source has and this repository lacks (see
 * run-mirror.ts). One run per mirror at a time, whatever the number of
 * workers (a lock in Redis; a second one ends at once, saying so). Every
 * download of one mirror in this process shares one bound (`maxRate`). A run
 * loses nothing when it is stopped: its downloads stay in `.incoming` and the
 * job goes back to the queue, to resume from there.
 */
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { LiveConfig } from '../config/live.ts';
import { NAME_PATTERN } from '../config/formats.ts';
import { CommitConflictError, toError, WorkerShutdownError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { Notifier } from '../notify/notifier.ts';
import { withAppLock } from '../queue/app-lock.ts';
import { CLOSE_BOUND_MS, closeConnection, createWorkerConnection, settlesWithin } from '../queue/connection.ts';
import { MIRROR_QUEUE, mirrorKey, type MirrorJobData, type MirrorJobResult } from '../queue/jobs.ts';
import { openQueue } from '../queue/open-queue.ts';
import { RedisHealth } from '../queue/redis-health.ts';
import { requireRepository } from '../repository/marker.ts';
import { ReadThrottle } from '../repository/read-throttle.ts';
import { runMirror } from '../mirror/run-mirror.ts';
import { finalFailureReason, handBack, jobFailure, MAX_STALLED_COUNT, refuseStalledOut } from './node-job.ts';
import { ActiveJobs, stopWorker } from './stop-worker.ts';

/** How long a stopping worker waits for its runs to hand themselves back (they stop within a chunk). */
const HAND_BACK_BOUND_MS = 5000;
/** Mirror runs at once in one worker (each mirror runs one at a time anyway). */
const CONCURRENCY = 4;

export interface RunningMirrorWorker {
  worker: Worker<MirrorJobData, MirrorJobResult>;
  close(): Promise<void>;
}

/** The lock that keeps two runs of one mirror apart: an app lock under a name no app can have. */
const runLockName = (mirror: string) => `mirror~${mirror}`;

function checkMirrorJobData(data: unknown): asserts data is MirrorJobData {
  const mirror = (data as Partial<MirrorJobData> | null)?.mirror;
  if (typeof mirror !== 'string' || !NAME_PATTERN.test(mirror)) throw new UnrecoverableError(`malformed mirror job: mirror ${JSON.stringify(mirror)} is not a mirror name`);
}

/**
 * Given the live config and a logger, start a mirror worker and return it.
 * Each run uses the config as of its start. Throws
 * RepositoryUnavailableError when the repository is missing or unmarked.
 */
export async function startMirrorWorker(live: LiveConfig, logger: Logger, options: { redisHealth?: RedisHealth; env?: NodeJS.ProcessEnv } = {}): Promise<RunningMirrorWorker> {
  const started = live.current();
  await requireRepository(started.repository);
  const { prefix } = started.redis;
  const connection = createWorkerConnection(started.redis.url);
  const redisHealth = options.redisHealth ?? new RedisHealth(logger, started.redis.url);
  redisHealth.watch(connection, 'mirror worker connection');
  const queue = openQueue(MIRROR_QUEUE, connection, prefix);
  redisHealth.watch(queue, 'mirror queue');
  const notifier = new Notifier(connection, prefix, () => live.current().notify, logger);
  const shutdown = new AbortController();
  /** One bound per mirror and rate, shared by its downloads in this process. */
  const throttles = new Map<string, ReadThrottle>();
  const throttleFor = (mirror: string, rate: number) => {
    const key = `${mirror}@${rate}`;
    if (!throttles.has(key)) throttles.set(key, new ReadThrottle(rate, shutdown.signal));
    return throttles.get(key)!;
  };

  const processor = async (job: Job<MirrorJobData, MirrorJobResult>, token?: string): Promise<MirrorJobResult> => {
    refuseStalledOut(job);
    checkMirrorJobData(job.data);
    if (shutdown.signal.aborted) await handBack(job, token);
    const config = live.current();
    const name = job.data.mirror;
    const log = logger.child({ mirror: name, jobId: job.id, attempt: job.attemptsMade + 1 });
    const mirror = config.mirrors.find((candidate) => candidate.name === name);
    if (!mirror) {
      log.warn('mirror is not in this worker\'s config: nothing copied');
      return { mirror: name, apps: [], failures: [], skipped: 'the mirror is not configured' };
    }
    const { lockDurationMs } = config.concurrency;
    // The run lock of a crashed process lapses after one lease: as short as the job lock, renewed while held.
    const runLeaseMs = Math.max(5000, lockDurationMs);
    try {
      return await withAppLock(connection, prefix, runLockName(name), async () => {
        log.info({ trigger: job.data.trigger, url: mirror.url, maxRate: mirror.maxRate }, 'mirror run started');
        const startedAt = Date.now();
        const result = await runMirror(config, name, {
          signal: shutdown.signal,
          ...(mirror.maxRate > 0 ? { throttle: throttleFor(name, mirror.maxRate) } : {}),
          reloadUnverified: live.reloadUnverified(),
          fence: async () => {
            if (token === undefined) return;
            if (!(await job.extendLock(token, lockDurationMs))) throw new CommitConflictError(`lost the lock of job ${job.id}; another worker may be running it`);
          },
          lockApp: (app, fn) => withAppLock(connection, prefix, app, (lease) => fn(lease), { waitMs: 10 * 60_000 }),
          logger: log,
          ...(options.env ? { env: options.env } : {}),
        });
        await notifier.report({ event: 'recovered', app: mirrorKey(name), at: new Date().toISOString(), lastSnapshot: null })
          .catch((error: unknown) => log.error({ err: toError(error).message }, 'cannot record the mirror\'s state'));
        // An app whose copies caught up with its source is reported recovered (sent only after a stale alert: the notifier keeps the state).
        for (const app of result.apps.filter((entry) => entry.error === undefined && entry.behind === 0)) {
          await notifier.report({ event: 'recovered', app: app.app, at: new Date().toISOString(), lastSnapshot: null })
            .catch((error: unknown) => log.error({ app: app.app, err: toError(error).message }, 'cannot record the app state'));
        }
        // A failure on this side (a full disk, the repository gone) is told at once: no wait for the source mends it.
        for (const app of result.apps.filter((entry) => entry.local === true)) {
          await notifier.report({ event: 'failed', app: app.app, at: new Date().toISOString(), reason: `copy from mirror source ${name}: ${app.error ?? ''}` })
            .catch((error: unknown) => log.error({ app: app.app, err: toError(error).message }, 'cannot record the app state'));
        }
        const copied = result.apps.reduce((sum, app) => sum + app.copied.length, 0);
        const received = result.apps.reduce((sum, app) => sum + app.received, 0);
        log.info({ copied, received, ms: Date.now() - startedAt, failures: result.failures.length }, 'mirror run finished');
        // Retried (and failed for good at the last attempt): what did not arrive is named, app by app.
        // A damaged file on the source, or a name clash, is not mended by trying again within minutes: the next scheduled run tries.
        if (result.failures.length > 0) {
          const message = `mirror ${name}: ${result.failures.join('; ')}`;
          throw result.retryable ? new Error(message) : new UnrecoverableError(message);
        }
        return result;
      }, { leaseMs: runLeaseMs, waitMs: runLeaseMs * 1.5 });
    } catch (thrown) {
      const error = toError(thrown);
      if (error instanceof CommitConflictError && /stayed busy/.test(error.message)) {
        // Retried, then failed, never "done": `bysu mirror --wait` must not say everything arrived when nothing ran.
        log.warn('another run of this mirror is in progress: this one is retried');
        throw new Error(`another run of mirror ${name} is in progress (its run lock stayed busy); this run is retried`);
      }
      if (error instanceof WorkerShutdownError || shutdown.signal.aborted) {
        log.warn('mirror run interrupted by shutdown; its downloads stay for the next run, and the job goes back to the queue');
        await handBack(job, token);
      }
      const failure = jobFailure(error);
      log.error({ err: failure.message, retryable: failure.name !== 'UnrecoverableError' }, 'mirror run failed');
      throw failure;
    }
  };

  const jobs = new ActiveJobs();
  const worker = new Worker<MirrorJobData, MirrorJobResult>(MIRROR_QUEUE, jobs.track(processor), {
    connection,
    prefix,
    concurrency: CONCURRENCY,
    lockDuration: started.concurrency.lockDurationMs,
    stalledInterval: started.concurrency.stalledIntervalMs,
    maxStalledCount: MAX_STALLED_COUNT,
  });
  redisHealth.watch(worker, 'mirror worker');
  worker.on('failed', (job, error) => {
    const reason = job === undefined ? null : finalFailureReason(job, error);
    if (job && reason !== null) logger.error({ mirror: job.data.mirror, jobId: job.id, reason }, 'mirror run failed for good');
  });
  await worker.waitUntilReady();
  logger.info({ mirrors: started.mirrors.map((mirror) => mirror.name), repository: started.repository }, 'mirror worker started');
  return {
    worker,
    async close() {
      const stopping = Date.now();
      logger.info({ running: jobs.ids() }, 'mirror worker stopping');
      shutdown.abort(new WorkerShutdownError('worker is shutting down'));
      const waitedFor = await stopWorker({ worker, jobs, logger, kind: 'mirror', graceMs: HAND_BACK_BOUND_MS, redisReady: () => connection.status === 'ready' });
      await notifier.flushBeforeExit();
      await settlesWithin(queue.close(), CLOSE_BOUND_MS);
      const redis = await closeConnection(connection);
      logger.info({ stoppedInMs: Date.now() - stopping, waitedFor, redis }, 'mirror worker stopped');
    },
  };
}
