/**
 * The verify worker: BullMQ wiring around src/verify. Each job names one
 * app; its kept snapshots are read again, newest first, no faster than
 * verify.maxBytesPerSecond, and at most verify.concurrency apps are verified
 * at once across every verify worker (the queue's global concurrency), so a
 * verification does not take the disk from the night's snapshots. A damaged
 * snapshot is announced once (`corrupt`, an alert state of its own) as soon
 * as it is recorded, and the all-clear once a verification finds none. A
 * verification loses nothing when it is stopped: on shutdown it is handed
 * back to the queue at once and starts again from the newest snapshot.
 */
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { LiveConfig } from '../config/live.ts';
import { NAME_PATTERN } from '../config/formats.ts';
import { toError, WorkerShutdownError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { Notifier, type AlertEvent } from '../notify/notifier.ts';
import { withAppLock } from '../queue/app-lock.ts';
import { CLOSE_BOUND_MS, closeConnection, createWorkerConnection, settlesWithin } from '../queue/connection.ts';
import { mirrorKey, VERIFY_QUEUE, type VerifyJobData, type VerifyJobResult } from '../queue/jobs.ts';
import { openQueue } from '../queue/open-queue.ts';
import { RedisHealth } from '../queue/redis-health.ts';
import { requireRepository } from '../repository/marker.ts';
import { ReadThrottle } from '../repository/read-throttle.ts';
import type { VerifyRecord } from '../repository/records.ts';
import { damageReason, verifyApp } from '../verify/verify-app.ts';
import { appsHeldBy } from '../mirror/record.ts';
import { finalFailureReason, handBack, jobFailure, MAX_STALLED_COUNT, refuseStalledOut } from './node-job.ts';
import { ActiveJobs, stopWorker } from './stop-worker.ts';

/** How long a stopping worker waits for its verifications to hand themselves back (they stop within a chunk's read). */
const HAND_BACK_BOUND_MS = 5000;

export interface RunningVerifyWorker {
  worker: Worker<VerifyJobData, VerifyJobResult>;
  close(): Promise<void>;
}

/** Throw UnrecoverableError unless a job's payload names an app as the config could. */
function checkVerifyJobData(data: unknown): asserts data is VerifyJobData {
  const { app, mirror } = (data as Partial<VerifyJobData> | null) ?? {};
  if (mirror !== undefined) {
    if (typeof mirror !== 'string' || !NAME_PATTERN.test(mirror) || app !== mirrorKey(mirror)) throw new UnrecoverableError(`malformed verify job: mirror ${JSON.stringify(mirror)} is not a mirror name`);
    return;
  }
  if (typeof app !== 'string' || !NAME_PATTERN.test(app)) throw new UnrecoverableError(`malformed verify job: app ${JSON.stringify(app)} is not an app name`);
}

/**
 * Given the live config and a logger, start a verify worker and return it.
 * Each verification runs with the config as of its start (repository,
 * bound, alerts); a reload that changes verify.concurrency applies it to the
 * queue and the worker at once. `redisHealth` is where Redis errors are
 * reported (`bysu up` shares one per process). Throws
 * RepositoryUnavailableError when the repository is missing or unmarked.
 */
export async function startVerifyWorker(live: LiveConfig, logger: Logger, options: { redisHealth?: RedisHealth } = {}): Promise<RunningVerifyWorker> {
  const started = live.current();
  await requireRepository(started.repository);
  const { prefix } = started.redis;
  const connection = createWorkerConnection(started.redis.url);
  const redisHealth = options.redisHealth ?? new RedisHealth(logger, started.redis.url);
  redisHealth.watch(connection, 'verify worker connection');
  const queue = openQueue(VERIFY_QUEUE, connection, prefix);
  redisHealth.watch(queue, 'verify queue');
  await queue.setGlobalConcurrency(started.verify.concurrency);
  const notifier = new Notifier(connection, prefix, () => live.current().notify, logger);
  const shutdown = new AbortController();

  /** Given an app, its node (none for a mirror's copies) and its record as just written, announce its damage, or that it has none (each once per change). */
  const announce = async (app: string, node: string | undefined, record: VerifyRecord, log: Logger) => {
    const damaged = record.snapshots.filter((snapshot) => !snapshot.ok);
    const event: AlertEvent = damaged.length > 0
      ? { event: 'corrupt', app, ...(node ? { node } : {}), at: damaged[0]!.at, reason: damageReason(app, damaged) }
      : { event: 'corrupt-cleared', app, ...(node ? { node } : {}), at: record.at };
    const sent = await notifier.report(event).catch((error: unknown) => {
      log.error({ err: toError(error).message }, 'cannot record the app\'s verification alert state; the scheduler\'s next check sends it');
      return false;
    });
    if (sent && damaged.length > 0) log.warn({ damaged: damaged.map(({ id }) => id) }, 'damaged snapshot found: alert sent');
  };

  const processor = async (job: Job<VerifyJobData, VerifyJobResult>, token?: string): Promise<VerifyJobResult> => {
    refuseStalledOut(job);
    checkVerifyJobData(job.data);
    if (shutdown.signal.aborted) await handBack(job, token);
    const config = live.current();
    const name = job.data.app;
    const log = logger.child({ app: name, jobId: job.id, attempt: job.attemptsMade + 1 });
    // The apps to verify, each with its node: the one named, or every app whose copies the mirror holds here.
    let targets: { app: string; node: string | undefined }[];
    if (job.data.mirror !== undefined) {
      const mirror = job.data.mirror;
      if (!config.mirrors.some((candidate) => candidate.name === mirror)) {
        log.warn('mirror is not in this worker\'s config: its copies not verified');
        return { app: name, verified: [], damaged: [], bytes: 0, ms: 0, skipped: 'the mirror is not configured' };
      }
      await requireRepository(config.repository);
      targets = (await appsHeldBy(config.repository, new Set(config.apps.map((app) => app.name)), new Set([mirror]))).map((app) => ({ app, node: undefined }));
    } else {
      const app = config.apps.find((candidate) => candidate.name === name);
      if (!app) {
        log.warn('app is not in this worker\'s config: not verified');
        return { app: name, verified: [], damaged: [], bytes: 0, ms: 0, skipped: 'the app is not configured' };
      }
      targets = [{ app: name, node: app.node }];
    }
    const { maxBytesPerSecond } = config.verify;
    log.info({ trigger: job.data.trigger, maxBytesPerSecond, ...(job.data.mirror ? { apps: targets.map(({ app }) => app) } : {}) }, 'verification started');
    const startedAt = Date.now();
    try {
      const throttle = new ReadThrottle(maxBytesPerSecond, shutdown.signal);
      const verified: string[] = [];
      const damaged: string[] = [];
      let bytes = 0;
      for (const { app, node } of targets) {
        const appLog = job.data.mirror ? log.child({ app }) : log;
        // With one app, its snapshot ids as ever; with a mirror's several, each named with its app.
        const named = (id: string) => (job.data.mirror ? `${app}/${id}` : id);
        const outcome = await verifyApp(config.repository, app, {
          throttle,
          signal: shutdown.signal,
          lock: (fn) => withAppLock(connection, prefix, app, fn),
          onSnapshot: (result) => {
            if (result.ok) appLog.debug({ snapshot: result.id, bytes: result.bytes }, 'snapshot verified');
            else appLog.error({ snapshot: result.id, problems: result.problems }, `snapshot ${app}/${result.id} is damaged: ${result.problems[0]}`);
          },
          onRecorded: (record) => announce(app, node, record, appLog),
          onSummaryError: (error) => appLog.warn({ err: error.message }, 'cannot update the app summary'),
        });
        // Retried: until the verdicts are recorded, status and the alerts do not know them.
        if (outcome.recordError) throw outcome.recordError;
        verified.push(...outcome.results.map((result) => named(result.id)));
        damaged.push(...outcome.results.filter((result) => !result.ok).map((result) => named(result.id)));
        bytes += outcome.bytes;
      }
      const ms = Date.now() - startedAt;
      log.info({ snapshots: verified.length, damaged, bytes, ms, mibPerSecond: ms > 0 ? Math.round((bytes / 1048576 / (ms / 1000)) * 10) / 10 : null }, 'verification finished');
      return { app: name, verified, damaged, bytes, ms };
    } catch (thrown) {
      const error = toError(thrown);
      if (error instanceof WorkerShutdownError) {
        log.warn('verification interrupted by shutdown; handing the job back without using an attempt');
        await handBack(job, token);
      }
      const failure = jobFailure(error);
      log.error({ err: failure.message, retryable: failure.name !== 'UnrecoverableError' }, 'verification failed');
      throw failure;
    }
  };

  const jobs = new ActiveJobs();
  const worker = new Worker<VerifyJobData, VerifyJobResult>(VERIFY_QUEUE, jobs.track(processor), {
    connection,
    prefix,
    concurrency: started.verify.concurrency,
    lockDuration: started.concurrency.lockDurationMs,
    stalledInterval: started.concurrency.stalledIntervalMs,
    maxStalledCount: MAX_STALLED_COUNT,
  });
  redisHealth.watch(worker, 'verify worker');
  worker.on('failed', (job, error) => {
    const reason = job === undefined ? null : finalFailureReason(job, error);
    if (job && reason !== null) logger.error({ app: job.data.app, jobId: job.id, reason }, 'verification failed for good');
  });
  live.onReload((config, previous) => {
    if (config.verify.concurrency === previous.verify.concurrency) return;
    worker.concurrency = config.verify.concurrency;
    queue.setGlobalConcurrency(config.verify.concurrency).then(
      () => logger.info({ concurrency: config.verify.concurrency }, 'verify.concurrency applied'),
      (error: unknown) => logger.error({ err: toError(error).message }, 'cannot apply verify.concurrency; it applies at the next start'),
    );
  });
  await worker.waitUntilReady();
  logger.info({ concurrency: started.verify.concurrency, maxBytesPerSecond: started.verify.maxBytesPerSecond, repository: started.repository }, 'verify worker started');
  return {
    worker,
    async close() {
      const stopping = Date.now();
      logger.info({ running: jobs.ids() }, 'verify worker stopping');
      // Nothing is lost by stopping a verification: stop reading now, and hand the job back.
      shutdown.abort(new WorkerShutdownError('worker is shutting down'));
      const waitedFor = await stopWorker({ worker, jobs, logger, kind: 'verify', graceMs: HAND_BACK_BOUND_MS, redisReady: () => connection.status === 'ready' });
      await notifier.flushBeforeExit();
      await settlesWithin(queue.close(), CLOSE_BOUND_MS);
      const redis = await closeConnection(connection);
      logger.info({ stoppedInMs: Date.now() - stopping, waitedFor, redis }, 'verify worker stopped');
    },
  };
}
