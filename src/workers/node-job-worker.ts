/**
 * The skeleton of a worker whose jobs run on a node (snapshot, drill): what
 * the two share, written once. It reads the live config at each job, takes a
 * slot on the job's node (takeNodeSlot), runs the job with one abort signal
 * for a stop, a cancel and a lost slot, hands the job back when the worker
 * stops, maps the error for BullMQ (jobFailure), reports each final failure
 * once (tracked, so that a stop waits for its record), and closes within the
 * grace period (stopWorker). The worker itself says only what its job does.
 */
import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { LiveConfig } from '../config/live.ts';
import type { Config } from '../config/load.ts';
import { CancelledError, toError, WorkerShutdownError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { Notifier } from '../notify/notifier.ts';
import { closeConnection, createWorkerConnection, settlesWithin } from '../queue/connection.ts';
import type { DRILL_QUEUE, QueuePayload, QueueResult, SNAPSHOT_QUEUE } from '../queue/jobs.ts';
import { NODE_SLOT_LEASE_MS, NodeSlots } from '../queue/node-slots.ts';
import { RedisHealth } from '../queue/redis-health.ts';
import { requireRepository } from '../repository/marker.ts';
import type { NodeConnectSettings } from '../ssh/session.ts';
import { connectSettings, FINAL_FAILURE_RECORD_BOUND_MS, finalFailureReason, handBack, IdentityCache, jobFailure, MAX_STALLED_COUNT, MAX_STARTED_ATTEMPTS, takeNodeSlot } from './node-job.ts';
import { ActiveJobs, stopWorker } from './stop-worker.ts';

/** The queues whose jobs run on a node. */
export type NodeJobQueue = typeof SNAPSHOT_QUEUE | typeof DRILL_QUEUE;

/** What every job that runs on a node carries. */
export interface NodeJobData {
  app: string;
  node: { name: string };
  limits: { perNode: number };
}

type Data<N extends NodeJobQueue> = QueuePayload<N>;
type Result<N extends NodeJobQueue> = QueueResult<N>;

/** What a job runs with: the config as of its start, how to log in, and the signal that aborts it. */
export interface NodeJobContext {
  config: Config;
  connect: NodeConnectSettings;
  /** Aborts with WorkerShutdownError (stop), CancelledError (cancelJob) or ConnectionError (the slot's lease was lost). */
  signal: AbortSignal;
  log: Logger;
  /** The job's lock token. */
  token: string | undefined;
}

/** What the skeleton made that a worker's own code uses. */
export interface NodeJobWorkerBase {
  connection: Redis;
  prefix: string;
  notifier: Notifier;
  redisHealth: RedisHealth;
  /** The BullMQ job lock the Worker runs with. */
  lockDurationMs: number;
}

/** What a worker says of its jobs. */
export interface NodeJobHandlers<N extends NodeJobQueue> {
  /** Run the job (the slot is held and released around it); throw to fail it. */
  run(job: Job<Data<N>, Result<N>>, context: NodeJobContext): Promise<Result<N>>;
  /** Record and announce a final failure; the stop waits for it (bounded). */
  failedForGood(job: Job<Data<N>, Result<N>>, reason: string): Promise<void>;
  /** Close what the worker opened itself, after its jobs stopped and before the Redis connection closes. */
  close?(): Promise<void>;
  /** More to say in the "worker started" line. */
  startedFields?: Record<string, unknown>;
}

export interface NodeJobWorkerOptions<N extends NodeJobQueue> {
  /** The queue, which is also what the jobs are called in the log. */
  queueName: N;
  live: LiveConfig;
  logger: Logger;
  /** Throws when a payload is malformed (the job fails for good). */
  check: (data: unknown) => asserts data is Data<N>;
  /** BullMQ job lock. @defaultValue config.concurrency.lockDuration */
  lockDurationMs?: number;
  /** How often stalled jobs are looked for. @defaultValue config.concurrency.stalledInterval */
  stalledIntervalMs?: number;
  /** Node slot lease. @defaultValue NODE_SLOT_LEASE_MS */
  slotLeaseMs?: number;
  /** Where Redis errors are reported (`bysu up` shares one per process). @defaultValue one of the worker's own */
  redisHealth?: RedisHealth;
}

export interface RunningNodeJobWorker<N extends NodeJobQueue> {
  worker: Worker<Data<N>, Result<N>>;
  /** Stop taking jobs, let running ones finish within the grace period, hand back the rest, close connections. */
  close(): Promise<void>;
}

/**
 * Given the options and a function that, given what the skeleton made,
 * returns the worker's handlers, start the worker and return it. Throws
 * ConfigError when the SSH identity cannot be read, RepositoryUnavailableError
 * when the repository is missing or has no marker (the worker refuses to start).
 */
export async function startNodeJobWorker<N extends NodeJobQueue>(
  options: NodeJobWorkerOptions<N>,
  makeHandlers: (base: NodeJobWorkerBase) => Promise<NodeJobHandlers<N>>,
): Promise<RunningNodeJobWorker<N>> {
  const { queueName: kind, live, logger } = options;
  const started = live.current();
  const identities = new IdentityCache(live);
  await requireRepository(started.repository);
  const { prefix } = started.redis;
  const connection = createWorkerConnection(started.redis.url);
  const redisHealth = options.redisHealth ?? new RedisHealth(logger, started.redis.url);
  redisHealth.watch(connection, `${kind} worker connection`);
  const slotLeaseMs = options.slotLeaseMs ?? NODE_SLOT_LEASE_MS;
  const slots = new NodeSlots(connection, prefix, slotLeaseMs);
  const lockDurationMs = options.lockDurationMs ?? started.concurrency.lockDurationMs;
  const notifier = new Notifier(connection, prefix, () => live.current().notify, logger);
  const shutdown = new AbortController();
  const handlers = await makeHandlers({ connection, prefix, notifier, redisHealth, lockDurationMs });

  const processor = async (job: Job<Data<N>, Result<N>>, token?: string, cancel?: AbortSignal): Promise<Result<N>> => {
    const config = live.current();
    const data = job.data as Partial<NodeJobData> | undefined;
    const log = logger.child({ app: data?.app, node: data?.node?.name, jobId: job.id, attempt: job.attemptsMade + 1 });
    const slot = await takeNodeSlot(job, token, {
      check: options.check,
      nodeOf: (payload: NodeJobData) => ({ name: payload.node.name, perNode: payload.limits.perNode }),
      shutdown: shutdown.signal,
      slots,
      busyDelayMs: config.concurrency.busyNodeDelayMs,
      leaseMs: slotLeaseMs,
      log,
    });
    const controller = new AbortController();
    const onShutdown = () => controller.abort(new WorkerShutdownError('worker is shutting down'));
    const onCancel = () => controller.abort(new CancelledError(`job cancelled${cancel?.reason ? `: ${String(cancel.reason)}` : ''}`));
    const onLost = () => controller.abort(slot.lost.reason);
    shutdown.signal.addEventListener('abort', onShutdown, { once: true });
    cancel?.addEventListener('abort', onCancel, { once: true });
    slot.lost.addEventListener('abort', onLost, { once: true });
    try {
      return await handlers.run(job, { config, connect: connectSettings(config, identities.get()), signal: controller.signal, log, token });
    } catch (thrown) {
      const error = toError(thrown);
      if (error instanceof WorkerShutdownError) {
        log.warn(`${kind} interrupted by shutdown; handing the job back without using an attempt`);
        await handBack(job, token);
      }
      const failure = jobFailure(error);
      log.error({ err: failure.message, retryable: failure.name !== 'UnrecoverableError' }, `${kind} failed`);
      throw failure;
    } finally {
      shutdown.signal.removeEventListener('abort', onShutdown);
      cancel?.removeEventListener('abort', onCancel);
      slot.lost.removeEventListener('abort', onLost);
      await slot.release();
    }
  };

  const jobs = new ActiveJobs();
  const worker = new Worker<Data<N>, Result<N>>(options.queueName, jobs.track(processor), {
    connection,
    prefix,
    concurrency: started.concurrency.perWorker,
    lockDuration: lockDurationMs,
    stalledInterval: options.stalledIntervalMs ?? started.concurrency.stalledIntervalMs,
    // BullMQ fails an ad-hoc job at the third stall; takeNodeSlot bounds the scheduler's jobs, which BullMQ exempts.
    maxStalledCount: MAX_STALLED_COUNT,
    // A job that finds its node busy is started again and again; this bounds the loop (≈ a day at the default delay).
    maxStartedAttempts: MAX_STARTED_ATTEMPTS,
  });
  redisHealth.watch(worker, `${kind} worker`);
  // Every final failure passes here, whatever its cause (BullMQ moves a job to failed only in a worker's
  // handleFailed), and only final ones have finishedOn. The handlers announce it once per change of state.
  const finalFailures = new Set<Promise<void>>();
  worker.on('failed', (job, error) => {
    // The jobs keep no stack trace (stackTraceLimit 0, for the dashboard's sake): a developer finds it here.
    logger.debug({ app: job?.data.app, jobId: job?.id, attempt: job?.attemptsMade, stack: error.stack }, `${kind} attempt failed`);
    const reason = job === undefined ? null : finalFailureReason(job, error);
    if (!job || reason === null) return;
    logger.error({ app: job.data.app, node: job.data.node?.name, jobId: job.id, attempt: job.attemptsMade, reason }, `${kind} failed for good`);
    // Tracked: a stop waits for the record and the alert of a failure that happened just before it.
    const recording = handlers.failedForGood(job, reason)
      .catch((failure: unknown) => logger.error({ app: job.data.app, err: toError(failure).message }, `cannot record the ${kind} failure`));
    finalFailures.add(recording);
    void recording.finally(() => finalFailures.delete(recording));
  });
  await worker.waitUntilReady();
  logger.info({ concurrency: started.concurrency.perWorker, repository: started.repository, ...handlers.startedFields }, `${kind} worker started`);

  return {
    worker,
    async close() {
      const stopping = Date.now();
      const config = live.current();
      logger.info({ graceMs: config.shutdownGraceMs, running: jobs.ids() }, `${kind} worker stopping`);
      const waitedFor = await stopWorker({
        worker,
        jobs,
        logger,
        kind,
        graceMs: config.shutdownGraceMs,
        interrupt: () => shutdown.abort(),
        // Every phase of a job is abortable; a login in progress may take up to connectTimeout.
        interruptBoundMs: config.ssh.connectTimeoutMs + 10_000,
        redisReady: () => connection.status === 'ready',
      });
      if (!(await settlesWithin(Promise.allSettled([...finalFailures]), FINAL_FAILURE_RECORD_BOUND_MS))) {
        logger.error({ left: finalFailures.size }, `the failure record of a ${kind} that failed during the stop was not written; the scheduler's next check alerts it if the record arrived`);
      }
      await notifier.flushBeforeExit();
      await handlers.close?.();
      const redis = await closeConnection(connection);
      logger.info({ stoppedInMs: Date.now() - stopping, waitedFor, redis }, `${kind} worker stopped`);
    },
  };
}
