/**
 * The scheduler: reconciles BullMQ job schedulers with the config (one per
 * app on the snapshot and verify queues, one per drill, the daily sweep on
 * the retention queue) at start and on reload, re-creates those Redis lost
 * (on reconnect and before each stale check), writes a heartbeat so that
 * `bysu status` can tell when no scheduler runs, and looks for apps that went
 * stale, or whose damaged snapshot went unannounced or was deleted, to alert
 * once. Several replicas may run: upserting a job scheduler is idempotent,
 * and BullMQ makes one job per tick of a scheduler however many replicas
 * upsert it.
 */
import os from 'node:os';
import { isDeepStrictEqual } from 'node:util';
import { Queue, type JobSchedulerJson } from 'bullmq';
import type { Redis } from 'ioredis';
import type { LiveConfig } from '../config/live.ts';
import type { Config } from '../config/load.ts';
import { toError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { CLOSE_BOUND_MS, closeConnection, createWorkerConnection, settlesWithin } from '../queue/connection.ts';
import { RedisHealth } from '../queue/redis-health.ts';
import { buildDrillJob, buildMirrorVerifyJob, buildSnapshotJob, buildVerifyJob, drillJobOptions, mirrorJobOptions, RETENTION_JOB_OPTIONS, retentionTargetFor, snapshotJobOptions, VERIFY_JOB_OPTIONS } from '../queue/enqueue.ts';
import {
  DRILL_JOB,
  DRILL_SCHEDULER_PREFIX,
  drillSchedulerId,
  MIRROR_JOB,
  mirrorKey,
  MIRROR_SCHEDULER_PREFIX,
  mirrorSchedulerId,
  parseDrillSince,
  redisKeys,
  RETENTION_SWEEP_JOB,
  RETENTION_SWEEP_SCHEDULER,
  SNAPSHOT_JOB,
  SNAPSHOT_SCHEDULER_PREFIX,
  snapshotSchedulerId,
  VERIFY_JOB,
  VERIFY_SCHEDULER_PREFIX,
  verifySchedulerId,
  type DrillJobData,
  type DrillSinceRecord,
  type MirrorJobData,
  type RetentionJobData,
  type SnapshotJobData,
  type VerifyJobData,
} from '../queue/jobs.ts';
import { Notifier } from '../notify/notifier.ts';
import { openAllQueues } from '../queue/open-queue.ts';
import { collectStatus, type AppStatus, type MirrorLag } from '../status/app-status.ts';
import { damageReason } from '../verify/verify-app.ts';

/** How often the heartbeat is written, and how long it lives. */
export const HEARTBEAT_INTERVAL_MS = 15_000;
export const HEARTBEAT_TTL_MS = 60_000;

export interface ReconcileResult {
  upserted: string[];
  unchanged: string[];
  removed: string[];
}

export interface RunningScheduler {
  /** Check every app for staleness now (also runs every notify.staleCheckInterval). */
  checkStale(): Promise<void>;
  close(): Promise<void>;
}

/** One job scheduler the config asks for, on the queue it belongs to. */
interface WantedScheduler {
  queue: 'snapshot' | 'drill' | 'retention' | 'verify' | 'mirror';
  id: string;
  pattern: string;
  tz: string;
  template: { name: string; data: SnapshotJobData | DrillJobData | RetentionJobData | VerifyJobData | MirrorJobData; opts: object };
}

/** The scheduler's queues (a test may leave out those it does not look at). */
export interface SchedulerQueues {
  snapshot: Queue<SnapshotJobData>;
  retention: Queue<RetentionJobData>;
  drill?: Queue<DrillJobData>;
  verify?: Queue<VerifyJobData>;
  mirror?: Queue<MirrorJobData>;
}

/** Given a mirrored app's lag, say why it is stale. */
function mirrorStaleReason(lag: MirrorLag): string {
  if (lag.unreachableMs !== null && lag.unreachableMs > lag.maxLagMs) return `mirror source ${lag.source} (${lag.url}) has not answered since ${lag.checkedAt}, longer than maxLag (${lag.maxLagMs} ms)`;
  return `${lag.behind} snapshot(s) of mirror source ${lag.source} not copied, the oldest waiting ${lag.lagMs} ms, longer than maxLag (${lag.maxLagMs} ms)${lag.lastError ? `; last error: ${lag.lastError.reason.split('\n')[0]}` : ''}`;
}

/** Given the config, list every job scheduler it asks for: one per app, one per drill, one verification per app, the retention sweep. */
function wantedSchedulers(config: Config): WantedScheduler[] {
  const wanted: WantedScheduler[] = [];
  for (const app of config.apps) {
    wanted.push({ queue: 'snapshot', id: snapshotSchedulerId(app.name), pattern: app.schedule, tz: app.timezone,
      template: { name: SNAPSHOT_JOB, data: buildSnapshotJob(config, app, 'schedule'), opts: snapshotJobOptions(app) } });
  }
  for (const app of config.apps) {
    if (!app.drill) continue;
    wanted.push({ queue: 'drill', id: drillSchedulerId(app.name), pattern: app.drill.schedule, tz: app.timezone,
      template: { name: DRILL_JOB, data: buildDrillJob(config, app, 'schedule'), opts: drillJobOptions(app) } });
  }
  // One per app rather than one sweep: each app is its own job (one failing does not stop the others), and at most
  // verify.concurrency of them run at once however many are due.
  for (const app of config.apps) {
    wanted.push({ queue: 'verify', id: verifySchedulerId(app.name), pattern: config.verify.schedule, tz: config.defaults.timezone,
      template: { name: VERIFY_JOB, data: buildVerifyJob(app, 'schedule'), opts: VERIFY_JOB_OPTIONS } });
  }
  // A mirror's copies are verified like the apps, one job per mirror: which apps it holds is known at run time.
  for (const mirror of config.mirrors) {
    wanted.push({ queue: 'verify', id: verifySchedulerId(mirrorKey(mirror.name)), pattern: config.verify.schedule, tz: config.defaults.timezone,
      template: { name: VERIFY_JOB, data: buildMirrorVerifyJob(mirror, 'schedule'), opts: VERIFY_JOB_OPTIONS } });
  }
  for (const mirror of config.mirrors) {
    wanted.push({ queue: 'mirror', id: mirrorSchedulerId(mirror.name), pattern: mirror.schedule, tz: config.defaults.timezone,
      template: { name: MIRROR_JOB, data: { mirror: mirror.name, trigger: 'schedule' }, opts: mirrorJobOptions(mirror) } });
  }
  wanted.push({ queue: 'retention', id: RETENTION_SWEEP_SCHEDULER, pattern: config.retention.sweepSchedule, tz: config.defaults.timezone,
    template: { name: RETENTION_SWEEP_JOB, data: { targets: config.apps.map((app) => retentionTargetFor(config, app)), reason: 'sweep' as const }, opts: RETENTION_JOB_OPTIONS } });
  return wanted;
}

function queueOf(queues: SchedulerQueues, wanted: WantedScheduler): Queue | undefined {
  return queues[wanted.queue] as Queue | undefined;
}

/** Given Redis and the config, record when each app was first seen (kept if known) and each drill's since-record. */
async function recordFirstSeen(redis: Redis, config: Config): Promise<void> {
  // When BYSU first learnt of the app: an app that never produced a snapshot goes stale from here.
  const now = new Date();
  for (const app of config.apps) await redis.hsetnx(redisKeys.appFirstSeen(config.redis.prefix), app.name, now.toISOString());
  // A mirror whose source never answers goes stale from here.
  for (const mirror of config.mirrors) await redis.hsetnx(redisKeys.appFirstSeen(config.redis.prefix), mirrorKey(mirror.name), now.toISOString());
  await recordDrillSince(redis, config, now);
}

/**
 * Given the scheduler's queues and the config, make the job schedulers match
 * it: upsert one per app (schedule, time zone and the resolved job), per
 * drill and per app's verification, remove those of apps (and drills) no
 * longer configured, upsert the sweep.
 */
export async function reconcileSchedulers(queues: SchedulerQueues, config: Config, redis?: Redis): Promise<ReconcileResult> {
  const upserted: string[] = [];
  const unchanged: string[] = [];
  const wanted = wantedSchedulers(config);
  for (const scheduler of wanted) {
    const queue = queueOf(queues, scheduler);
    if (!queue) continue;
    // Upserting re-plans the scheduler from now and drops a due run that has not started: only touch what changed.
    if (sameScheduler(await queue.getJobScheduler(scheduler.id), scheduler.pattern, scheduler.tz, scheduler.template)) {
      if (scheduler.queue === 'snapshot') unchanged.push(scheduler.id);
    } else {
      await queue.upsertJobScheduler(scheduler.id, { pattern: scheduler.pattern, tz: scheduler.tz }, scheduler.template);
      if (scheduler.queue !== 'retention') upserted.push(scheduler.id);
    }
  }
  const removed: string[] = [];
  for (const [queue, prefix] of [[queues.snapshot, SNAPSHOT_SCHEDULER_PREFIX], [queues.drill, DRILL_SCHEDULER_PREFIX], [queues.verify, VERIFY_SCHEDULER_PREFIX], [queues.mirror, MIRROR_SCHEDULER_PREFIX]] as const) {
    if (!queue) continue;
    for (const scheduler of await (queue as Queue).getJobSchedulers(0, -1)) {
      const id = scheduler.id ?? scheduler.key;
      if (id.startsWith(prefix) && !wanted.some((each) => each.id === id)) {
        await queue.removeJobScheduler(id);
        removed.push(id);
      }
    }
  }
  if (redis) await recordFirstSeen(redis, config);
  return { upserted, unchanged, removed };
}

/**
 * Given the scheduler's queues, Redis and the config, re-create the job
 * schedulers the config asks for that Redis no longer has (it came back empty:
 * no persistence, a new instance, a FLUSHALL) and restore the first-seen and
 * drill-since records; return the ids re-created. Never upserts one that
 * exists: that would re-plan it from now and drop a due run. A scheduler that
 * exists but differs from the config is left to reconcile (start and SIGHUP).
 */
export async function restoreMissingSchedulers(queues: SchedulerQueues, redis: Redis, config: Config): Promise<string[]> {
  const recreated: string[] = [];
  for (const scheduler of wantedSchedulers(config)) {
    const queue = queueOf(queues, scheduler);
    if (!queue || (await queue.getJobScheduler(scheduler.id))) continue;
    await queue.upsertJobScheduler(scheduler.id, { pattern: scheduler.pattern, tz: scheduler.tz }, scheduler.template);
    recreated.push(scheduler.id);
  }
  await recordFirstSeen(redis, config);
  return recreated;
}

/**
 * Given Redis, the config and the time now, record when each app's drill was
 * first seen with its current schedule and time zone (kept while they stay the
 * same, reset when either changes), and forget the record of every app that
 * has no drill now, so a drill removed and added again starts afresh. Status
 * counts an overdue drill from here, not from when the app was first seen: a
 * drill added to an app that has existed for months is due one drill interval
 * (times 1.5) after it was added.
 */
export async function recordDrillSince(redis: Redis, config: Config, now: Date): Promise<void> {
  const key = redisKeys.drillSince(config.redis.prefix);
  const recorded = await redis.hgetall(key);
  for (const app of config.apps) {
    if (!app.drill) continue;
    const current = parseDrillSince(recorded[app.name]);
    if (current && current.schedule === app.drill.schedule && current.timezone === app.timezone) continue;
    const record: DrillSinceRecord = { since: now.toISOString(), schedule: app.drill.schedule, timezone: app.timezone };
    await redis.hset(key, app.name, JSON.stringify(record));
  }
  const gone = Object.keys(recorded).filter((name) => !config.apps.some((app) => app.name === name && app.drill));
  if (gone.length > 0) await redis.hdel(key, ...gone);
}

/** Whether an existing job scheduler already has this pattern, time zone and template. */
function sameScheduler(existing: JobSchedulerJson | undefined, pattern: string, tz: string, template: { name: string; data: unknown; opts: object }): boolean {
  if (!existing || existing.pattern !== pattern || (existing.tz ?? 'UTC') !== tz || existing.name !== template.name) return false;
  if (!isDeepStrictEqual(existing.template?.data ?? null, template.data)) return false;
  const opts = (existing.template?.opts ?? {}) as Record<string, unknown>;
  return Object.entries(template.opts).every(([key, value]) => isDeepStrictEqual(opts[key], value));
}

/**
 * Given the live config and a logger, start the scheduler. Each reload of the
 * config reconciles the job schedulers and applies the alert settings.
 * `redisHealth` is where Redis errors are reported (`bysu up` shares one per
 * process); by default the scheduler has its own.
 */
export async function startScheduler(live: LiveConfig, logger: Logger, options: { redisHealth?: RedisHealth } = {}): Promise<RunningScheduler> {
  const started = live.current();
  const { prefix } = started.redis;
  const connection = createWorkerConnection(started.redis.url);
  const redisHealth = options.redisHealth ?? new RedisHealth(logger, started.redis.url);
  redisHealth.watch(connection, 'scheduler connection');
  const queues = openAllQueues(connection, prefix, redisHealth);
  const notifier = new Notifier(connection, prefix, () => live.current().notify, logger);

  // Reconcile and restore never run at once: both read and then write the same job schedulers.
  let schedulerWork: Promise<void> = Promise.resolve();
  const serially = (fn: () => Promise<void>) => {
    const next = schedulerWork.then(fn);
    schedulerWork = next.catch(() => undefined);
    return next;
  };
  const reconcile = () => serially(async () => {
    const config = live.current();
    const result = await reconcileSchedulers(queues, config, connection);
    logger.info({ apps: config.apps.length, upserted: result.upserted, removed: result.removed }, 'job schedulers reconciled');
  });
  // Redis that comes back empty (no persistence, a new instance, a FLUSHALL) has lost the job schedulers: without
  // this, no app runs again until someone sends SIGHUP. Checked on reconnect and with every stale check.
  const restore = (why: string) => serially(async () => {
    const recreated = await restoreMissingSchedulers(queues, connection, live.current());
    if (recreated.length === 0) return;
    logger.warn({ recreated, why }, `redis had lost ${recreated.length} job scheduler${recreated.length === 1 ? '' : 's'} (${recreated.join(', ')}): re-created (${why})`);
    await beat(); // the heartbeat was lost with them: status would say no scheduler runs until the next beat
  });

  const beat = async () => {
    const heartbeat = JSON.stringify({ at: new Date().toISOString(), host: os.hostname(), pid: process.pid });
    await connection.set(redisKeys.schedulerHeartbeat(prefix), heartbeat, 'PX', HEARTBEAT_TTL_MS);
  };

  // The state each app's alert line was last logged for: while a webhook or mail server is down, every check sends the
  // failing and stale apps' alerts again, and a line each time would be one per app per check for the whole outage.
  const alertLogged = new Map<string, string>();
  const logAlertOnce = (app: string, state: string, log: () => void) => {
    if (alertLogged.get(app) === state) return;
    alertLogged.set(app, state);
    log();
  };

  /**
   * Given an app's state, report its damaged kept snapshots, or none: sent once by the verify worker that found
   * them, this sends it when that was not delivered, and is what clears the alert when retention (which does not
   * verify) deleted the damaged snapshot. A no-op for a state already delivered.
   */
  const reportDamage = async (app: AppStatus, at: string) => {
    if (app.state === 'orphaned' || app.lastVerify === null) return;
    const damaged = app.lastVerify.failed;
    const node = app.node ? { node: app.node } : {};
    const sent = await notifier.report(damaged.length > 0
      ? { event: 'corrupt', app: app.app, ...node, at: damaged[0]!.at, reason: damageReason(app.app, damaged) }
      : { event: 'corrupt-cleared', app: app.app, ...node, at });
    if (sent) {
      logAlertOnce(`verify:${app.app}`, damaged.length > 0 ? 'corrupt' : 'ok', () => logger.warn({ app: app.app, damaged: damaged.map(({ id }) => id) },
        damaged.length > 0 ? 'app has a damaged snapshot and its alert was not delivered: alert sent' : 'no damaged snapshot is kept any more: all-clear sent'));
    }
  };

  let checking = false;
  const checkStale = async () => {
    if (checking) return; // the last check is still running (slow Redis or repository): skip this tick
    checking = true;
    try {
      const report = await collectStatus(live.current(), connection);
      for (const mirror of report.mirrors.filter((candidate) => candidate.stale)) {
        // Recovered once a run reaches the source again (the mirror worker reports it).
        const sent = await notifier.report({
          event: 'stale',
          app: mirrorKey(mirror.name),
          at: report.at,
          reason: `mirror source ${mirror.name} (${mirror.url}) has not answered ${mirror.lastContactAt === null ? 'since the mirror was configured' : `since ${mirror.lastContactAt}`}, longer than maxLag (${mirror.maxLagMs} ms)${mirror.lastError ? `: ${mirror.lastError.reason.split('\n')[0]}` : ''}`,
          lastSnapshot: null,
        });
        if (sent) logAlertOnce(mirrorKey(mirror.name), 'stale', () => logger.warn({ mirror: mirror.name, unreachableMs: mirror.unreachableMs }, 'mirror source unreachable: alert sent'));
      }
      for (const app of report.apps) {
        await reportDamage(app, report.at);
        if (app.state === 'failing' && app.lastFailure !== null) {
          // Normally announced by the worker that failed the job; this sends it when that worker died before it
          // was delivered, or the webhook was down for all its tries. Sent once: the notifier keeps the state.
          const sent = await notifier.report({ event: 'failed', app: app.app, ...(app.node ? { node: app.node } : {}), at: app.lastFailure.at, reason: app.lastFailure.reason });
          if (sent) logAlertOnce(app.app, 'failing', () => logger.warn({ app: app.app }, 'app is failing and its alert was not delivered: alert sent (again at each check until delivered)'));
          continue;
        }
        if (app.state !== 'stale') {
          alertLogged.delete(app.app);
          continue;
        }
        const sent = await notifier.report({
          event: 'stale',
          app: app.app,
          ...(app.node ? { node: app.node } : {}),
          at: report.at,
          reason: app.mirror ? mirrorStaleReason(app.mirror)
            : app.newest ? `newest snapshot ${app.newest.id} is older than ${app.staleAfterMs} ms` : `no snapshot since the app was configured (${app.firstSeenAt})`,
          lastSnapshot: app.newest ? { id: app.newest.id, finishedAt: app.newest.finishedAt } : null,
        });
        if (sent) logAlertOnce(app.app, 'stale', () => logger.warn({ app: app.app, ageMs: app.ageMs }, 'app is stale: alert sent'));
      }
    } finally {
      checking = false;
    }
  };

  const guard = (what: string, fn: () => Promise<void>) => () => {
    fn().catch((error: unknown) => logger.error({ err: toError(error).message }, `${what} failed`));
  };

  const periodic = guard('stale check', async () => {
    // While Redis is unreachable the reconnect will restore them: one failing line per tick is enough.
    if (!redisHealth.unreachable) {
      await restore('periodic check').catch((error: unknown) => logger.error({ err: toError(error).message }, 're-creating job schedulers failed'));
    }
    await checkStale();
  });

  await reconcile();
  await beat();
  // ioredis emits 'ready' again after each reconnect; the first one is covered by the reconcile above.
  connection.on('ready', guard('re-creating job schedulers', () => restore('redis reconnected')));
  const heartbeatTimer = setInterval(guard('heartbeat', beat), HEARTBEAT_INTERVAL_MS);
  let staleTimer = setInterval(periodic, started.notify.staleCheckIntervalMs);
  logger.info({ apps: started.apps.length }, 'scheduler started');

  // A reload (the file validated; redis.url and redis.prefix keep their running values) re-plans what changed.
  let closed = false;
  live.onReload((next, previous) => {
    if (closed) return;
    if (next.notify.staleCheckIntervalMs !== previous.notify.staleCheckIntervalMs) {
      clearInterval(staleTimer);
      staleTimer = setInterval(periodic, next.notify.staleCheckIntervalMs);
    }
    guard('reconciling after the reload', reconcile)();
  });

  return {
    checkStale,
    async close() {
      const started = Date.now();
      closed = true;
      clearInterval(heartbeatTimer);
      clearInterval(staleTimer);
      // Nothing the scheduler does needs finishing: a heartbeat or stale check cut short is redone by the next replica or start.
      const undelivered = await notifier.flushBeforeExit();
      await settlesWithin(queues.close(), CLOSE_BOUND_MS);
      const redis = await closeConnection(connection);
      logger.info({ stoppedInMs: Date.now() - started, waitedFor: undelivered > 0 ? 'alerts in delivery' : 'nothing', redis }, 'scheduler stopped');
    },
  };
}
