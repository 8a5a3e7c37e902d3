/**
 * The state of every app, as `bysu status` and the scheduler's stale check
 * see it: the newest complete snapshot from the repository, the last final
 * failure and the next run from Redis, classified as ok, stale, failing,
 * never or orphaned.
 */
import type { Redis } from 'ioredis';
import { NAME_PATTERN } from '../config/formats.ts';
import type { AppConfig, Config } from '../config/load.ts';
import { parseDrillSince, redisKeys, snapshotSchedulerId, type DrillSinceRecord, type FailureRecord, type SNAPSHOT_QUEUE } from '../queue/jobs.ts';
import type { TypedQueue } from '../queue/open-queue.ts';
import { requireRepository } from '../repository/marker.ts';
import { latestDrillResults, listAppDirectories, newestSnapshot } from '../repository/read.ts';
import { drillOverdue, drillOverdueSince, staleThresholdMs } from './stale.ts';

export type AppStateName = 'ok' | 'stale' | 'failing' | 'never' | 'orphaned';

export interface AppStatus {
  app: string;
  node: string | null;
  state: AppStateName;
  newest: { id: string; path: string; finishedAt: string; bytes: number; durationMs: number; warnings: string[] } | null;
  /** Age of the newest snapshot at `now`, ms. */
  ageMs: number | null;
  staleAfterMs: number | null;
  /** Next scheduled run (ms since epoch), from the app's job scheduler; null when it has none. */
  nextRunAt: number | null;
  lastFailure: FailureRecord | null;
  /** When the scheduler first had the app in its config (ISO), if it ever did. */
  firstSeenAt: string | null;
  /** Things wrong beside the state: no job scheduler, an unreadable directory, a failed drill. */
  problems: string[];
  /** The newest restore drill, when the app has a drill and has had one. */
  lastDrill: { snapshotId: string | null; passed: boolean; at: string; node: string; error: string | null } | null;
  /** When the newest passed drill finished. */
  lastDrillPassedAt: string | null;
  /** When the scheduler first saw the app's drill with its current schedule (ISO): an overdue drill counts from here or the newest pass. */
  drillSince: string | null;
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

/**
 * Given what is known of an app, return its state (pure). Failing wins over
 * stale: it says more. An app that never produced a snapshot is stale once it
 * has been configured (firstSeenAt) for longer than staleAfter: the job that
 * never ran at all must not look healthy.
 */
export function classifyApp(input: {
  configured: boolean;
  newestFinishedAt: number | null;
  lastFailureAt: number | null;
  staleAfterMs: number | null;
  now: number;
  firstSeenAt?: number | null;
}): AppStateName {
  if (!input.configured) return 'orphaned';
  if (input.lastFailureAt !== null && (input.newestFinishedAt === null || input.lastFailureAt > input.newestFinishedAt)) return 'failing';
  if (input.newestFinishedAt === null) {
    const since = input.firstSeenAt ?? null;
    return since !== null && input.staleAfterMs !== null && input.now - since > input.staleAfterMs ? 'stale' : 'never';
  }
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

/** What Redis knows of every app, read once per status. */
interface KnownState {
  failures: Map<string, FailureRecord>;
  firstSeen: Record<string, string>;
  drillSince: Map<string, DrillSinceRecord>;
}

/** Given Redis and the prefix, return when the scheduler first saw each app's drill as configured now. */
export async function readDrillSince(redis: Redis, prefix: string): Promise<Map<string, DrillSinceRecord>> {
  const records = new Map<string, DrillSinceRecord>();
  for (const [app, text] of Object.entries(await redis.hgetall(redisKeys.drillSince(prefix)))) {
    const record = parseDrillSince(text); // a malformed record counts as none rather than breaking status
    if (record) records.set(app, record);
  }
  return records;
}

async function statusOf(config: Config, app: AppConfig | null, name: string, known: KnownState, nextRunAt: number | null, now: Date): Promise<AppStatus> {
  const problems: string[] = [];
  const newest = await newestSnapshot(config.repository, name).catch((error: NodeJS.ErrnoException) => {
    problems.push(`cannot read ${config.repository}/${name}: ${error.code ?? error.message}`);
    return null;
  });
  if (app !== null && nextRunAt === null) problems.push('no job scheduler: is a scheduler running with this config (reload it with SIGHUP)?');
  // Drill results count only while the app has a drill configured.
  const drills = app?.drill ? await latestDrillResults(config.repository, name).catch(() => null) : null;
  const drill = drills?.latest ?? null;
  const drillPassed = drills?.latestPassed ?? null;
  if (drill && !drill.passed && app?.drill) problems.push(`drill FAILED ${drill.finishedAt}: ${(drill.error ?? '').split('\n')[0]}`);
  // An overdue drill counts from its newest pass or from when the scheduler first saw the drill, whichever is later.
  const drillSince = app?.drill ? known.drillSince.get(name)?.since ?? null : null;
  if (app?.drill && (drill === null || drill.passed)) {
    const passedAt = drill ? Date.parse(drill.finishedAt) : null;
    const configuredAt = drillSince ? Date.parse(drillSince) : null;
    if (drillOverdue({ schedule: app.drill.schedule, timezone: app.timezone }, passedAt, configuredAt, now)) {
      problems.push(drill && passedAt === drillOverdueSince(passedAt, configuredAt)
        ? `no passed drill since ${drill.finishedAt}: is a drill worker running?`
        : `no drill has passed since the drill was configured (${drillSince}): is a drill worker running?`);
    }
  }
  const manifest = newest?.manifest ?? null;
  const finishedAt = manifest ? Date.parse(manifest.finishedAt) : null;
  const lastFailure = known.failures.get(name) ?? null;
  const firstSeenAt = known.firstSeen[name] ?? null;
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
      firstSeenAt: firstSeenAt ? Date.parse(firstSeenAt) : null,
    }),
    newest: newest && manifest
      ? { id: newest.id, path: newest.path, finishedAt: manifest.finishedAt, bytes: manifest.bytes, durationMs: Date.parse(manifest.finishedAt) - Date.parse(manifest.startedAt), warnings: manifest.warnings }
      : null,
    ageMs: finishedAt === null ? null : now.getTime() - finishedAt,
    staleAfterMs,
    nextRunAt,
    lastFailure,
    firstSeenAt,
    problems,
    lastDrill: drill ? { snapshotId: drill.snapshotId, passed: drill.passed, at: drill.finishedAt, node: drill.node, error: drill.error } : null,
    lastDrillPassedAt: drillPassed?.finishedAt ?? null,
    drillSince,
  };
}

