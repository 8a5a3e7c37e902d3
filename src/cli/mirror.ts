/**
 * `bysu mirror [<name>...] [--all] [--wait]`: enqueue a run of each named
 * mirror now (what its source has and this repository lacks is copied); with
 * --wait, follow the runs and exit 0 when each copied everything, 1 when one
 * failed (naming the apps and files). The wait reads a job when its queue
 * events say something happened, as `bysu drill --wait` does.
 */
import { connectProducer } from '../queue/connection.ts';
import { mirrorJobOptions } from '../queue/enqueue.ts';
import { JobWatch } from '../queue/job-watch.ts';
import { manualMirrorJobId, MIRROR_JOB, MIRROR_QUEUE, type MirrorJobResult } from '../queue/jobs.ts';
import { openQueue } from '../queue/open-queue.ts';
import { requireRepository } from '../repository/marker.ts';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, ExitError, loadCliConfig, type GlobalOptions } from './context.ts';
import { followJobs, followThenReport } from './follow-jobs.ts';
import { colourFor } from './progress.ts';

interface MirrorOutcome {
  mirror: string;
  jobId: string;
  ok: boolean;
  attempts: number;
  result: MirrorJobResult | null;
  reason: string | null;
}

export async function mirror(globals: GlobalOptions, names: string[], options: { all?: boolean; wait?: boolean; json?: boolean }): Promise<number> {
  const config = loadCliConfig(globals);
  const configured = config.mirrors.map((each) => each.name);
  if (options.all) names = configured;
  if (names.length === 0) throw new ExitError(EXIT_USAGE, `name a mirror, or --all (configured: ${configured.join(', ') || 'none; add mirrors: to the config'})`);
  for (const name of names) if (!configured.includes(name)) throw new ExitError(EXIT_USAGE, `unknown mirror "${name}" (configured: ${configured.join(', ') || 'none'})`);
  await requireRepository(config.repository);
  const connection = await connectProducer(config.redis.url);
  const queue = openQueue(MIRROR_QUEUE, connection, config.redis.prefix);
  const say = (line: string) => {
    if (!options.json) console.log(line);
  };
  const paint = colourFor(options.json ? {} : process.stdout);
  let watch: JobWatch | null = null;
  try {
    if (options.wait) watch = await JobWatch.open(queue, connection, config.redis.url);
    const outcomes: MirrorOutcome[] = [];
    for (const name of names) {
      const jobId = manualMirrorJobId(name, new Date());
      await queue.add(MIRROR_JOB, { mirror: name, trigger: 'manual' }, { ...mirrorJobOptions(config.mirrors.find((each) => each.name === name)!), jobId });
      say(`${name}: mirror run enqueued (job ${jobId})`);
      watch?.follow(jobId);
      outcomes.push({ mirror: name, jobId, ok: false, attempts: 0, result: null, reason: null });
    }
    if (!watch) {
      if (options.json) console.log(JSON.stringify(outcomes.map(({ mirror: name, jobId }) => ({ mirror: name, jobId })), null, 2));
      return EXIT_OK;
    }
    const seenAttempts = new Map<string, number>();
    await followThenReport(watch, options.json === true, outcomes, (outcome) => outcome.reason === null && !outcome.ok, () => followJobs(queue, watch!, outcomes, {
      gone: (outcome) => {
        outcome.reason = `mirror job ${outcome.jobId} disappeared from the queue`;
        say(`${outcome.mirror}: ${paint('red', outcome.reason)}`);
      },
      read: (outcome, state, job) => {
        outcome.attempts = job.attemptsMade;
        if (state === 'completed') {
          outcome.ok = true;
          outcome.result = job.returnvalue;
          const result = job.returnvalue;
          if (result.skipped) say(`${outcome.mirror}: ${paint('yellow', `nothing done: ${result.skipped}`)}`);
          for (const app of result.apps) {
            say(`${outcome.mirror}: ${app.app}: ${paint('green', `${app.copied.length} snapshot(s) copied`)}${app.copied.length > 0 ? ` (${app.copied.join(', ')}; ${app.received} bytes received${app.resumed > 0 ? `, ${app.resumed} kept from an interrupted run` : ''})` : ''}${app.deleted.length > 0 ? `, ${app.deleted.length} deleted by retention here` : ''}`);
          }
          return true;
        }
        if (state === 'failed') {
          outcome.reason = job.failedReason ?? '';
          say(`${outcome.mirror}: ${paint('red', `mirror run FAILED after ${job.attemptsMade} attempt(s)`)}: ${outcome.reason}`);
          return true;
        }
        if (job.attemptsMade > (seenAttempts.get(outcome.jobId) ?? 0)) {
          seenAttempts.set(outcome.jobId, job.attemptsMade);
          say(`${outcome.mirror}: ${paint('yellow', `attempt ${job.attemptsMade} failed, will retry`)}: ${(job.failedReason ?? '').split('\n')[0]}`);
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
