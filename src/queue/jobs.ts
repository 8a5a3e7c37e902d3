/**
 * Queue names, job names, payload types and BYSU's own Redis key names: the
 * only place these strings are written.
 */
import type { DrillStep, PartConfig } from '../config/load.ts';
import type { DrillResult } from '../repository/drill-result.ts';
import type { Manifest } from '../repository/manifest.ts';
import type { NodeAddress } from '../ssh/node-address.ts';

export const SNAPSHOT_QUEUE = 'snapshot';
export const RETENTION_QUEUE = 'retention';
export const SNAPSHOT_JOB = 'snapshot';
export const RETENTION_JOB = 'retention';
export const RETENTION_SWEEP_JOB = 'retention-sweep';

/** Job scheduler ids: one per app on the snapshot queue (and on the drill and verify queues), one sweep on the retention queue. */
export const SNAPSHOT_SCHEDULER_PREFIX = 'app-';
export const snapshotSchedulerId = (app: string) => `${SNAPSHOT_SCHEDULER_PREFIX}${app}`;
export const RETENTION_SWEEP_SCHEDULER = 'retention-sweep';
export const DRILL_QUEUE = 'drill';
export const DRILL_JOB = 'drill';
export const DRILL_SCHEDULER_PREFIX = 'drill-';
export const drillSchedulerId = (app: string) => `${DRILL_SCHEDULER_PREFIX}${app}`;
export const VERIFY_QUEUE = 'verify';
export const VERIFY_JOB = 'verify';
/** One verification scheduler per app on the verify queue (verify.schedule). */
export const VERIFY_SCHEDULER_PREFIX = 'verify-';
export const verifySchedulerId = (app: string) => `${VERIFY_SCHEDULER_PREFIX}${app}`;
export const MIRROR_QUEUE = 'mirror';
export const MIRROR_JOB = 'mirror';
/** One job scheduler per mirror on the mirror queue (mirrors[].schedule). */
export const MIRROR_SCHEDULER_PREFIX = 'mirror-';
export const mirrorSchedulerId = (mirror: string) => `${MIRROR_SCHEDULER_PREFIX}${mirror}`;
/**
 * A mirror's name where an app's would stand: its field in the appFirstSeen
 * hash, its alert state's name, the `app` of its copies' verification job:
 * `mirror:<name>` (no app name has a colon).
 */
export const mirrorKey = (mirror: string) => `mirror:${mirror}`;

/** Why a snapshot or drill runs: as its manifest records it. */
export type SnapshotTrigger = Manifest['trigger'];

/** Everything a worker needs to take one snapshot; workers have no inventory of their own. */
export interface SnapshotJobData {
  app: string;
  trigger: SnapshotTrigger;
  node: NodeAddress;
  parts: PartConfig[];
  limits: {
    timeoutMs: number;
    stallTimeoutMs: number;
    maxBytes: number;
    /** Snapshots at once against this node, all workers together. */
    perNode: number;
  };
  keep: number;
  /** A snapshot smaller than this fraction of the kept snapshots' median size gets a warning; 0 = off. */
  shrinkWarn: number;
  /** healthchecks-style URL pinged on success and on final failure. */
  ping?: string;
}

/** Retention of one app: what the retention worker needs to know about it. */
export interface RetentionTarget {
  app: string;
  keep: number;
  /** .incoming leftovers older than this (the app's timeout plus the margin) are removed. */
  incomingMaxAgeMs: number;
}

/** A retention job: after a commit (one app) or the daily sweep (every configured app). */
export interface RetentionJobData {
  targets: RetentionTarget[];
  reason: 'commit' | 'sweep';
}

/** What a retention job did, per app. */
export interface RetentionResult {
  /** deletedDrillResults counts the old drill results deleted from `.drills`. */
  apps: { app: string; deleted: string[]; kept: string[]; removedIncoming: string[]; deletedDrillResults: number; error?: string }[];
}

/**
 * Reported with job.updateProgress by a worker that put a snapshot or drill
 * job back because its node was at its limit: `--wait` says why it waits.
 */
export interface WaitingProgress {
  /** E.g. `node db1: 1 of 1 slots in use`. */
  waitingFor: string;
  /** When the job will be tried again (ms since the epoch). */
  until: number;
}

/** Reported with job.updateProgress while a snapshot runs. */
export interface SnapshotProgress {
  part: string;
  partIndex: number;
  parts: number;
  partBytes: number;
  bytes: number;
}

/** A snapshot job's return value. */
export interface SnapshotResult {
  id: string;
  path: string;
  bytes: number;
  warnings: string[];
  /** True when an earlier run of this job had already committed it. */
  alreadyCommitted: boolean;
  /** ISO time the snapshot finished (its manifest's finishedAt). */
  finishedAt: string;
}