/**
 * Given the config, Redis and the snapshot queue, return the state of every
 * configured app and of every app directory no longer configured (orphaned).
 * Throw RepositoryUnavailableError when the root is missing or unmarked.
 */
export async function collectStatus(config: Config, redis: Redis, snapshotQueue: TypedQueue<typeof SNAPSHOT_QUEUE>, now = new Date()): Promise<StatusReport> {
  // A repository that is not there or not marked (not mounted) must not read as "no snapshots yet".
  await requireRepository(config.repository);
  const known = {
    failures: await readFailures(redis, config.redis.prefix),
    firstSeen: await redis.hgetall(redisKeys.appFirstSeen(config.redis.prefix)),
    drillSince: await readDrillSince(redis, config.redis.prefix),
  };
  const apps: AppStatus[] = [];
  for (const app of config.apps) {
    const scheduler = await snapshotQueue.getJobScheduler(snapshotSchedulerId(app.name));
    apps.push(await statusOf(config, app, app.name, known, scheduler?.next ?? null, now));
  }
  for (const name of await listAppDirectories(config.repository)) {
    // Only directories named like an app (not lost+found), holding snapshots, are orphaned apps.
    if (!NAME_PATTERN.test(name) || config.apps.some((app) => app.name === name)) continue;
    const orphan = await statusOf(config, null, name, known, null, now);
    if (orphan.newest !== null) apps.push(orphan);
  }
  return { at: now.toISOString(), apps, scheduler: await readSchedulerHeartbeat(redis, config.redis.prefix) };
}
