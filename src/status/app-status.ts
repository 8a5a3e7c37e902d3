/**
 * The state of every app, as `bysu status` and the scheduler's stale check
 * see it: the newest complete snapshot from the repository, the last final
 * failure and the next run from Redis, classified as ok, stale, failing,
 * never or orphaned.
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { AppConfig, Config } from '../config/load.ts';
import { redisKeys, snapshotSchedulerId, type FailureRecord } from '../queue/jobs.ts';
import { listAppDirectories, newestSnapshot } from '../repository/read.ts';
import { staleThresholdMs } from './stale.ts';

export type AppStateName = 'ok' | 'stale' | 'failing' | 'never' | 'orphaned';

export interface AppStatus {
  app: string;
  node: string | null;
  state: AppStateName;
  newest: { id: string; path: string; finishedAt: string; bytes: number; durationMs: number; warnings: string[] } | null;
  /** Age of the newest snapshot at `now`, ms. */
  ageMs: number | null;
  staleAfterMs: number | null;
  /** Next scheduled run (ms since epoch), from the app's job scheduler. */
  nextRunAt: number | null;
  lastFailure: FailureRecord | null;
}

export interface SchedulerHeartbeat {
  at: string;
  host: string;
  pid: number;
}

export interface StatusReport {
  at: string;
  apps: AppStatus[];
  /** Null when no scheduler has written a heartbeat lately. */
  scheduler: SchedulerHeartbeat | null;
}

/** Given what is known of an app, return its state (pure). Failing wins over stale: it says more. */
export function classifyApp(input: { configured: boolean; newestFinishedAt: number | null; lastFailureAt: number | null; staleAfterMs: number | null; now: number }): AppStateName {
  if (!input.configured) return 'orphaned';
  if (input.lastFailureAt !== null && (input.newestFinishedAt === null || input.lastFailureAt > input.newestFinishedAt)) return 'failing';
  if (input.newestFinishedAt === null) return 'never';
  if (input.staleAfterMs !== null && input.now - input.newestFinishedAt > input.staleAfterMs) return 'stale';
  return 'ok';
}

/** Given Redis and the prefix, return every app's last final failure. */
export async function readFailures(redis: Redis, prefix: string): Promise<Map<string, FailureRecord>> {
  const raw = await redis.hgetall(redisKeys.lastFailure(prefix));
  const failures = new Map<string, FailureRecord>();
  for (const [app, text] of Object.entries(raw)) {
    try {
      failures.set(app, JSON.parse(text) as FailureRecord);
    } catch {
      // a malformed record is ignored rather than breaking status
    }
  }
  return failures;
}

/** Given Redis and the prefix, return the scheduler's heartbeat, or null. */
export async function readSchedulerHeartbeat(redis: Redis, prefix: string): Promise<SchedulerHeartbeat | null> {
  const text = await redis.get(redisKeys.schedulerHeartbeat(prefix));
  if (text === null) return null;
  try {
    return JSON.parse(text) as SchedulerHeartbeat;
  } catch {
    return null;
  }
}

async function statusOf(config: Config, app: AppConfig | null, name: string, failures: Map<string, FailureRecord>, nextRunAt: number | null, now: Date): Promise<AppStatus> {
  const newest = await newestSnapshot(config.repository, name);
  const manifest = newest?.manifest ?? null;
  const finishedAt = manifest ? Date.parse(manifest.finishedAt) : null;
  const lastFailure = failures.get(name) ?? null;
  const staleAfterMs = app ? staleThresholdMs(app, now) : null;
  return {
    app: name,
    node: app?.node ?? manifest?.node ?? null,
    state: classifyApp({
      configured: app !== null,
      newestFinishedAt: finishedAt,
      lastFailureAt: lastFailure ? Date.parse(lastFailure.at) : null,
      staleAfterMs,
      now: now.getTime(),
    }),
    newest: newest && manifest
      ? { id: newest.id, path: newest.path, finishedAt: manifest.finishedAt, bytes: manifest.bytes, durationMs: Date.parse(manifest.finishedAt) - Date.parse(manifest.startedAt), warnings: manifest.warnings }
      : null,
    ageMs: finishedAt === null ? null : now.getTime() - finishedAt,
    staleAfterMs,
    nextRunAt,
    lastFailure,
  };
}

/**
 * Given the config, Redis and the snapshot queue, return the state of every
 * configured app and of every app directory no longer configured (orphaned).
 */
export async function collectStatus(config: Config, redis: Redis, snapshotQueue: Queue, now = new Date()): Promise<StatusReport> {
  const failures = await readFailures(redis, config.redis.prefix);
  const apps: AppStatus[] = [];
  for (const app of config.apps) {
    const scheduler = await snapshotQueue.getJobScheduler(snapshotSchedulerId(app.name));
    apps.push(await statusOf(config, app, app.name, failures, scheduler?.next ?? null, now));
  }
  for (const name of await listAppDirectories(config.repository)) {
    if (config.apps.some((app) => app.name === name)) continue;
    // A directory of the repository is an orphaned app only if it holds snapshots.
    const orphan = await statusOf(config, null, name, failures, null, now);
    if (orphan.newest !== null) apps.push(orphan);
  }
  return { at: now.toISOString(), apps, scheduler: await readSchedulerHeartbeat(redis, config.redis.prefix) };
}
