/**
 * /metrics in the Prometheus text format, from the repository and Redis: per
 * app the last success, size, duration, failures, state, damaged snapshots
 * and last verification; queue counts by
 * state; the scheduler's heartbeat age; whether Redis answered and whether
 * the repository is there.
 *
 * The figures are computed once for all the scrapes that arrive together and
 * kept KEEP_RESULTS_MS, into a fresh registry each time (so an app that left
 * the config leaves the metrics too). A scrape never waits longer than
 * METRICS_BOUND_MS (less when the scraper says its own timeout is shorter):
 * past it, it gets the last complete figures with bysu_metrics_stale 1 while
 * the computation goes on and serves the next scrape; with none yet, only
 * bysu_redis_up, bysu_repository_ok and bysu_metrics_stale 1.
 *
 * bysu_redis_up and bysu_repository_ok are checked at every scrape, and the
 * figures are computed again when either changed: while Redis is down the
 * page exports what the repository knows (last success, size, duration,
 * damaged snapshots);
 * while the repository is missing or unmarked it exports no per-app figures.
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { Counter, Gauge, Registry } from 'prom-client';
import type { Config } from '../config/load.ts';
import { toError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { redisKeys } from '../queue/jobs.ts';
import { repositoryProblem } from '../repository/marker.ts';
import { readAppSummaries } from '../repository/summary.ts';
import { damagedSnapshots, readSchedulerHeartbeat, type AppStateName, type StatusReport } from '../status/app-status.ts';
import { SharedComputation, type Computed } from './shared-computation.ts';

/** The longest a /metrics answer takes: well inside Prometheus' default scrape_timeout of 10 s. */
export const METRICS_BOUND_MS = 5000;
/** How long a scrape (and /healthz) waits for Redis to answer PING. */
export const PING_TIMEOUT_MS = 2000;
/** Left for writing the answer when the scraper's own timeout (X-Prometheus-Scrape-Timeout-Seconds) sets the bound. */
const SCRAPE_MARGIN_MS = 500;
/** The shortest bound a scraper's timeout can ask for. */
const MIN_BOUND_MS = 250;

const STATES: AppStateName[] = ['ok', 'stale', 'failing', 'corrupt', 'never', 'orphaned'];
const JOB_STATES = ['waiting', 'active', 'delayed', 'completed', 'failed', 'prioritized'] as const;

/** What a scrape checks itself, and what its figures were computed with. */
interface MetricsKey {
  config: Config;
  redisUp: boolean;
  repositoryOk: boolean;
}

/** Given Redis and a time, resolve true when it answers PING within it, else false. */
export function redisAnswers(redis: Redis, timeoutMs: number): Promise<boolean> {
  return Promise.race([
    redis.ping().then(() => true, () => false),
    new Promise<false>((resolve) => setTimeout(() => resolve(false), timeoutMs).unref()),
  ]);
}

/**
 * Given the X-Prometheus-Scrape-Timeout-Seconds header (or none), return how
 * long /metrics may take: METRICS_BOUND_MS, or the scraper's timeout less a
 * margin when that is shorter.
 */
export function metricsBoundMs(scrapeTimeoutSeconds: string | undefined): number {
  const seconds = Number(scrapeTimeoutSeconds);
  if (!scrapeTimeoutSeconds || !Number.isFinite(seconds) || seconds <= 0) return METRICS_BOUND_MS;
  return Math.min(METRICS_BOUND_MS, Math.max(MIN_BOUND_MS, seconds * 1000 - SCRAPE_MARGIN_MS));
}

/** Given the liveness and freshness of an answer, return those gauges as text. */
async function answerGauges(key: Omit<MetricsKey, 'config'>, stale: boolean, ageSeconds: number | null): Promise<string> {
  const registry = new Registry();
  const gauge = (name: string, help: string, value: number) => new Gauge({ name, help, registers: [registry] }).set(value);
  gauge('bysu_redis_up', '1 when Redis answered this scrape; 0 means no snapshot can be scheduled or taken.', key.redisUp ? 1 : 0);
  gauge('bysu_repository_ok', '1 when the repository root exists and carries its BYSU marker; 0 means not mounted (no snapshot can be committed).', key.repositoryOk ? 1 : 0);
  gauge('bysu_metrics_stale', `1 when the figures could not be computed within the scrape's bound (${METRICS_BOUND_MS / 1000} s at most) and are the last complete ones, or absent.`, stale ? 1 : 0);
  if (ageSeconds !== null) gauge('bysu_metrics_age_seconds', 'Seconds since the figures in this answer were read.', ageSeconds);
  return registry.metrics();
}

