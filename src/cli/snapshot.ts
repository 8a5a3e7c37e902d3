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
import { JobWatch } from '../queue/job-watch.ts';
import { SNAPSHOT_QUEUE, type SnapshotJobData, type SnapshotProgress, type SnapshotResult } from '../queue/jobs.ts';
import { openQueue, type TypedQueue } from '../queue/open-queue.ts';
import { requireRepository } from '../repository/marker.ts';
import { readAppSummaries } from '../repository/summary.ts';
import { followJobs, followThenReport } from './follow-jobs.ts';
import { colourFor, describeRunning, describeWaiting, formatClock, formatRate, waitingOf } from './progress.ts';
import { EXIT_FAILED, EXIT_OK, loadCliConfig, requireAppNames, type GlobalOptions } from './context.ts';

interface Followed {
  app: string;
  jobId: string;
  done: boolean;
  ok: boolean;
  attemptsSeen: number;
  lastPart: string;
  /** The last thing said of a queued job (printed again only when it changes). */
  lastNote: string;
  /** Why the job waited, as said so far: each reason is said once, however often the job comes back to it. */
  saidWaiting: Set<string>;
  /** The newest complete snapshot's size before this one, for the estimate. */
  previousBytes: number | null;
  /** What the live line shows of it (a terminal only), from when and what was last read. */
  live: { progress: Partial<SnapshotProgress>; startedAt: number } | { note: string } | null;
  /** What --json prints for it at the end. */
  outcome: SnapshotOutcome;
}

/** One app's outcome, as `snapshot --wait --json` prints it. */
export interface SnapshotOutcome {
  app: string;
  jobId: string;
  ok: boolean;
  snapshot: { id: string; path: string; bytes: number; warnings: string[] } | null;
  attempts: number;
  reason: string | null;
  /** From the start of the last attempt to its end. */
  elapsedMs: number | null;
}

/** How often the live line on a terminal is drawn again (elapsed time, estimate) between events. */
const REDRAW_MS = 1000;
/** How often a job waiting in the queue checks again whether any snapshot worker runs. */
const WORKERS_CHECK_MS = 15_000;

export async function snapshot(globals: GlobalOptions, names: string[], options: { all?: boolean; wait?: boolean; json?: boolean }): Promise<number> {
  const config = loadCliConfig(globals);
  const apps = requireAppNames(config, names, options.all).map((name) => findApp(config, name));
  // Refused here, before anything is enqueued, on the machine that holds the repository (the worker checks again).
  await requireRepository(config.repository);
  const connection = await connectProducer(config.redis.url);
  const queue = openQueue(SNAPSHOT_QUEUE, connection, config.redis.prefix);
  const say = (line: string) => {
    if (!options.json) console.log(line);
  };
  let watch: JobWatch | null = null;
  try {
    // Subscribed before anything is enqueued: the events of a job that ends at once are not missed.
    if (options.wait) watch = await JobWatch.open(queue, connection, config.redis.url);
    const previous = options.wait ? await readAppSummaries(config.repository, apps.map((app) => app.name)) : new Map();
    const followed: Followed[] = [];
    for (const app of apps) {
      const jobId = await enqueueManualSnapshot(queue, config, app);
      say(`${app.name}: enqueued (job ${jobId})`);
      watch?.follow(jobId);
      const summary = previous.get(app.name);
      followed.push({
        app: app.name, jobId, done: false, ok: false, attemptsSeen: 0, lastPart: '', lastNote: '', saidWaiting: new Set(), live: null,
        previousBytes: summary && !(summary instanceof Error) ? summary.snapshots[0]?.bytes ?? null : null,
        outcome: { app: app.name, jobId, ok: false, snapshot: null, attempts: 0, reason: null, elapsedMs: null },
      });
    }
    if (!watch) {
      if (options.json) console.log(JSON.stringify(followed.map(({ app, jobId }) => ({ app, jobId })), null, 2));
      return EXIT_OK;
    }
    const outcomes = followed.map((entry) => entry.outcome);
    await followThenReport(watch, options.json === true, outcomes, (outcome) => !followed.find((entry) => entry.outcome === outcome)!.done, () => follow(queue, watch!, followed, { json: options.json === true }));
    return followed.every((entry) => entry.ok) ? EXIT_OK : EXIT_FAILED;
  } finally {
    await watch?.close();
    await queue.close();
    connection.disconnect();
  }
}

/**
 * Read the jobs, then each again after its events, until each is completed or
 * failed for good, printing what changes (nothing with `json`: the outcomes
 * are printed at the end).
 */
