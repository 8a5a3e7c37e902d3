/**
 * The state of every app, as `bysu status` and the scheduler's stale check
 * see it: the newest complete snapshot, the last verification and drill from
 * the app's summary in the repository, the last final failure from Redis (or
 * the repository, whichever is newer) and the next run from Redis, classified
 * as ok, stale, failing, corrupt, never or orphaned. A call reads one summary per app
 * and makes a fixed number of Redis round trips, however many apps there are.
 * Without Redis (`bysu status` while it is down) it reports what the
 * repository alone knows, and says that Redis was unreachable.
 */
import path from 'node:path';
import type { Redis } from 'ioredis';
import { formatDuration, NAME_PATTERN } from '../config/formats.ts';
import type { AppConfig, Config } from '../config/load.ts';
import type { Logger } from '../log.ts';
import { mirrorKey, parseDrillSince, redisKeys, SNAPSHOT_QUEUE, SNAPSHOT_SCHEDULER_PREFIX, type DrillSinceRecord } from '../queue/jobs.ts';
import { appDirectory, compareSnapshotIds } from '../repository/layout.ts';
import { readMirrorContact, readMirrorRecord, type MirrorContact, type MirrorRecord } from '../mirror/record.ts';
import { requireRepository } from '../repository/marker.ts';
import { listAppDirectories, NO_MANIFEST_PROBLEM } from '../repository/read.ts';
import type { FailureRecord } from '../repository/records.ts';
import { readAppSummaries, type AppSummary } from '../repository/summary.ts';
import { drillOverdue, drillOverdueSince, staleThresholdMs } from './stale.ts';

export type AppStateName = 'ok' | 'stale' | 'failing' | 'corrupt' | 'never' | 'orphaned';

export interface AppStatus {
  app: string;
  node: string | null;
  state: AppStateName;
  newest: { id: string; path: string; finishedAt: string; bytes: number; durationMs: number; warnings: string[] } | null;
  /** Sizes of the complete snapshots kept, newest first (a shrink shows at a glance). */
  keptBytes: number[];
  /** Age of the newest snapshot at `now`, ms. */
  ageMs: number | null;
  staleAfterMs: number | null;
  /** Next scheduled run (ms since epoch), from the app's job scheduler; null when it has none. */
  nextRunAt: number | null;
  lastFailure: FailureRecord | null;
  /** When the scheduler first had the app in its config (ISO), if it ever did. */
  firstSeenAt: string | null;
  /** Things wrong beside the state: no job scheduler, an unreadable directory, a failed drill, a damaged snapshot (naming the file). */
  problems: string[];
  /** The newest restore drill, when the app has a drill and has had one. */
  lastDrill: { snapshotId: string | null; passed: boolean; at: string; node: string; error: string | null } | null;
  /** When the newest passed drill finished. */
  lastDrillPassedAt: string | null;
  /** When the scheduler first saw the app's drill with its current schedule (ISO): an overdue drill counts from here or the newest pass. */
  drillSince: string | null;
  /** The app's verifications (`bysu verify`, the verify worker): when the record was last written, how many kept snapshots it judges, and those it found damaged that are still kept. */
  lastVerify: { at: string; snapshots: number; failed: DamagedSnapshot[] } | null;
  /** Set for an app copied from another BYSU by a mirror (mirrors[] in the config): how far behind its source it is. */
  mirror: MirrorLag | null;
}

/** How far a mirrored app is behind its source, from its `.mirror.json` (see src/mirror/run-mirror.ts). */
export interface MirrorLag {
  source: string;
  url: string;
  /** When the source last listed the app's snapshots to the mirror (null: never). */
  checkedAt: string | null;
  /** The source's snapshots newer than the newest copy here, and how long the oldest of them has waited (0: none waits). */
  behind: number;
  lagMs: number;
  /** How long since the source last answered for this app; never listed yet, since this side first had the mirror (null: not known). */
  unreachableMs: number | null;
  maxLagMs: number;
  /** The last run's failure for this app, if it had one. */
  lastError: { at: string; reason: string; local?: boolean } | null;
}

