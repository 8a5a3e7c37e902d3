/**
 * `bysu drill <app>... [--wait]`: enqueue a restore drill of the newest
 * snapshot now; with --wait, follow it and exit 0 when it passed, 1 when it
 * failed (with the failing step and its stderr). Like `bysu snapshot --wait`,
 * the wait reads a job when its queue events say something happened.
 */
import { findApp } from '../config/load.ts';
import { connectProducer } from '../queue/connection.ts';
import { enqueueManualDrill } from '../queue/enqueue.ts';
import { JobWatch, readJobWithState } from '../queue/job-watch.ts';
import { DRILL_QUEUE, type DrillJobData } from '../queue/jobs.ts';
import { openQueue } from '../queue/open-queue.ts';
import type { DrillResult } from '../repository/drill-result.ts';
import { requireRepository } from '../repository/marker.ts';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, ExitError, loadCliConfig, requireAppNames, type GlobalOptions } from './context.ts';

export async function drill(globals: GlobalOptions, names: string[], options: { all?: boolean; wait?: boolean }): Promise<number> {
  const config = loadCliConfig(globals);
  const apps = requireAppNames(config, names, options.all).map((name) => findApp(config, name)).filter((app) => app.drill || !options.all);
  for (const app of apps) if (!app.drill) throw new ExitError(EXIT_USAGE, `app "${app.name}" has no drill configured`);
  await requireRepository(config.repository);
  const connection = await connectProducer(config.redis.url);
  const queue = openQueue(DRILL_QUEUE, connection, config.redis.prefix);
  let watch: JobWatch | null = null;
  try {
    // Subscribed before anything is enqueued (see snapshot.ts).
    if (options.wait) watch = await JobWatch.open(queue, connection, config.redis.url);
    const pending: { app: string; jobId: string }[] = [];
    for (const app of apps) {
      const jobId = await enqueueManualDrill(queue, config, app);
      console.log(`${app.name}: drill enqueued (job ${jobId})`);
      watch?.follow(jobId);
      pending.push({ app: app.name, jobId });
    }
    if (!watch) return EXIT_OK;
    let failures = 0;
    const seenAttempts = new Map<string, number>();
    let toRead: Set<string> | 'all' = 'all';
    try {
      while (pending.length > 0) {
        for (const entry of pending.filter((candidate) => toRead === 'all' || toRead.has(candidate.jobId))) {
          const { state, job } = await readJobWithState(queue, entry.jobId);
          // Gone (removed, or its id taken off the queue's lists by hand: state unknown) ends the wait, as in snapshot.ts.
          if (!job || state === 'unknown') {
            pending.splice(pending.indexOf(entry), 1);
            failures += 1;
            console.log(`${entry.app}: drill job ${entry.jobId} disappeared from the queue`);
          } else if (state === 'completed' || state === 'failed') {
            pending.splice(pending.indexOf(entry), 1);
            if (state === 'completed') console.log(`${entry.app}: drill passed: snapshot ${job.returnvalue.snapshotId} restored and checked on ${job.returnvalue.node}`);
            else {
              failures += 1;
              console.log(`${entry.app}: drill FAILED after ${job.attemptsMade} attempt(s): ${job.failedReason ?? ''}`);
            }
          } else if (job.attemptsMade > (seenAttempts.get(entry.jobId) ?? 0)) {
            seenAttempts.set(entry.jobId, job.attemptsMade);
            console.log(`${entry.app}: drill attempt ${job.attemptsMade} failed, will retry: ${(job.failedReason ?? '').split('\n')[0]}`);
          }
        }
        if (pending.length > 0) toRead = await watch.next();
      }
    } catch (error) {
      throw watch.explain(error);
    }
    return failures === 0 ? EXIT_OK : EXIT_FAILED;
  } finally {
    await watch?.close();
    await queue.close();
    connection.disconnect();
  }
}
