/**
 * `bysu drill <app>... [--wait]`: enqueue a restore drill of the newest
 * snapshot now; with --wait, follow it and exit 0 when it passed, 1 when it
 * failed (with the failing step and its stderr). Like `bysu snapshot --wait`,
 * the wait reads a job when its queue events say something happened.
 */
import { findApp } from '../config/load.ts';
import { toError } from '../errors.ts';
import { connectProducer } from '../queue/connection.ts';
import { enqueueManualDrill } from '../queue/enqueue.ts';
import { JobWatch, readJobWithState } from '../queue/job-watch.ts';
import { DRILL_QUEUE, type DrillJobData } from '../queue/jobs.ts';
import { openQueue } from '../queue/open-queue.ts';
import type { DrillResult } from '../repository/drill-result.ts';
import { requireRepository } from '../repository/marker.ts';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, ExitError, loadCliConfig, requireAppNames, type GlobalOptions } from './context.ts';
import { colourFor, describeWaiting, waitingOf } from './progress.ts';

/** One drill's outcome, as `drill --wait --json` prints it. */
interface DrillOutcome {
  app: string;
  jobId: string;
  ok: boolean;
  /** The snapshot restored, and where. */
  snapshotId: string | null;
  node: string | null;
  attempts: number;
  reason: string | null;
}

export async function drill(globals: GlobalOptions, names: string[], options: { all?: boolean; wait?: boolean; json?: boolean }): Promise<number> {
  const config = loadCliConfig(globals);
  const apps = requireAppNames(config, names, options.all).map((name) => findApp(config, name)).filter((app) => app.drill || !options.all);
  for (const app of apps) if (!app.drill) throw new ExitError(EXIT_USAGE, `app "${app.name}" has no drill configured`);
  await requireRepository(config.repository);
  const connection = await connectProducer(config.redis.url);
  const queue = openQueue(DRILL_QUEUE, connection, config.redis.prefix);
  const say = (line: string) => {
    if (!options.json) console.log(line);
  };
  const paint = colourFor(options.json ? {} : process.stdout);
  let watch: JobWatch | null = null;
  try {
    // Subscribed before anything is enqueued (see snapshot.ts).
    if (options.wait) watch = await JobWatch.open(queue, connection, config.redis.url);
    const pending: { app: string; jobId: string }[] = [];
    const outcomes: DrillOutcome[] = [];
    for (const app of apps) {
      const jobId = await enqueueManualDrill(queue, config, app);
      say(`${app.name}: drill enqueued (job ${jobId})`);
      watch?.follow(jobId);
      pending.push({ app: app.name, jobId });
      outcomes.push({ app: app.name, jobId, ok: false, snapshotId: null, node: null, attempts: 0, reason: null });
    }
    if (!watch) {
      if (options.json) console.log(JSON.stringify(pending, null, 2));
      return EXIT_OK;
    }
    let failures = 0;
    const seenAttempts = new Map<string, number>();
    const lastNote = new Map<string, string>();
    let toRead: Set<string> | 'all' = 'all';
    try {
      while (pending.length > 0) {
        for (const entry of pending.filter((candidate) => toRead === 'all' || toRead.has(candidate.jobId))) {
          const { state, job } = await readJobWithState(queue, entry.jobId);
          const outcome = outcomes.find((candidate) => candidate.jobId === entry.jobId)!;
          // Gone (removed, or its id taken off the queue's lists by hand: state unknown) ends the wait, as in snapshot.ts.
          if (!job || state === 'unknown') {
            pending.splice(pending.indexOf(entry), 1);
            failures += 1;
            outcome.reason = `drill job ${entry.jobId} disappeared from the queue`;
            say(`${entry.app}: ${paint('red', outcome.reason)}`);
            continue;
          }
          outcome.attempts = job.attemptsMade;
          if (state === 'completed' || state === 'failed') {
            pending.splice(pending.indexOf(entry), 1);
            if (state === 'completed') {
              Object.assign(outcome, { ok: true, snapshotId: job.returnvalue.snapshotId, node: job.returnvalue.node });
              say(`${entry.app}: ${paint('green', 'drill passed')}: snapshot ${job.returnvalue.snapshotId} restored and checked on ${job.returnvalue.node}`);
            } else {
              failures += 1;
              outcome.reason = job.failedReason ?? '';
              say(`${entry.app}: ${paint('red', `drill FAILED after ${job.attemptsMade} attempt(s)`)}: ${job.failedReason ?? ''}`);
            }
          } else if (job.attemptsMade > (seenAttempts.get(entry.jobId) ?? 0)) {
            seenAttempts.set(entry.jobId, job.attemptsMade);
            say(`${entry.app}: ${paint('yellow', `drill attempt ${job.attemptsMade} failed, will retry`)}: ${(job.failedReason ?? '').split('\n')[0]}`);
          } else {
            // A drill put back because its node is at its limit says so, once per reason.
            const waiting = state === 'delayed' ? waitingOf(job.progress) : null;
            if (waiting && lastNote.get(entry.jobId) !== waiting.waitingFor) {
              lastNote.set(entry.jobId, waiting.waitingFor);
              say(describeWaiting(entry.app, waiting, Date.now()));
            }
          }
        }
        if (pending.length > 0) toRead = await watch.next();
      }
    } catch (error) {
      const explained = watch.explain(error);
      // Still JSON on stdout for a script: what is known, and for the rest why it is not.
      if (options.json) {
        for (const { jobId } of pending) outcomes.find((outcome) => outcome.jobId === jobId)!.reason = `outcome unknown: ${toError(explained).message}`;
        console.log(JSON.stringify(outcomes, null, 2));
      }
      throw explained;
    }
    if (options.json) console.log(JSON.stringify(outcomes, null, 2));
    return failures === 0 ? EXIT_OK : EXIT_FAILED;
  } finally {
    await watch?.close();
    await queue.close();
    connection.disconnect();
  }
}
