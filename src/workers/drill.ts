/**
 * The drill worker: the restore drill on the node-job skeleton
 * (node-job-worker.ts: slot, abort, hand-back, failures, close). Drills take
 * the same per-node slots as snapshots (a busy drill node delays the job
 * without using an attempt); a failed drill is announced once per change of
 * state, with its own alert state.
 */
import type { LiveConfig } from '../config/live.ts';
import { checkDrillJobData, runDrill } from '../drill/run-drill.ts';
import type { Logger } from '../log.ts';
import { withAppLock } from '../queue/app-lock.ts';
import { DRILL_QUEUE } from '../queue/jobs.ts';
import type { RedisHealth } from '../queue/redis-health.ts';
import { startNodeJobWorker, type RunningNodeJobWorker } from './node-job-worker.ts';

/**
 * Given the live config and a logger, start a drill worker and return it;
 * each drill runs with the config as of its start. `redisHealth` is where
 * Redis errors are reported (`bysu up` shares one per process); by default
 * the worker has its own.
 */
export function startDrillWorker(live: LiveConfig, logger: Logger, options: { redisHealth?: RedisHealth } = {}): Promise<RunningNodeJobWorker<typeof DRILL_QUEUE>> {
  return startNodeJobWorker({ queueName: DRILL_QUEUE, live, logger, check: checkDrillJobData, ...options }, async ({ notifier, connection, prefix }) => ({
    async run(job, { config, connect, signal, log }) {
      const data = job.data;
      log.info({ steps: data.steps.length, drill: true }, 'drill started');
      const result = await runDrill(data, {
        jobId: String(job.id), repository: config.repository, ...connect, logger: log, signal,
        lockApp: (fn) => withAppLock(connection, prefix, data.app, fn),
      });
      log.info({ snapshot: result.snapshotId, drill: true }, 'drill passed');
      await notifier.report({ event: 'drill-recovered', app: data.app, node: data.node.name, at: result.finishedAt, lastSnapshot: null }).catch(() => undefined);
      return result;
    },
    async failedForGood(job, reason) {
      notifier.ping(job.data.app, job.data.ping, false);
      await notifier.report({ event: 'drill-failed', app: job.data.app, node: job.data.node?.name, at: new Date().toISOString(), reason });
    },
  }));
}