async function follow(queue: TypedQueue<typeof SNAPSHOT_QUEUE>, watch: JobWatch, followed: Followed[], options: { json: boolean }): Promise<void> {
  const tty = process.stdout.isTTY === true && !options.json;
  const paint = colourFor(options.json ? {} : process.stdout);
  let liveLine = false;
  const print = (line: string) => {
    if (options.json) return;
    if (liveLine) process.stdout.write('\r\x1b[2K');
    liveLine = false;
    console.log(line);
  };
  const drawLive = () => {
    const now = Date.now();
    const live = followed.filter((entry) => !entry.done && entry.live !== null).map((entry) => {
      const shown = entry.live!;
      if ('note' in shown) return shown.note;
      const { progress } = shown;
      return describeRunning({ app: entry.app, part: progress.part ?? '', partIndex: progress.partIndex ?? 0, parts: progress.parts ?? 0, bytes: progress.bytes ?? 0, startedAt: shown.startedAt, now, previousBytes: entry.previousBytes });
    });
    if (live.length === 0) return;
    // A terminal of unknown width (0 under script(1) without a size) counts as 120 columns.
    process.stdout.write(`\r\x1b[2K${live.join(' | ').slice(0, (process.stdout.columns || 120) - 1)}`);
    liveLine = true;
  };
  const redraw = tty ? setInterval(drawLive, REDRAW_MS) : undefined;
  let workersCheckedAt = 0;
  let workers = 1;
  try {
    await followJobs(queue, watch, followed, {
      gone: (entry) => {
        entry.done = true;
        entry.outcome.reason = `job ${entry.jobId} disappeared from the queue`;
        print(`${entry.app}: ${paint('red', `job ${entry.jobId} disappeared from the queue`)}`);
      },
      afterRound: () => {
        if (tty) drawLive();
      },
      read: async (entry, state, job) => {
        entry.outcome.attempts = job.attemptsMade;
        const elapsedMs = job.finishedOn && job.processedOn ? job.finishedOn - job.processedOn : null;
        if (state === 'completed') {
          const result = job.returnvalue;
          entry.done = true;
          entry.ok = true;
          Object.assign(entry.outcome, { ok: true, elapsedMs, snapshot: { id: result.id, path: result.path, bytes: result.bytes, warnings: result.warnings } });
          const warnings = result.warnings.length ? `, ${result.warnings.length} warnings` : '';
          const rate = elapsedMs === null ? null : formatRate(result.bytes, elapsedMs);
          const took = elapsedMs === null ? '' : ` in ${formatClock(elapsedMs)}${rate ? ` (${rate})` : ''}`;
          print(`${entry.app}: ${paint('green', 'committed')} ${result.id} (${formatBytes(result.bytes)}${warnings}) at ${result.path}${took}`);
        } else if (state === 'failed') {
          entry.done = true;
          Object.assign(entry.outcome, { elapsedMs, reason: job.failedReason ?? 'unknown reason' });
          // The reason carries the node's stderr: printed with its control characters escaped, never raw to the terminal.
          print(`${entry.app}: ${paint('red', `FAILED after ${job.attemptsMade} attempt(s)`)}: ${escapeControls(job.failedReason ?? 'unknown reason', { keepLineBreaks: true })}`);
        } else {
          if (job.attemptsMade > entry.attemptsSeen) {
            entry.attemptsSeen = job.attemptsMade;
            print(`${entry.app}: ${paint('yellow', `attempt ${job.attemptsMade} of ${job.opts.attempts ?? 1} failed, will retry`)}: ${firstLine(job.failedReason)}`);
          }
          const progress = job.progress as Partial<SnapshotProgress> | number;
          const waiting = state === 'delayed' ? waitingOf(job.progress) : null;
          let note: string | null = null;
          if (waiting) note = describeWaiting(entry.app, waiting, Date.now());
          else if (state === 'waiting' || state === 'prioritized') {
            if (Date.now() - workersCheckedAt > WORKERS_CHECK_MS) {
              workersCheckedAt = Date.now();
              workers = await queue.getWorkersCount();
            }
            if (workers === 0) note = `${entry.app}: queued; no snapshot worker is running (start one: bysu up, or bysu worker snapshot)`;
          }
          if (state === 'active' && typeof progress === 'object' && progress.part) {
            entry.live = { progress, startedAt: job.processedOn ?? Date.now() };
            if (!tty && progress.part !== entry.lastPart) {
              entry.lastPart = progress.part;
              print(`${entry.app}: part ${progress.partIndex}/${progress.parts} ${progress.part}`);
            }
          } else {
            const text = note ?? `${entry.app}: ${state}`;
            entry.live = { note: text };
            // Off a terminal: a busy node's reason once per job (not its countdown, nor at each return to the
            // queue); a queued job's note when it changes.
            if (!tty && waiting !== null) {
              if (!entry.saidWaiting.has(waiting.waitingFor)) print(note!);
              entry.saidWaiting.add(waiting.waitingFor);
            } else {
              if (!tty && note !== null && text !== entry.lastNote) print(note);
              entry.lastNote = text;
            }
          }
        }
        return entry.done;
      },
    });
  } finally {
    clearInterval(redraw);
  }
  if (liveLine) process.stdout.write('\r\x1b[2K');
}

function firstLine(text: string | undefined): string {
  return escapeControls((text ?? 'unknown reason').split('\n')[0]!);
}
