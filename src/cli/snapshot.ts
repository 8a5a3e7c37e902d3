/**
 * `bysu snapshot <app>...|--all [--wait]`: enqueue snapshots now. With --wait,
 * follow them (live progress on a terminal, plain lines otherwise) and exit 0
 * only when every one committed, 1 when any failed for good. The wait reads
 * the jobs when their queue events say something happened (JobWatch), so it
 * ends as soon as the last job does.
 */
import { formatBytes } from '../config/formats.ts';
import { findApp } from '../config/load.ts';
import { escapeControls } from '../printable.ts';
import { connectProducer } from '../queue/connection.ts';
import { enqueueManualSnapshot } from '../queue/enqueue.ts';
import { JobWatch, readJobWithState } from '../queue/job-watch.ts';
import { SNAPSHOT_QUEUE, type SnapshotJobData, type SnapshotProgress, type SnapshotResult } from '../queue/jobs.ts';
import { openQueue, type TypedQueue } from '../queue/open-queue.ts';
import { requireRepository } from '../repository/marker.ts';
import { EXIT_FAILED, EXIT_OK, loadCliConfig, requireAppNames, type GlobalOptions } from './context.ts';

interface Followed {
  app: string;
  jobId: string;
  done: boolean;
  ok: boolean;
  attemptsSeen: number;
  lastPart: string;
  /** What the live line shows of it (a terminal only). */
  live: string;
}

export async function snapshot(globals: GlobalOptions, names: string[], options: { all?: boolean; wait?: boolean }): Promise<number> {
  const config = loadCliConfig(globals);
  const apps = requireAppNames(config, names, options.all).map((name) => findApp(config, name));
  // Refused here, before anything is enqueued, on the machine that holds the repository (the worker checks again).
  await requireRepository(config.repository);
  const connection = await connectProducer(config.redis.url);
  const queue = openQueue(SNAPSHOT_QUEUE, connection, config.redis.prefix);
  let watch: JobWatch | null = null;
  try {
    // Subscribed before anything is enqueued: the events of a job that ends at once are not missed.
    if (options.wait) watch = await JobWatch.open(queue, connection, config.redis.url);
    const followed: Followed[] = [];
    for (const app of apps) {
      const jobId = await enqueueManualSnapshot(queue, config, app);
      console.log(`${app.name}: enqueued (job ${jobId})`);
      watch?.follow(jobId);
      followed.push({ app: app.name, jobId, done: false, ok: false, attemptsSeen: 0, lastPart: '', live: '' });
    }
    if (!watch) return EXIT_OK;
    try {
      await follow(queue, watch, followed);
    } catch (error) {
      throw watch.explain(error);
    }
    return followed.every((entry) => entry.ok) ? EXIT_OK : EXIT_FAILED;
  } finally {
    await watch?.close();
    await queue.close();
    connection.disconnect();
  }
}

/**
 * Read the jobs, then each again after its events, until each is completed or
 * failed for good, printing what changes.
 */
async function follow(queue: TypedQueue<typeof SNAPSHOT_QUEUE>, watch: JobWatch, followed: Followed[]): Promise<void> {
  const tty = process.stdout.isTTY === true;
  let liveLine = false;
  const print = (line: string) => {
    if (liveLine) process.stdout.write('\r\x1b[2K');
    liveLine = false;
    console.log(line);
  };
  // Every job at first (they were followed before this read: what happened before it shows in their state).
  let toRead: Set<string> | 'all' = 'all';
  while (followed.some((entry) => !entry.done)) {
    for (const entry of followed.filter((candidate) => !candidate.done && (toRead === 'all' || toRead.has(candidate.jobId)))) {
      const { state, job } = await readJobWithState(queue, entry.jobId);
      if (!job || state === 'unknown') {
        entry.done = true;
        print(`${entry.app}: job ${entry.jobId} disappeared from the queue`);
        continue;
      }
      if (state === 'completed') {
        const result = job.returnvalue;
        entry.done = true;
        entry.ok = true;
        const warnings = result.warnings.length ? `, ${result.warnings.length} warnings` : '';
        print(`${entry.app}: committed ${result.id} (${formatBytes(result.bytes)}${warnings}) at ${result.path}`);
      } else if (state === 'failed') {
        entry.done = true;
        // The reason carries the node's stderr: printed with its control characters escaped, never raw to the terminal.
        print(`${entry.app}: FAILED after ${job.attemptsMade} attempt(s): ${escapeControls(job.failedReason ?? 'unknown reason', { keepLineBreaks: true })}`);
      } else {
        if (job.attemptsMade > entry.attemptsSeen) {
          entry.attemptsSeen = job.attemptsMade;
          print(`${entry.app}: attempt ${job.attemptsMade} of ${job.opts.attempts ?? 1} failed, will retry: ${firstLine(job.failedReason)}`);
        }
        const progress = job.progress as Partial<SnapshotProgress> | number;
        const text = typeof progress === 'object' && progress.part
          ? `${entry.app}: part ${progress.partIndex}/${progress.parts} ${progress.part} ${formatBytes(progress.partBytes ?? 0)} (total ${formatBytes(progress.bytes ?? 0)})`
          : `${entry.app}: ${state}`;
        if (tty) entry.live = text;
        else if (typeof progress === 'object' && progress.part && progress.part !== entry.lastPart) {
          entry.lastPart = progress.part;
          print(`${entry.app}: part ${progress.partIndex}/${progress.parts} ${progress.part}`);
        }
      }
    }
    const live = followed.filter((entry) => !entry.done && entry.live !== '').map((entry) => entry.live);
    if (tty && live.length > 0) {
      process.stdout.write(`\r\x1b[2K${live.join(' | ').slice(0, (process.stdout.columns ?? 120) - 1)}`);
      liveLine = true;
    }
    // The jobs whose events came meanwhile, at once; else the first to have one (or all after RECHECK_MS).
    if (followed.some((entry) => !entry.done)) toRead = await watch.next();
  }
  if (liveLine) process.stdout.write('\r\x1b[2K');
}

function firstLine(text: string | undefined): string {
  return escapeControls((text ?? 'unknown reason').split('\n')[0]!);
}
