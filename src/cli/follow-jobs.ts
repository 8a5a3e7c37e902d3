/**
 * The wait of `bysu snapshot`, `drill` and `mirror --wait`: one loop that
 * reads each followed job when its events say something happened (see
 * JobWatch), and one way to print the outcomes as JSON, also when Redis is
 * lost on the way. What each command prints of a job is its own.
 */
import type { Job, JobState } from 'bullmq';
import { toError } from '../errors.ts';
import { readJobWithState, type JobWatch } from '../queue/job-watch.ts';
import type { QueueName, QueuePayload, QueueResult } from '../queue/jobs.ts';
import type { TypedQueue } from '../queue/open-queue.ts';

/** What a follower does with each read of a job it follows. */
export interface FollowHandlers<N extends QueueName, E> {
  /** The job is gone (removed, or its keys deleted by hand): the wait for it ends. */
  gone(entry: E): void;
  /** The job in this state; return true when the wait for it ends (completed, failed for good). */
  read(entry: E, state: JobState, job: Job<QueuePayload<N>, QueueResult<N>>): boolean | Promise<boolean>;
  /** After each round of reads (a terminal's live line is drawn here). */
  afterRound?(): void;
}

/**
 * Given the queue, a watch that follows every entry's job and the entries,
 * read every job, then each again after its events (or all after
 * RECHECK_MS), until the handlers ended the wait for each. The one loop of
 * `snapshot`, `drill` and `mirror --wait`; what they print is theirs.
 */
export async function followJobs<N extends QueueName, E extends { jobId: string }>(
  queue: TypedQueue<N>, watch: JobWatch, entries: readonly E[], handlers: FollowHandlers<N, E>,
): Promise<void> {
  const pending = new Set(entries);
  // Every job at first (they were followed before this read: what happened before it shows in their state).
  let toRead: Set<string> | 'all' = 'all';
  while (pending.size > 0) {
    for (const entry of [...pending].filter((candidate) => toRead === 'all' || toRead.has(candidate.jobId))) {
      const { state, job } = await readJobWithState(queue, entry.jobId);
      if (!job || state === 'unknown') {
        pending.delete(entry);
        handlers.gone(entry);
      } else if (await handlers.read(entry, state, job)) {
        pending.delete(entry);
      }
    }
    handlers.afterRound?.();
    // The jobs whose events came meanwhile, at once; else the first to have one (or all after RECHECK_MS).
    if (pending.size > 0) toRead = await watch.next();
  }
}

/**
 * Given the watch, whether the command prints JSON, its outcomes, which of
 * them are still open, and the follow itself: run the follow and print the
 * outcomes as JSON when asked, also when Redis was lost on the way (a script
 * still gets JSON: what is known, and for the rest why it is not), then
 * rethrow that loss, explained.
 */
export async function followThenReport<O extends { reason: string | null }>(
  watch: JobWatch, json: boolean, outcomes: readonly O[], open: (outcome: O) => boolean, follow: () => Promise<void>,
): Promise<void> {
  try {
    await follow();
  } catch (error) {
    const explained = watch.explain(error);
    if (json) {
      for (const outcome of outcomes.filter(open)) outcome.reason = `outcome unknown: ${toError(explained).message}`;
      console.log(JSON.stringify(outcomes, null, 2));
    }
    throw explained;
  }
  if (json) console.log(JSON.stringify(outcomes, null, 2));
}