/**
 * Given the key, Redis, the queues and the shared app states, compute every
 * figure but the liveness and freshness gauges, as Prometheus text, and when
 * they were read.
 */
async function computeFigures(key: MetricsKey, redis: Redis, queues: Queue[], status: SharedComputation<Config, StatusReport>): Promise<Computed<string>> {
  const { config } = key;
  const registry = new Registry();
  const gauge = (name: string, help: string, labelNames: string[] = []) => new Gauge({ name, help, labelNames, registers: [registry] });
  const lastSuccess = gauge('bysu_app_last_success_timestamp_seconds', 'Finish time of the newest complete snapshot (Unix seconds).', ['app']);
  const lastBytes = gauge('bysu_app_last_snapshot_bytes', 'Size of the newest complete snapshot.', ['app']);
  const lastDuration = gauge('bysu_app_last_snapshot_duration_seconds', 'Duration of the newest complete snapshot.', ['app']);
  const staleAfter = gauge('bysu_app_stale_after_seconds', 'Age past which the app counts as stale.', ['app']);
  const state = gauge('bysu_app_state', 'Current state of the app (1 for the state it is in).', ['app', 'state']);
  const failures = new Counter({ name: 'bysu_app_failures_total', help: 'Snapshot jobs that failed for good (after all attempts).', labelNames: ['app'], registers: [registry] });
  const jobs = gauge('bysu_queue_jobs', 'Jobs in the queue by state.', ['queue', 'state']);
  const up = gauge('bysu_scheduler_up', '1 when a scheduler heartbeat is present.');
  const drillSuccess = gauge('bysu_drill_last_success_timestamp_seconds', 'Finish time of the newest passed restore drill (Unix seconds).', ['app']);
  const drillResult = gauge('bysu_drill_last_result', 'Outcome of the newest restore drill: 1 passed, 0 failed.', ['app']);
  const damaged = gauge('bysu_app_damaged_snapshots', 'Kept snapshots that their last verification found damaged (a file that does not match SHA256SUMS or the manifest, or is missing).', ['app']);
  const mirrorLag = gauge('bysu_mirror_lag_seconds', 'For an app copied by a mirror: how long the oldest source snapshot not yet copied here has waited (0: up to date).', ['app', 'source']);
  const mirrorBehind = gauge('bysu_mirror_behind_snapshots', 'For an app copied by a mirror: the source\'s snapshots newer than the newest copy here.', ['app', 'source']);
  const lastVerify = gauge('bysu_app_last_verify_timestamp_seconds', 'When the app\'s verification record was last written (Unix seconds): the end of a verification, or when one found damage.', ['app']);

  const exportQueues = async () => {
    for (const queue of queues) {
      const counts = await queue.getJobCounts(...JOB_STATES);
      for (const name of JOB_STATES) jobs.set({ queue: queue.name, state: name }, counts[name] ?? 0);
    }
  };
  const setNewest = (app: string, newest: { finishedAt: string; bytes: number; durationMs: number } | null) => {
    if (!newest) return;
    lastSuccess.set({ app }, Date.parse(newest.finishedAt) / 1000);
    lastBytes.set({ app }, newest.bytes);
    lastDuration.set({ app }, newest.durationMs / 1000);
  };
  const setVerify = (app: string, verify: { at: string; failed: unknown[] } | null) => {
    damaged.set({ app }, verify?.failed.length ?? 0);
    if (verify) lastVerify.set({ app }, Date.parse(verify.at) / 1000);
  };
  if (!key.repositoryOk) {
    // Nothing the repository says can be trusted (an empty mount point reads as "no snapshots"): export no app figures.
    if (key.redisUp) await exportQueues();
    up.set(key.redisUp && (await readSchedulerHeartbeat(redis, config.redis.prefix)) !== null ? 1 : 0);
    return { value: await registry.metrics(), at: Date.now() };
  }
  if (!key.redisUp) {
    // Redis is down: still say what the repository knows, so "last success" alerts keep working.
    const summaries = await readAppSummaries(config.repository, config.apps.map((app) => app.name));
    for (const [app, summary] of summaries) {
      if (summary instanceof Error) continue;
      const newest = summary.snapshots[0] ?? null;
      setNewest(app, newest ? { finishedAt: newest.finishedAt, bytes: newest.bytes, durationMs: Date.parse(newest.finishedAt) - Date.parse(newest.startedAt) } : null);
      setVerify(app, summary.lastVerify ? { at: summary.lastVerify.at, failed: damagedSnapshots(summary) } : null);
    }
    up.set(0);
    return { value: await registry.metrics(), at: Date.now() };
  }

  // The apps' states are shared with /api/apps: figures are as old as the states they were built from.
  const { value: report, at } = await status.get(config);
  const failureCounts = await redis.hgetall(redisKeys.failuresTotal(config.redis.prefix));
  for (const app of report.apps) {
    for (const name of STATES) state.set({ app: app.app, state: name }, app.state === name ? 1 : 0);
    setNewest(app.app, app.newest);
    if (app.staleAfterMs !== null) staleAfter.set({ app: app.app }, app.staleAfterMs / 1000);
    failures.inc({ app: app.app }, Number(failureCounts[app.app] ?? 0));
    if (app.lastDrill) drillResult.set({ app: app.app }, app.lastDrill.passed ? 1 : 0);
    // The last success stays exported while drills fail, so "no passed drill for 8 days" can fire.
    if (app.lastDrillPassedAt) drillSuccess.set({ app: app.app }, Date.parse(app.lastDrillPassedAt) / 1000);
    setVerify(app.app, app.lastVerify);
    if (app.mirror) {
      mirrorLag.set({ app: app.app, source: app.mirror.source }, app.mirror.lagMs / 1000);
      mirrorBehind.set({ app: app.app, source: app.mirror.source }, app.mirror.behind);
    }
  }
  await exportQueues();
  up.set(report.scheduler ? 1 : 0);
  // Registered only with a heartbeat: prom-client would export an unset gauge as 0, "a heartbeat just now".
  if (report.scheduler) gauge('bysu_scheduler_heartbeat_age_seconds', 'Seconds since a scheduler last wrote its heartbeat (absent: none in the last minute).').set((Date.parse(report.at) - Date.parse(report.scheduler.at)) / 1000);
  return { value: await registry.metrics(), at };
}

