/**
 * How every worker stops, written once: stop taking jobs, wait for the jobs
 * this process is running (and only for them) within the grace period, ask
 * those still running to hand themselves back, log what became of each, and
 * bound the wait for Redis. BullMQ's `worker.close()` alone is not enough: it
 * also waits for its blocking connection, which with Redis unreachable waits
 * for reconnects that may never come, however idle the worker is.
 */
import type { Job, Processor, Worker } from 'bullmq';
import { toError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { CLOSE_BOUND_MS, settlesWithin } from '../queue/connection.ts';

interface JobRun {
  jobId: string;
  startedAt: number;
  done: Promise<void>;
  /** What became of it, once it ended. */
  outcome?: string;
}

/**
 * The jobs this worker's processor is running now. The worker's own count
 * (not Redis's active list) is what a shutdown waits for: it is right when
 * Redis is unreachable, and it holds no job of another worker.
 */
export class ActiveJobs {
  private readonly running = new Set<JobRun>();
  /** Runs that ended since the stop began, to report. */
  private ended: JobRun[] | null = null;

  /** Given a processor, return the same processor with each run tracked. */
  track<D, R, N extends string>(processor: Processor<D, R, N>): Processor<D, R, N> {
    return (job: Job<D, R, N>, token?: string, signal?: AbortSignal) => {
      const result = processor(job, token, signal);
      const run: JobRun = { jobId: String(job.id), startedAt: Date.now(), done: Promise.resolve() };
      run.done = result.then(() => {
        run.outcome = 'finished';
      }, (error: unknown) => {
        // DelayedError: the job moved itself back to the queue (a busy node, or handed back on shutdown).
        run.outcome = toError(error).name === 'DelayedError' ? 'handed back to the queue' : `failed: ${toError(error).message}`;
      }).finally(() => {
        this.running.delete(run);
        this.ended?.push(run);
      });
      this.running.add(run);
      return result;
    };
  }

  get size(): number {
    return this.running.size;
  }

  /** The ids of the jobs running now. */
  ids(): string[] {
    return [...this.running].map((run) => run.jobId);
  }

  /** From now on, keep the runs that end, for `report`. */
  startReporting(): void {
    this.ended ??= [];
  }

  /** Given a deadline (epoch ms), wait until no job runs or the deadline passes; return whether none runs. */
  async drain(deadline: number): Promise<boolean> {
    while (this.running.size > 0) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await settlesWithin(Promise.all([...this.running].map((run) => run.done)), left);
    }
    return true;
  }

  /** The runs that ended since startReporting (with their outcome) and those still running. */
  report(): { jobId: string; outcome: string; ranMs: number }[] {
    const now = Date.now();
    return [
      ...(this.ended ?? []).map((run) => ({ jobId: run.jobId, outcome: run.outcome ?? 'finished', ranMs: now - run.startedAt })),
      ...[...this.running].map((run) => ({ jobId: run.jobId, outcome: 'still running: its job will be recovered as stalled', ranMs: now - run.startedAt })),
    ];
  }
}

export interface StopWorkerOptions {
  worker: Worker;
  jobs: ActiveJobs;
  logger: Logger;
  /** What the jobs are, for the log: snapshot, drill, retention. */
  kind: string;
  /** How long running jobs may take to finish. */
  graceMs: number;
  /** Called when the grace period is over and jobs still run: they are to hand themselves back. Absent: they are left. */
  interrupt?: () => void;
  /** How long interrupted jobs may take to hand themselves back. @defaultValue 0 */
  interruptBoundMs?: number;
  /** Whether the worker's connection to Redis is up now (ioredis status 'ready'); when not, nothing waits for it. */
  redisReady: () => boolean;
  /** How long to wait for Redis once no job runs. @defaultValue CLOSE_BOUND_MS */
  closeBoundMs?: number;
}

/**
 * Given a worker and its tracked jobs, stop it: no new job is taken, running
 * jobs get the grace period and are then interrupted, each one's fate is
 * logged, and once none runs the worker's Redis connections get closeBoundMs
 * to close before they are dropped. Returns what it waited for, in words.
 */
export async function stopWorker(options: StopWorkerOptions): Promise<string> {
  const { worker, jobs, logger, kind } = options;
  const started = Date.now();
  const deadline = started + options.graceMs;
  jobs.startReporting();
  // Stops fetching at once; resolves when BullMQ has also closed its connections (which needs Redis).
  const closing = worker.close();
  closing.catch(() => undefined); // its errors are emitted as 'error' events too
  const waitedFor: string[] = [];
  let interrupted = false;
  for (;;) {
    if (jobs.size > 0) {
      const ids = jobs.ids();
      waitedFor.push(`${kind} jobs ${ids.join(', ')}`);
      logger.info({ jobs: ids, graceMs: options.graceMs }, `waiting for ${ids.length} running ${kind} job(s) to finish: ${ids.join(', ')}`);
      if (!(await jobs.drain(deadline)) && options.interrupt && !interrupted) {
        interrupted = true;
        logger.warn({ jobs: jobs.ids() }, `grace period over; interrupting ${kind} job(s) ${jobs.ids().join(', ')} to hand them back to the queue`);
        options.interrupt();
        await jobs.drain(Date.now() + (options.interruptBoundMs ?? 0));
      }
    } else if (waitedFor.length === 0) {
      logger.info(`no ${kind} job running: nothing to wait for`);
    }
    const closeBound = options.closeBoundMs ?? CLOSE_BOUND_MS;
    // With Redis unreachable no job can start, and BullMQ's close would wait for the reconnect: do not wait at all.
    const redisReady = options.redisReady();
    if (redisReady && await settlesWithin(closing, closeBound)) break;
    // A job fetched just as the stop began is running now: wait for it too, within the same grace period.
    if (redisReady && jobs.size > 0 && Date.now() < deadline) continue;
    if (jobs.size > 0) {
      logger.warn({ jobs: jobs.ids() }, `${kind} job(s) ${jobs.ids().join(', ')} still running after the grace period: connections dropped`);
    } else if (redisReady) {
      waitedFor.push(`redis for ${closeBound} ms (no answer: connections dropped)`);
      logger.warn({ waitedMs: closeBound }, `redis did not answer within ${closeBound} ms while the ${kind} worker closed: its connections are dropped`);
    } else {
      logger.info(`redis is unreachable: the ${kind} worker's connections are dropped without waiting for it`);
    }
    // Not awaited: with Redis gone BullMQ waits for an 'end' event that never comes; the sockets and retry timers are gone at once.
    worker.disconnect().catch(() => undefined);
    break;
  }
  for (const run of jobs.report()) {
    const line = { jobId: run.jobId, outcome: run.outcome, ranMs: run.ranMs };
    if (run.outcome === 'finished') logger.info(line, `${kind} job ${run.jobId}: ${run.outcome}`);
    else logger.warn(line, `${kind} job ${run.jobId}: ${run.outcome}`);
  }
  return waitedFor.length === 0 ? 'nothing' : waitedFor.join('; ');
}