/**
 * Given a mirror's record of an app (or null), the id of the newest copy
 * here, the mirror's maxLag, now, and when this side first had the mirror
 * (ms, or null), return how far behind the app is and whether that makes it
 * stale: a source snapshot has waited longer than maxLag to be copied, or the
 * source has not listed the app for longer than that (never, counted from
 * when this side first had the mirror: an app named in mirrors[].apps that
 * the source does not have).
 */
export function mirrorLag(record: MirrorRecord | null, mirror: { name: string; url: string; maxLagMs: number }, newestHere: string | null, now: number, firstHad: number | null = null): { lag: MirrorLag; stale: boolean } {
  const waiting = (record?.sourceSnapshots ?? []).filter((snapshot) => newestHere === null || compareSnapshotIds(snapshot.id, newestHere) > 0);
  const oldestWaiting = waiting.reduce<number | null>((oldest, snapshot) => {
    const at = Date.parse(snapshot.finishedAt);
    return Number.isNaN(at) ? oldest : Math.min(oldest ?? at, at);
  }, null);
  const lagMs = oldestWaiting === null ? 0 : Math.max(0, now - oldestWaiting);
  const unreachableMs = record !== null ? Math.max(0, now - Date.parse(record.checkedAt)) : firstHad === null ? null : Math.max(0, now - firstHad);
  const lag: MirrorLag = {
    source: mirror.name,
    url: mirror.url,
    checkedAt: record?.checkedAt ?? null,
    behind: waiting.length,
    lagMs,
    unreachableMs,
    maxLagMs: mirror.maxLagMs,
    lastError: record?.lastError ?? null,
  };
  return { lag, stale: lagMs > mirror.maxLagMs || (unreachableMs !== null && unreachableMs > mirror.maxLagMs) };
}

/** A kept snapshot that its last verification found damaged: what is wrong (each problem names the file) and when it was read. */
export interface DamagedSnapshot {
  id: string;
  problems: string[];
  at: string;
}

export interface SchedulerHeartbeat {
  at: string;
  host: string;
  pid: number;
}

/** Whether a mirror's source answers at all (mirrors[] in the config). */
export interface MirrorSourceStatus {
  name: string;
  url: string;
  /** When the source last answered a run, the last run's failure to reach it, and how long it has not answered (counted from when the scheduler first had the mirror, before any answer). */
  lastContactAt: string | null;
  lastError: { at: string; reason: string } | null;
  unreachableMs: number | null;
  maxLagMs: number;
  /** Unreachable for longer than maxLag. */
  stale: boolean;
}

export interface StatusReport {
  at: string;
  apps: AppStatus[];
  /** The configured mirrors' sources (none without mirrors). */
  mirrors: MirrorSourceStatus[];
  /** Null when no scheduler has written a heartbeat lately (or Redis was unreachable). */
  scheduler: SchedulerHeartbeat | null;
  /**
   * Whether Redis answered. When it did not, the report is what the repository
   * knows: the scheduler, the next runs, when the scheduler first saw each app
   * and drill, and failures recorded only in Redis are unknown.
   */
  redis: { reachable: true; error: null } | { reachable: false; error: string };
}

/**
 * Given what is known of an app, return its state (pure). Failing wins over
 * stale: it says more. An app that never produced a snapshot is stale once it
 * has been configured (firstSeenAt) for longer than staleAfter: the job that
 * never ran at all must not look healthy. Corrupt (a kept snapshot found
 * damaged) takes the place of ok only: failing and stale, which alert rules
 * and scripts already watch, are never hidden by it, and the damage is never
 * hidden either (status names it, it has its own alert and gauge).
 */
export function classifyApp(input: {
  configured: boolean;
  newestFinishedAt: number | null;
  lastFailureAt: number | null;
  staleAfterMs: number | null;
  now: number;
  firstSeenAt?: number | null;
  /** Whether a kept snapshot was found damaged by its last verification. */
  damaged?: boolean;
}): AppStateName {
  if (!input.configured) return 'orphaned';
  if (input.lastFailureAt !== null && (input.newestFinishedAt === null || input.lastFailureAt > input.newestFinishedAt)) return 'failing';
  // With no snapshot, staleness counts from when the app was first configured.
  const since = input.newestFinishedAt ?? input.firstSeenAt ?? null;
  if (since !== null && input.staleAfterMs !== null && input.now - since > input.staleAfterMs) return 'stale';
  if (input.damaged) return 'corrupt';
  return input.newestFinishedAt === null ? 'never' : 'ok';
}

