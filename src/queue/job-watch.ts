/**
 * Following jobs to their end without polling, for `bysu snapshot --wait`,
 * `bysu drill --wait` and `bysu mirror --wait` (src/cli/follow-jobs.ts): a BullMQ QueueEvents subscription wakes the
 * follower as soon as an event of one of its jobs arrives (completed, failed,
 * an attempt failed and delayed, progress, removed…), and the follower then
 * reads the state of the jobs that had events, once each however many came.
 *
 * No event is missed, however fast a job ends: the subscription reads the
 * queue's event stream from the newest entry it had *before* the jobs were
 * added (not from "now", which for BullMQ is whenever its first XREAD reaches
 * Redis, perhaps after the job has finished), and the follower reads each
 * job's state after it starts following it. A re-read every RECHECK_MS covers
 * what sends no event at all (the job's keys deleted by hand, a FLUSHALL).
 */
import { Job, QueueEvents, type JobState } from 'bullmq';
import type { Redis } from 'ioredis';
import { RedisUnavailableError } from '../errors.ts';
import { connectEventReader, redactRedisUrl } from './connection.ts';
import type { QueueName, QueuePayload, QueueResult } from './jobs.ts';
import type { TypedQueue } from './open-queue.ts';

/**
 * A job and its state, read so that they agree: the state, the job, then the
 * state again, until it did not change in between. Read once each, a job that
 * failed for good between the two reads shows its final data (one attempt
 * made, a reason) under its old state ("active"), and a follower would print
 * "will retry" for a job that is not retried.
 */
export async function readJobWithState<N extends QueueName>(queue: TypedQueue<N>, jobId: string): Promise<{ state: JobState | 'unknown'; job: Job<QueuePayload<N>, QueueResult<N>> | undefined }> {
  let state = await queue.getJobState(jobId);
  for (;;) {
    const job = await Job.fromId<QueuePayload<N>, QueueResult<N>>(queue, jobId);
    const again = await queue.getJobState(jobId);
    if (again === state) return { state, job };
    state = again;
  }
}

/** How long a follower waits without any event before it reads the jobs' states anyway. */
export const RECHECK_MS = 15_000;

/** The QueueEvents events that carry a jobId and may change what a follower prints. */
const JOB_EVENTS = ['waiting', 'active', 'progress', 'delayed', 'stalled', 'completed', 'failed', 'retries-exhausted', 'removed'] as const;

export class JobWatch {
  private readonly followed = new Set<string>();
  /** Followed jobs with events since the last next(). */
  private changed = new Set<string>();
  private wake: (() => void) | null = null;
  private lost: Error | null = null;
  private closing = false;

  private constructor(private readonly events: QueueEvents, private readonly connection: Redis, private readonly producer: Redis, private readonly url: string) {}

  /**
   * Given a queue (opened on a producer connection) and the Redis URL, return
   * the id of the newest entry of the queue's event stream ('0-0' when it has
   * none): a watch opened from it sees every event written after this call.
   */
  static async newestEventId<N extends QueueName>(queue: TypedQueue<N>, producer: Redis): Promise<string> {
    const [newest] = await producer.xrevrange(queue.keys.events!, '+', '-', 'COUNT', 1);
    return newest?.[0] ?? '0-0';
  }

  /**
   * Given a queue, its producer connection and the Redis URL, subscribe to the
   * queue's events on a connection of its own, from `since` (default: the
   * newest event now; call this before adding the jobs to follow). Throws
   * RedisUnavailableError when Redis does not answer.
   */
  static async open<N extends QueueName>(queue: TypedQueue<N>, producer: Redis, url: string, since?: string): Promise<JobWatch> {
    const lastEventId = since ?? await JobWatch.newestEventId(queue, producer);
    const connection = await connectEventReader(url);
    const events = new QueueEvents(queue.name, { connection, prefix: queue.opts.prefix, lastEventId, autorun: false });
    const watch = new JobWatch(events, connection, producer, url);
    // A wait must end when Redis goes away: this connection never reconnects, and BullMQ would retry its read for ever.
    connection.on('end', () => {
      if (watch.closing) return;
      watch.lost = watch.lostRedis();
      watch.wake?.();
    });
    events.on('error', () => undefined); // connection trouble ends the wait through 'end' above
    for (const name of JOB_EVENTS) {
      events.on(name, (args: { jobId?: string }) => {
        if (args.jobId === undefined || !watch.followed.has(args.jobId)) return;
        watch.changed.add(args.jobId);
        watch.wake?.();
      });
    }
    events.run().catch(() => undefined);
    return watch;
  }

  /** Watch this job's events from now on (read its state after this call: what happened before is not reported). */
  follow(jobId: string): void {
    this.followed.add(jobId);
  }

  /**
   * Resolve with the followed jobs that had events since the last call, at
   * once when there are some, else as soon as one has; with 'all' after
   * recheckMs without any. Throw RedisUnavailableError once Redis was lost.
   * One caller at a time.
   */
  async next(recheckMs = RECHECK_MS): Promise<Set<string> | 'all'> {
    if (this.lost) throw this.lost;
    if (this.changed.size === 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        timer = setTimeout(resolve, recheckMs);
      }).finally(() => {
        clearTimeout(timer);
        this.wake = null;
      });
      if (this.lost) throw this.lost;
      if (this.changed.size === 0) return 'all';
    }
    const changed = this.changed;
    this.changed = new Set();
    return changed;
  }

  /**
   * Given an error thrown while following, return the error to report: when
   * Redis was lost (this watch's connection or the producer's ended), one that
   * says so, rather than ioredis's "Connection is closed".
   */
  explain(error: unknown): unknown {
    if (this.lost) return this.lost;
    return this.producer.status === 'end' || this.connection.status === 'end' ? this.lostRedis() : error;
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.events.close().catch(() => undefined);
    this.connection.disconnect();
  }

  private lostRedis(): RedisUnavailableError {
    return new RedisUnavailableError(`Redis unreachable at ${redactRedisUrl(this.url)}: the connection was lost while waiting for the outcome (bysu status shows it once Redis is back)`);
  }
}
