/**
 * `bysu snapshot <app>...|--all [--wait]`: enqueue snapshots now. With --wait,
 * follow them (live progress on a terminal, plain lines otherwise) and exit 0
 * only when every one committed, 1 when any failed for good.
 */
import { Job } from 'bullmq';
import { formatBytes } from '../config/formats.ts';
import { findApp } from '../config/load.ts';
import { escapeControls } from '../printable.ts';
import { connectProducer } from '../queue/connection.ts';
import { enqueueManualSnapshot } from '../queue/enqueue.ts';
import { SNAPSHOT_QUEUE, type SnapshotJobData, type SnapshotProgress, type SnapshotResult } from '../queue/jobs.ts';
import { openQueue, type TypedQueue } from '../queue/open-queue.ts';
import { requireRepository } from '../repository/marker.ts';
import { EXIT_FAILED, EXIT_OK, loadCliConfig, requireAppNames, type GlobalOptions } from './context.ts';

const POLL_MS = 500;

interface Followed {
  app: string;
  jobId: string;
  done: boolean;
  ok: boolean;
  attemptsSeen: number;
  lastPart: string;
}

export async function snapshot(globals: GlobalOptions, names: string[], options: { all?: boolean; wait?: boolean }): Promise<number> {
  const config = loadCliConfig(globals);
  const apps = requireAppNames(config, names, options.all).map((name) => findApp(config, name));
  // Refused here, before anything is enqueued, on the machine that holds the repository (the worker checks again).
  await requireRepository(config.repository);
  const connection = await connectProducer(config.redis.url);
  const queue = openQueue(SNAPSHOT_QUEUE, connection, config.redis.prefix);
  try {
    const followed: Followed[] = [];
    for (const app of apps) {
      const jobId = await enqueueManualSnapshot(queue, config, app);
      console.log(`${app.name}: enqueued (job ${jobId})`);
      followed.push({ app: app.name, jobId, done: false, ok: false, attemptsSeen: 0, lastPart: '' });
    }
    if (!options.wait) return EXIT_OK;
    await follow(queue, followed);
    return followed.every((entry) => entry.ok) ? EXIT_OK : EXIT_FAILED;
  } finally {
    await queue.close();
    connection.disconnect();
  }
}

/** Poll the jobs until each is completed or failed for good, printing what changes. */
async function follow(queue: TypedQueue<typeof SNAPSHOT_QUEUE>, followed: Followed[]): Promise<void> {
  const tty = process.stdout.isTTY === true;
  let liveLine = false;
  const print = (line: string) => {
    if (liveLine) process.stdout.write('\r\x1b[2K');
    liveLine = false;
    console.log(line);
  };
  while (followed.some((entry) => !entry.done)) {
    const live: string[] = [];
    for (const entry of followed.filter((candidate) => !candidate.done)) {
      // The state first, then the job: read the other way round, a job that fails in between
      // would show its old data (no reason, no attempt) under its new state.
      const state = await queue.getJobState(entry.jobId);
      const job = await Job.fromId<SnapshotJobData, SnapshotResult>(queue, entry.jobId);
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
        if (tty) live.push(text);
        else if (typeof progress === 'object' && progress.part && progress.part !== entry.lastPart) {
          entry.lastPart = progress.part;
          print(`${entry.app}: part ${progress.partIndex}/${progress.parts} ${progress.part}`);
        }
      }
    }
    if (tty && live.length > 0) {
      process.stdout.write(`\r\x1b[2K${live.join(' | ').slice(0, (process.stdout.columns ?? 120) - 1)}`);
      liveLine = true;
    }
    if (followed.some((entry) => !entry.done)) await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  if (liveLine) process.stdout.write('\r\x1b[2K');
}

function firstLine(text: string | undefined): string {
  return escapeControls((text ?? 'unknown reason').split('\n')[0]!);
}