/**
 * Given an app's summary, return its kept snapshots that their last
 * verification found damaged: a snapshot retention deleted, or a later
 * verification passed, no longer counts. A snapshot whose manifest is not
 * JSON is kept too (the verification says so).
 */
export function damagedSnapshots(summary: AppSummary): DamagedSnapshot[] {
  const kept = new Set([...summary.snapshots.map((snapshot) => snapshot.id), ...summary.unreadable]);
  // A snapshot directory without a readable manifest is not among the kept snapshots, yet its damage counts
  // until a verification no longer finds it (it was removed, or a copy by hand finished).
  return (summary.lastVerify?.snapshots ?? [])
    .filter((snapshot) => !snapshot.ok && (kept.has(snapshot.id) || snapshot.problems.includes(NO_MANIFEST_PROBLEM)))
    .map(({ id, problems, at }) => ({ id, problems, at }));
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
  /** False when Redis was unreachable: everything below is then empty, unknown rather than absent. */
  fromRedis: boolean;
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

/** Given two final failures (either may be missing), return the newer: Redis and the repository each keep one, and either write may have failed. */
function newerFailure(a: FailureRecord | null, b: FailureRecord | null): FailureRecord | null {
  if (a === null || b === null) return a ?? b;
  return Date.parse(b.at) > Date.parse(a.at) ? b : a;
}

function statusOf(app: AppConfig | null, name: string, read: AppSummary | Error, known: KnownState, nextRunAt: number | null, now: Date, repository: string): AppStatus {
  const problems: string[] = [];
  if (read instanceof Error) problems.push(`cannot read ${appDirectory(repository, name)}: ${(read as NodeJS.ErrnoException).code ?? read.message}`);
  const summary = read instanceof Error ? null : read;
  // Without Redis the job schedulers are unknown, not missing: the report says so once, not per app.
  if (app !== null && nextRunAt === null && known.fromRedis) problems.push('no job scheduler: is a scheduler running with this config (reload it with SIGHUP)?');
  // Drill results count only while the app has a drill configured.
  const drill = app?.drill ? summary?.lastDrill ?? null : null;
  const drillPassedAt = app?.drill ? summary?.lastDrillPassedAt ?? null : null;
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
  // A damaged snapshot counts while it is kept: retention deleting it, or a verify passing again, clears it.
  const verify = summary?.lastVerify ?? null;
  const damaged = summary ? damagedSnapshots(summary) : [];
  for (const snapshot of damaged) problems.push(`verify FAILED ${snapshot.at}: ${name}/${snapshot.id}: ${snapshot.problems[0] ?? 'damaged'}`);
  const newest = summary?.snapshots[0] ?? null;
  const finishedAt = newest ? Date.parse(newest.finishedAt) : null;
  const lastFailure = newerFailure(known.failures.get(name) ?? null, summary?.lastFailure ?? null);
  const firstSeenAt = known.firstSeen[name] ?? null;
  const staleAfterMs = app ? staleThresholdMs(app, now) : null;
  return {
    app: name,
    node: app?.node ?? newest?.node ?? null,
    state: classifyApp({
      configured: app !== null,
      newestFinishedAt: finishedAt,
      lastFailureAt: lastFailure ? Date.parse(lastFailure.at) : null,
      staleAfterMs,
      now: now.getTime(),
      firstSeenAt: firstSeenAt ? Date.parse(firstSeenAt) : null,
      damaged: damaged.length > 0,
    }),
    newest: newest
      ? { id: newest.id, path: path.join(appDirectory(repository, name), newest.id), finishedAt: newest.finishedAt, bytes: newest.bytes, durationMs: Date.parse(newest.finishedAt) - Date.parse(newest.startedAt), warnings: newest.warnings }
      : null,
    keptBytes: summary?.snapshots.map((snapshot) => snapshot.bytes) ?? [],
    ageMs: finishedAt === null ? null : now.getTime() - finishedAt,
    staleAfterMs,
    nextRunAt,
    lastFailure,
    firstSeenAt,
    problems,
    lastDrill: drill ? { snapshotId: drill.snapshotId, passed: drill.passed, at: drill.finishedAt, node: drill.node, error: drill.error } : null,
    lastDrillPassedAt: drillPassedAt,
    drillSince,
    lastVerify: verify ? { at: verify.at, snapshots: verify.snapshots.length, failed: damaged } : null,
    mirror: null,
  };
}

/**
 * Given a mirrored app's status as an unconfigured directory would have it,
 * its mirror, its record and now, return it as a mirrored app: no node, its
 * source, and stale when it lags (see mirrorLag); else ok, or never before
 * its first copy.
 */
function asMirrored(status: AppStatus, mirror: { name: string; url: string; maxLagMs: number }, record: MirrorRecord | null, now: Date, firstHad: number | null): AppStatus {
  const { lag, stale } = mirrorLag(record, mirror, status.newest?.id ?? null, now.getTime(), firstHad);
  const problems = status.problems.filter((problem) => !problem.startsWith('no job scheduler'));
  if (lag.lastError) problems.push(`mirror run FAILED ${lag.lastError.at}: ${lag.lastError.reason.split('\n')[0]}`);
  if (lag.lagMs > mirror.maxLagMs) problems.push(`${lag.behind} snapshot(s) of mirror source ${mirror.name} not copied yet, the oldest waiting longer than maxLag (${formatDuration(mirror.maxLagMs)})`);
  if (lag.unreachableMs !== null && lag.unreachableMs > mirror.maxLagMs) {
    problems.push(lag.checkedAt === null
      ? `mirror source ${mirror.name} has never listed this app (is it in mirrors[${mirror.name}].apps by mistake?)`
      : `mirror source ${mirror.name} has not listed this app since ${lag.checkedAt} (not answering, or the app gone there)`);
  }
  return {
    ...status,
    node: null,
    // A failure on this side (a full disk) is FAILING at once; the source's or the link's only by the lag. A copy
    // that its verification found damaged, while it is kept, is CORRUPT (as for an app of this BYSU).
    state: lag.lastError?.local ? 'failing' : stale ? 'stale' : (status.lastVerify?.failed.length ?? 0) > 0 ? 'corrupt' : status.newest === null ? 'never' : 'ok',
    staleAfterMs: mirror.maxLagMs,
    problems,
    mirror: lag,
  };
}

/**
 * Given Redis and the prefix, return each app's next scheduled run from its
 * job scheduler: one ZRANGE of the snapshot queue's job schedulers, where
 * `queue.getJobSchedulers()` would also read every scheduler's hash.
 */
export async function readNextRuns(redis: Redis, prefix: string): Promise<Map<string, number>> {
  const runs = new Map<string, number>();
  const listing = await redis.zrange(redisKeys.jobSchedulers(prefix, SNAPSHOT_QUEUE), 0, '-1', 'WITHSCORES');
  for (let index = 0; index + 1 < listing.length; index += 2) {
    const [key, next] = [listing[index]!, Number(listing[index + 1])];
    if (key.startsWith(SNAPSHOT_SCHEDULER_PREFIX) && Number.isFinite(next)) runs.set(key.slice(SNAPSHOT_SCHEDULER_PREFIX.length), next);
  }
  return runs;
}

/** Given Redis and the prefix, return what Redis knows of every app, the next runs and the scheduler's heartbeat, in one round of commands. */
async function readRedisState(redis: Redis, prefix: string): Promise<{ known: KnownState; runs: Map<string, number>; scheduler: SchedulerHeartbeat | null }> {
  // All of Redis at once: each call below is one or a few commands, sent together rather than one app at a time.
  const [failures, firstSeen, drillSince, runs, scheduler] = await Promise.all([
    readFailures(redis, prefix),
    redis.hgetall(redisKeys.appFirstSeen(prefix)),
    readDrillSince(redis, prefix),
    readNextRuns(redis, prefix),
    readSchedulerHeartbeat(redis, prefix),
  ]);
  return { known: { fromRedis: true, failures, firstSeen, drillSince }, runs, scheduler };
}

/**
 * Given the config and Redis, return the state of every configured app and
 * of every app directory no longer configured (orphaned). Given
 * `{ unreachable }` instead of Redis (why it did not answer), return what the
 * repository alone knows: the newest snapshots, ages, sizes, the last verify,
 * drill and final failure as the repository keeps them, with no scheduler and
 * no next runs. Throw RepositoryUnavailableError when the root is missing or
 * unmarked.
 */
export async function collectStatus(config: Config, redis: Redis | { unreachable: string }, options: { now?: Date; logger?: Logger } = {}): Promise<StatusReport> {
  const now = options.now ?? new Date();
  // A repository that is not there or not marked (not mounted) must not read as "no snapshots yet".
  await requireRepository(config.repository);
  const { known, runs, scheduler } = 'unreachable' in redis
    ? { known: { fromRedis: false, failures: new Map(), firstSeen: {}, drillSince: new Map() }, runs: new Map<string, number>(), scheduler: null }
    : await readRedisState(redis, config.redis.prefix);
  const configured = new Set(config.apps.map((app) => app.name));
  // Only directories named like an app (not lost+found), holding snapshots, are orphaned apps.
  const orphans = (await listAppDirectories(config.repository)).filter((name) => NAME_PATTERN.test(name) && !configured.has(name));
  // Apps a mirror copies: listed by name in mirrors[].apps, or directories whose .mirror.json names a configured mirror.
  const mirrorOf = new Map<string, { mirror: Config['mirrors'][number]; record: MirrorRecord | null }>();
  for (const mirror of config.mirrors) {
    if (mirror.apps === 'all') continue;
    for (const name of mirror.apps) if (!configured.has(name)) mirrorOf.set(name, { mirror, record: null });
  }
  for (const name of new Set([...orphans, ...mirrorOf.keys()])) {
    const record = await readMirrorRecord(config.repository, name);
    const mirror = config.mirrors.find((candidate) => candidate.name === (record?.source ?? mirrorOf.get(name)?.mirror.name));
    if (mirror && (mirror.apps === 'all' || mirror.apps.includes(name))) mirrorOf.set(name, { mirror, record: record?.source === mirror.name ? record : null });
    else mirrorOf.delete(name);
  }
  const unconfigured = [...new Set([...orphans, ...mirrorOf.keys()])];
  // When this side first had each mirror: the earlier of the scheduler's record in Redis and the first run's on
  // disk (a Redis that came back empty must not start the count again).
  const contacts = new Map<string, MirrorContact | null>();
  for (const mirror of config.mirrors) contacts.set(mirror.name, await readMirrorContact(config.repository, mirror.name));
  const firstSeen: Record<string, string> = known.firstSeen;
  const firstHad = (name: string): number | null => {
    const times = [firstSeen[mirrorKey(name)], contacts.get(name)?.firstRunAt].map((at) => Date.parse(at ?? '')).filter(Number.isFinite);
    return times.length === 0 ? null : Math.min(...times);
  };
  const summaries = await readAppSummaries(config.repository, [...configured, ...unconfigured], options.logger ? { logger: options.logger } : {});
  const apps = config.apps.map((app) => statusOf(app, app.name, summaries.get(app.name)!, known, runs.get(app.name) ?? null, now, config.repository));
  for (const name of unconfigured) {
    const unknown = statusOf(null, name, summaries.get(name)!, known, null, now, config.repository);
    const mirrored = mirrorOf.get(name);
    if (mirrored) apps.push(asMirrored(unknown, mirrored.mirror, mirrored.record, now, firstHad(mirrored.mirror.name)));
    else if (unknown.newest !== null) apps.push(unknown);
  }
  const mirrors: MirrorSourceStatus[] = [];
  for (const mirror of config.mirrors) {
    const contact = contacts.get(mirror.name) ?? null;
    const since = contact?.lastContactAt ? Date.parse(contact.lastContactAt) : firstHad(mirror.name);
    const unreachableMs = since === null ? null : Math.max(0, now.getTime() - since);
    mirrors.push({
      name: mirror.name,
      url: mirror.url,
      lastContactAt: contact?.lastContactAt ?? null,
      lastError: contact?.lastError ?? null,
      unreachableMs,
      maxLagMs: mirror.maxLagMs,
      stale: unreachableMs !== null && unreachableMs > mirror.maxLagMs,
    });
  }
  const reachability: StatusReport['redis'] = 'unreachable' in redis ? { reachable: false, error: redis.unreachable } : { reachable: true, error: null };
  return { at: now.toISOString(), apps, mirrors, scheduler, redis: reachability };
}
