/**
 * The drill worker: BullMQ wiring around src/drill. Drills take the same
 * per-node slots as snapshots (a busy drill node delays the job without using
 * an attempt); a failed drill is announced once per change of state.
 */
import { Worker, type Job } from 'bullmq';
import type { LiveConfig } from '../config/live.ts';
import { checkDrillJobData, runDrill } from '../drill/run-drill.ts';
import { connectSettings, FINAL_FAILURE_RECORD_BOUND_MS, finalFailureReason, handBack, IdentityCache, jobFailure, MAX_STALLED_COUNT, MAX_STARTED_ATTEMPTS, takeNodeSlot, WorkerShutdownError } from './node-job.ts';
import { toError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { Notifier } from '../notify/notifier.ts';
import { closeConnection, createWorkerConnection, settlesWithin } from '../queue/connection.ts';
import { DRILL_QUEUE, type DrillJobData, type DrillResult } from '../queue/jobs.ts';
import { NodeSlots } from '../queue/node-slots.ts';
import { RedisHealth } from '../queue/redis-health.ts';
import { ActiveJobs, stopWorker } from './stop-worker.ts';
import { requireRepository } from '../repository/marker.ts';

export interface RunningDrillWorker {
  worker: Worker<DrillJobData, DrillResult>;
  close(): Promise<void>;
}

/**
 * Given the live config and a logger, start a drill worker and return it;
 * each drill runs with the config as of its start. `redisHealth` is where
 * Redis errors are reported (`bysu up` shares one per process); by default
 * the worker has its own.
 */
export async function startDrillWorker(live: LiveConfig, logger: Logger, options: { redisHealth?: RedisHealth } = {}): Promise<RunningDrillWorker> {
  const started = live.current();
  const identities = new IdentityCache(live);
  await requireRepository(started.repository);
  const { prefix } = started.redis;
  const connection = createWorkerConnection(started.redis.url);
  const redisHealth = options.redisHealth ?? new RedisHealth(logger, started.redis.url);
  redisHealth.watch(connection, 'drill worker connection');
  const slots = new NodeSlots(connection, prefix);
  const notifier = new Notifier(connection, prefix, () => live.current().notify, logger);
  const shutdown = new AbortController();

  const processor = async (job: Job<DrillJobData, DrillResult>, token?: string): Promise<DrillResult> => {
    const data = job.data;
    const config = live.current();
    const log = logger.child({ app: data?.app, node: data?.node?.name, jobId: job.id, attempt: job.attemptsMade + 1, drill: true });
    const slot = await takeNodeSlot(job, token, {
      check: checkDrillJobData,
      nodeOf: (payload: DrillJobData) => ({ name: payload.node.name, perNode: payload.limits.perNode }),
      shutdown: shutdown.signal,
      slots,
      busyDelayMs: config.concurrency.busyNodeDelayMs,
      log,
    });
    const controller = new AbortController();
    const onShutdown = () => controller.abort(new WorkerShutdownError('worker is shutting down'));
    const onLost = () => controller.abort(slot.lost.reason);
    shutdown.signal.addEventListener('abort', onShutdown, { once: true });
    slot.lost.addEventListener('abort', onLost, { once: true });
    log.info({ steps: data.steps.length }, 'drill started');
    try {
      const result = await runDrill(data, {
        jobId: String(job.id),
        repository: config.repository,
        ...connectSettings(config, identities.get()),
        logger: log,
        signal: controller.signal,
      });
      log.info({ snapshot: result.snapshotId }, 'drill passed');
      await notifier.report({ event: 'drill-recovered', app: data.app, node: data.node.name, at: result.finishedAt, lastSnapshot: null }).catch(() => undefined);
      return result;
    } catch (thrown) {
      const error = toError(thrown);
      if (error instanceof WorkerShutdownError) {
        log.warn('drill interrupted by shutdown; handing the job back without using an attempt');
        await handBack(job, token);
      }
      const failure = jobFailure(error, false);
      log.error({ err: failure.message }, 'drill failed');
      throw failure;
    } finally {
      shutdown.signal.removeEventListener('abort', onShutdown);
      slot.lost.removeEventListener('abort', onLost);
      await slot.release();
    }
  };

  const jobs = new ActiveJobs();
  const worker = new Worker<DrillJobData, DrillResult>(DRILL_QUEUE, jobs.track(processor), {
    connection,
    prefix,
    concurrency: started.concurrency.perWorker,
    lockDuration: started.concurrency.lockDurationMs,
    stalledInterval: started.concurrency.stalledIntervalMs,
    maxStalledCount: MAX_STALLED_COUNT,
    maxStartedAttempts: MAX_STARTED_ATTEMPTS,
  });
  redisHealth.watch(worker, 'drill worker');
  // As for snapshots: every final failure (stalled out, started out included) has finishedOn.
  const finalFailures = new Set<Promise<void>>();
  worker.on('failed', (job, error) => {
    const reason = job === undefined ? null : finalFailureReason(job, error);
    if (!job || reason === null) return;
    logger.error({ app: job.data.app, jobId: job.id, reason }, 'drill failed for good');
    // Tracked: a stop waits for the alert of a failure that happened just before it.
    const reporting = notifier.report({ event: 'drill-failed', app: job.data.app, node: job.data.node?.name, at: new Date().toISOString(), reason })
      .then(() => undefined, (error: unknown) => logger.error({ app: job.data.app, err: toError(error).message }, 'cannot record the drill failure'));
    finalFailures.add(reporting);
    void reporting.finally(() => finalFailures.delete(reporting));
    notifier.ping(job.data.app, job.data.ping, false);
  });
  await worker.waitUntilReady();
  logger.info({ repository: started.repository }, 'drill worker started');
  return {
    worker,
    async close() {
      const stopping = Date.now();
      const config = live.current();
      logger.info({ graceMs: config.shutdownGraceMs, running: jobs.ids() }, 'drill worker stopping');
      const waitedFor = await stopWorker({
        worker,
        jobs,
        logger,
        kind: 'drill',
        graceMs: config.shutdownGraceMs,
        interrupt: () => shutdown.abort(),
        interruptBoundMs: config.ssh.connectTimeoutMs + 10_000,
        redisReady: () => connection.status === 'ready',
      });
      if (!(await settlesWithin(Promise.allSettled([...finalFailures]), FINAL_FAILURE_RECORD_BOUND_MS))) {
        logger.error({ left: finalFailures.size }, 'the alert state of a drill that failed during the stop was not written');
      }
      await notifier.flushBeforeExit();
      const redis = await closeConnection(connection);
      logger.info({ stoppedInMs: Date.now() - stopping, waitedFor, redis }, 'drill worker stopped');
    },
  };
}