/** BYSU's own Redis keys (BullMQ builds its own under the same prefix). */
export const redisKeys = {
  /** Sorted set of slot leases on one node: member = lease token, score = expiry (ms). */
  nodeSlots: (prefix: string, node: string) => `${prefix}:bysu:node-slots:${node}`,
  /** Lock held while a snapshot of the app is committed or its retention runs. */
  appLock: (prefix: string, app: string) => `${prefix}:bysu:app-lock:${app}`,
  /** JSON { at, host, pid } written by every scheduler; expires when none runs. */
  schedulerHeartbeat: (prefix: string) => `${prefix}:bysu:scheduler-heartbeat`,
  /** Hash app → last alerted state (ok, failing, stale), so an alert is sent once per change. */
  alertState: (prefix: string) => `${prefix}:bysu:alert-state`,
  /** Hash app → ISO time the scheduler first had the app in its config. */
  appFirstSeen: (prefix: string) => `${prefix}:bysu:app-first-seen`,
  /**
   * Hash app → JSON DrillSinceRecord: when the scheduler first had the app's
   * drill, with its schedule as it is now, in its config. Reset when the
   * schedule changes; removed when the drill (or the app) leaves the config.
   */
  drillSince: (prefix: string) => `${prefix}:bysu:drill-since`,
  /** Hash app → number of final failures (for /metrics). */
  failuresTotal: (prefix: string) => `${prefix}:bysu:failures-total`,
  /** Hash app → JSON { at, reason, jobId, attempts } of its last final failure. */
  lastFailure: (prefix: string) => `${prefix}:bysu:last-failure`,
  /**
   * BullMQ's own sorted set of a queue's job schedulers: member = scheduler id,
   * score = its next run (ms). Read directly by status (one ZRANGE, and a
   * `bysu status` that need not load BullMQ); test/integration/next-runs.test.ts
   * holds it equal to what `queue.getJobSchedulers()` returns.
   */
  jobSchedulers: (prefix: string, queue: string) => `${prefix}:${queue}:repeat`,
};

/** Given a manual snapshot request, return its job id (BullMQ forbids ':' in custom ids). */
export function manualJobId(app: string, now: Date): string {
  return `manual-${app}-${now.getTime()}`;
}

/** When the scheduler first saw an app's drill as configured now, as it records it under redisKeys.drillSince. */
export interface DrillSinceRecord {
  /** ISO time. */
  since: string;
  /** The drill's schedule and time zone then: a change of either starts the clock again. */
  schedule: string;
  timezone: string;
}

/** Given a stored DrillSinceRecord (JSON) or nothing, return it, or null when absent or malformed. */
export function parseDrillSince(text: string | undefined): DrillSinceRecord | null {
  if (text === undefined) return null;
  try {
    const record = JSON.parse(text) as Partial<DrillSinceRecord>;
    if (typeof record.since !== 'string' || Number.isNaN(Date.parse(record.since)) || typeof record.schedule !== 'string' || typeof record.timezone !== 'string') return null;
    return { since: record.since, schedule: record.schedule, timezone: record.timezone };
  } catch {
    return null;
  }
}


/** A restore drill: stream the app's newest snapshot into commands on the drill node and check them. */
export interface DrillJobData {
  app: string;
  trigger: SnapshotTrigger;
  node: NodeAddress;
  steps: DrillStep[];
  /** timeoutMs bounds the whole drill (the app's timeout). */
  limits: { timeoutMs: number; perNode: number };
  ping?: string;
}

/**
 * A verification of one app: every kept snapshot read again against its
 * SHA256SUMS, newest first. With `mirror`, of every app whose copies that
 * mirror holds here (`app` is then `mirror:<name>`, for logs and ids).
 */
export interface VerifyJobData {
  app: string;
  trigger: SnapshotTrigger;
  mirror?: string;
}

/** What a verification job found. */
export interface VerifyJobResult {
  app: string;
  /** Snapshots read, and those of them found damaged. */
  verified: string[];
  damaged: string[];
  /** Bytes read, and how long the verification took (ms). */
  bytes: number;
  ms: number;
  /** Why nothing was verified (the app left the config), if so. */
  skipped?: string;
}

/** A mirror run: copy what the named mirror's source has and this repository lacks. */
export interface MirrorJobData {
  mirror: string;
  trigger: SnapshotTrigger;
}

/** What a mirror run did (see MirrorRunResult); `skipped` says why it did nothing. */
export interface MirrorJobResult {
  mirror: string;
  apps: { app: string; copied: string[]; received: number; resumed: number; deleted: string[]; behind: number; error?: string; retryable?: boolean }[];
  failures: string[];
  retryable?: boolean;
  skipped?: string;
}

/** Given a manual mirror request, return its job id. */
export function manualMirrorJobId(mirror: string, now: Date): string {
  return `manual-mirror-${mirror}-${now.getTime()}`;
}

/** Given a manual drill request, return its job id. */
export function manualDrillJobId(app: string, now: Date): string {
  return `manual-drill-${app}-${now.getTime()}`;
}

/**
 * Each queue's name paired with its jobs' payload and return value, as
 * graphile-worker's task map pairs a task with its payload: the one table
 * openQueue (open-queue.ts) types a queue from.
 */
export interface QueueJobTypes {
  [SNAPSHOT_QUEUE]: { data: SnapshotJobData; result: SnapshotResult };
  [RETENTION_QUEUE]: { data: RetentionJobData; result: RetentionResult };
  [DRILL_QUEUE]: { data: DrillJobData; result: DrillResult };
  [VERIFY_QUEUE]: { data: VerifyJobData; result: VerifyJobResult };
  [MIRROR_QUEUE]: { data: MirrorJobData; result: MirrorJobResult };
}

export type QueueName = keyof QueueJobTypes;
/** The payload of a job on the named queue. */
export type QueuePayload<N extends QueueName> = QueueJobTypes[N]['data'];
/** What a job on the named queue returns. */
export type QueueResult<N extends QueueName> = QueueJobTypes[N]['result'];