/** The /metrics page of one dashboard: its figures shared by the scrapes that arrive together. */
export class MetricsPage {
  private readonly figures: SharedComputation<MetricsKey, string>;

  /**
   * Given Redis, the queues to count, the app states shared with /api/apps
   * and a logger (a computation that fails or outlasts the bound is logged
   * once, not at every scrape), keep the page.
   */
  constructor(private readonly redis: Redis, queues: Queue[], status: SharedComputation<Config, StatusReport>, logger: Logger) {
    this.figures = new SharedComputation(
      async (key) => {
        const started = Date.now();
        try {
          return await computeFigures(key, redis, queues, status);
        } catch (error) {
          logger.warn({ err: toError(error).message }, 'the metrics could not be computed: scrapes get the last figures with bysu_metrics_stale 1');
          throw error;
        } finally {
          const tookMs = Date.now() - started;
          if (tookMs > METRICS_BOUND_MS) {
            logger.warn({ tookMs }, `computing the metrics took longer than the ${METRICS_BOUND_MS / 1000} s bound of /metrics: scrapes meanwhile got the last figures with bysu_metrics_stale 1`);
          }
        }
      },
      { sameKey: (a, b) => a.config === b.config && a.redisUp === b.redisUp && a.repositoryOk === b.repositoryOk },
    );
  }

  /**
   * Given the config as of the scrape and its bound (metricsBoundMs), return
   * the page within the bound: fresh figures (bysu_metrics_stale 0), or the
   * last complete ones computed with this config (stale 1), or none (stale 1).
   */
  async answer(config: Config, boundMs: number): Promise<{ contentType: string; text: string }> {
    const deadline = Date.now() + boundMs;
    const byDeadline = <T>(promise: Promise<T>, fallback: T): Promise<T> => Promise.race([
      promise,
      new Promise<T>((resolve) => setTimeout(() => resolve(fallback), Math.max(0, deadline - Date.now())).unref()),
    ]);
    // Checked at each scrape (cheap): a change of either is news the figures must not hide for KEEP_RESULTS_MS.
    const [redisUp, repositoryOk] = await Promise.all([
      redisAnswers(this.redis, Math.min(PING_TIMEOUT_MS, boundMs)),
      byDeadline(repositoryProblem(config.repository).then((problem) => problem === null, () => false), false),
    ]);
    const key = { config, redisUp, repositoryOk };
    const fresh = await byDeadline(this.figures.get(key).catch(() => null), null);
    // Stale figures are the last ones computed with this config, never with a config a reload replaced.
    const figures = fresh ?? this.figures.latest((computed) => computed.config === config);
    const ageSeconds = figures ? Math.max(0, Date.now() - figures.at) / 1000 : null;
    const text = [figures?.value, await answerGauges(key, fresh === null, ageSeconds)].filter((part) => part !== undefined).join('\n');
    return { contentType: Registry.PROMETHEUS_CONTENT_TYPE, text };
  }
}
