/**
 * /metrics in the Prometheus text format, computed at each scrape from the
 * repository and Redis (a fresh registry each time, so an app that left the
 * config leaves the metrics too): per app the last success, size, duration,
 * failures and state; queue counts by state; the scheduler's heartbeat age;
 * whether Redis answered. While Redis is down it still exports what the
 * repository knows (last success, size, duration) and bysu_redis_up 0.
 * While the repository is missing or unmarked it exports bysu_repository_ok 0
 * and no per-app figures.
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { Counter, Gauge, Registry } from 'prom-client';
import type { Config } from '../config/load.ts';
import { redisKeys } from '../queue/jobs.ts';
import { repositoryProblem } from '../repository/marker.ts';
import { newestSnapshot } from '../repository/read.ts';
import { collectStatus, readSchedulerHeartbeat, type AppStateName } from '../status/app-status.ts';

const STATES: AppStateName[] = ['ok', 'stale', 'failing', 'never', 'orphaned'];
const JOB_STATES = ['waiting', 'active', 'delayed', 'completed', 'failed', 'prioritized'] as const;

/** Given the config, Redis and the queues, return the metrics text and its content type. */
export async function renderMetrics(config: Config, redis: Redis, queues: Queue[]): Promise<{ contentType: string; text: string }> {
  const registry = new Registry();
  const gauge = (name: string, help: string, labelNames: string[] = []) => new Gauge({ name, help, labelNames, registers: [registry] });
  const lastSuccess = gauge('bysu_app_last_success_timestamp_seconds', 'Finish time of the newest complete snapshot (Unix seconds).', ['app']);
  const lastBytes = gauge('bysu_app_last_snapshot_bytes', 'Size of the newest complete snapshot.', ['app']);
  const lastDuration = gauge('bysu_app_last_snapshot_duration_seconds', 'Duration of the newest complete snapshot.', ['app']);
  const staleAfter = gauge('bysu_app_stale_after_seconds', 'Age past which the app counts as stale.', ['app']);
  const state = gauge('bysu_app_state', 'Current state of the app (1 for the state it is in).', ['app', 'state']);
  const failures = new Counter({ name: 'bysu_app_failures_total', help: 'Snapshot jobs that failed for good (after all attempts).', labelNames: ['app'], registers: [registry] });
  const jobs = gauge('bysu_queue_jobs', 'Jobs in the queue by state.', ['queue', 'state']);
  const heartbeatAge = gauge('bysu_scheduler_heartbeat_age_seconds', 'Seconds since a scheduler last wrote its heartbeat (absent: none in the last minute).');
  const up = gauge('bysu_scheduler_up', '1 when a scheduler heartbeat is present.');
  const drillSuccess = gauge('bysu_drill_last_success_timestamp_seconds', 'Finish time of the newest passed restore drill (Unix seconds).', ['app']);
  const drillResult = gauge('bysu_drill_last_result', 'Outcome of the newest restore drill: 1 passed, 0 failed.', ['app']);

  const redisUp = gauge('bysu_redis_up', '1 when Redis answered this scrape; 0 means no snapshot can be scheduled or taken.');
  const answered = await Promise.race([
    redis.ping().then(() => true, () => false),
    new Promise<false>((resolve) => setTimeout(() => resolve(false), 2000).unref()),
  ]);
  redisUp.set(answered ? 1 : 0);
  const repositoryOk = gauge('bysu_repository_ok', '1 when the repository root exists and carries its BYSU marker; 0 means not mounted (no snapshot can be committed).');
  const repositoryDown = (await repositoryProblem(config.repository)) !== null;
  repositoryOk.set(repositoryDown ? 0 : 1);
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
  if (repositoryDown) {
    // Nothing the repository says can be trusted (an empty mount point reads as "no snapshots"): export no app figures.
    if (answered) await exportQueues();
    up.set(answered && (await readSchedulerHeartbeat(redis, config.redis.prefix)) !== null ? 1 : 0);
    return { contentType: registry.contentType, text: await registry.metrics() };
  }
  if (!answered) {
    // Redis is down: still say what the repository knows, so "last success" alerts keep working.
    for (const app of config.apps) {
      const manifest = (await newestSnapshot(config.repository, app.name).catch(() => null))?.manifest;
      setNewest(app.name, manifest ? { finishedAt: manifest.finishedAt, bytes: manifest.bytes, durationMs: Date.parse(manifest.finishedAt) - Date.parse(manifest.startedAt) } : null);
    }
    up.set(0);
    return { contentType: registry.contentType, text: await registry.metrics() };
  }

  const report = await collectStatus(config, redis, queues[0]!);
  const failureCounts = await redis.hgetall(redisKeys.failuresTotal(config.redis.prefix));
  for (const app of report.apps) {
    for (const name of STATES) state.set({ app: app.app, state: name }, app.state === name ? 1 : 0);
    setNewest(app.app, app.newest);
    if (app.staleAfterMs !== null) staleAfter.set({ app: app.app }, app.staleAfterMs / 1000);
    failures.inc({ app: app.app }, Number(failureCounts[app.app] ?? 0));
    if (app.lastDrill) drillResult.set({ app: app.app }, app.lastDrill.passed ? 1 : 0);
    // The last success stays exported while drills fail, so "no passed drill for 8 days" can fire.
    if (app.lastDrillPassedAt) drillSuccess.set({ app: app.app }, Date.parse(app.lastDrillPassedAt) / 1000);
  }
  await exportQueues();
  up.set(report.scheduler ? 1 : 0);
  if (report.scheduler) heartbeatAge.set((Date.parse(report.at) - Date.parse(report.scheduler.at)) / 1000);
  return { contentType: registry.contentType, text: await registry.metrics() };
}
