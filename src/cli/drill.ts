/**
 * `bysu drill <app>... [--wait]`: enqueue a restore drill of the newest
 * snapshot now; with --wait, follow it and exit 0 when it passed, 1 when it
 * failed (with the failing step and its stderr). Like `bysu snapshot --wait`,
 * the wait reads a job when its queue events say something happened.
 */
import { findApp } from '../config/load.ts';
import { connectProducer } from '../queue/connection.ts';
import { enqueueManualDrill } from '../queue/enqueue.ts';
import { JobWatch } from '../queue/job-watch.ts';
import { DRILL_QUEUE, type DrillJobData } from '../queue/jobs.ts';
import { openQueue } from '../queue/open-queue.ts';
import type { DrillResult } from '../repository/drill-result.ts';
import { requireRepository } from '../repository/marker.ts';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, ExitError, loadCliConfig, requireAppNames, type GlobalOptions } from './context.ts';
import { followJobs, followThenReport } from './follow-jobs.ts';
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
    const enqueued: { app: string; jobId: string }[] = [];
    const outcomes: DrillOutcome[] = [];
    for (const app of apps) {
      const jobId = await enqueueManualDrill(queue, config, app);
      say(`${app.name}: drill enqueued (job ${jobId})`);
      watch?.follow(jobId);
      enqueued.push({ app: app.name, jobId });
      outcomes.push({ app: app.name, jobId, ok: false, snapshotId: null, node: null, attempts: 0, reason: null });
    }
    if (!watch) {
      if (options.json) console.log(JSON.stringify(enqueued, null, 2));
      return EXIT_OK;
    }
    const seenAttempts = new Map<string, number>();
    const lastNote = new Map<string, string>();
    await followThenReport(watch, options.json === true, outcomes, (outcome) => outcome.reason === null && !outcome.ok, () => followJobs(queue, watch!, outcomes, {
      // Gone (removed, or its id taken off the queue's lists by hand: state unknown) ends the wait, as in snapshot.ts.
      gone: (outcome) => {
        outcome.reason = `drill job ${outcome.jobId} disappeared from the queue`;
        say(`${outcome.app}: ${paint('red', outcome.reason)}`);
      },
      read: (outcome, state, job) => {
        outcome.attempts = job.attemptsMade;
        if (state === 'completed') {
          Object.assign(outcome, { ok: true, snapshotId: job.returnvalue.snapshotId, node: job.returnvalue.node });
          say(`${outcome.app}: ${paint('green', 'drill passed')}: snapshot ${job.returnvalue.snapshotId} restored and checked on ${job.returnvalue.node}`);
          return true;
        }
        if (state === 'failed') {
          outcome.reason = job.failedReason ?? '';
          say(`${outcome.app}: ${paint('red', `drill FAILED after ${job.attemptsMade} attempt(s)`)}: ${job.failedReason ?? ''}`);
          return true;
        }
        if (job.attemptsMade > (seenAttempts.get(outcome.jobId) ?? 0)) {
          seenAttempts.set(outcome.jobId, job.attemptsMade);
          say(`${outcome.app}: ${paint('yellow', `drill attempt ${job.attemptsMade} failed, will retry`)}: ${(job.failedReason ?? '').split('\n')[0]}`);
        } else {
          // A drill put back because its node is at its limit says so, once per reason.
          const waiting = state === 'delayed' ? waitingOf(job.progress) : null;
          if (waiting && lastNote.get(outcome.jobId) !== waiting.waitingFor) {
            lastNote.set(outcome.jobId, waiting.waitingFor);
            say(describeWaiting(outcome.app, waiting, Date.now()));
          }
        }
        return false;
      },
    }));
    return outcomes.every((outcome) => outcome.ok) ? EXIT_OK : EXIT_FAILED;
  } finally {
    await watch?.close();
    await queue.close();
    connection.disconnect();
  }
}
