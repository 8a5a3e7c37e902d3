/**
 * Typed producers: the resolved snapshot job of an app (everything a worker
 * needs) and the BullMQ options that carry its retry policy.
 */
import type { JobsOptions } from 'bullmq';
import type { AppConfig, Config, MirrorConfig } from '../config/load.ts';
import { ConfigError } from '../errors.ts';
import { nodeAddressOf } from '../ssh/node-address.ts';
import {
  DRILL_JOB,
  manualDrillJobId,
  manualJobId,
  mirrorKey,
  RETENTION_JOB,
  SNAPSHOT_JOB,
  type DRILL_QUEUE,
  type DrillJobData,
  type RETENTION_QUEUE,
  type RetentionJobData,
  type RetentionTarget,
  type SNAPSHOT_QUEUE,
  type SnapshotJobData,
  type SnapshotTrigger,
  type VerifyJobData,
} from './jobs.ts';
import type { TypedQueue } from './open-queue.ts';

/** Completed and failed jobs kept in Redis for status and the dashboard. */
export const KEEP_COMPLETED = { age: 30 * 86_400, count: 5000 };
export const KEEP_FAILED = { age: 90 * 86_400, count: 5000 };

/** Given the config and an app, return the job payload that snapshots it. */
export function buildSnapshotJob(config: Config, app: AppConfig, trigger: SnapshotTrigger): SnapshotJobData {
  const node = config.nodes.find((candidate) => candidate.name === app.node);
  if (!node) throw new ConfigError([`app "${app.name}": unknown node "${app.node}"`]);
  return {
    app: app.name,
    trigger,
    node: nodeAddressOf(node),
    parts: app.parts.map((part) => ({ ...part, okExitCodes: [...part.okExitCodes] })),
    limits: {
      timeoutMs: app.timeoutMs,
      stallTimeoutMs: app.stallTimeoutMs,
      maxBytes: app.maxBytes,
      perNode: config.concurrency.perNode,
    },
    keep: app.keep,
    shrinkWarn: app.shrinkWarn,
    ...(app.ping ? { ping: app.ping } : {}),
  };
}

/** Given the config and an app, return what retention needs to know about it. */
export function retentionTargetFor(config: Config, app: Pick<AppConfig, 'name' | 'keep' | 'timeoutMs'>): RetentionTarget {
  return { app: app.name, keep: app.keep, incomingMaxAgeMs: app.timeoutMs + config.retention.incomingMarginMs };
}

/**
 * BullMQ keeps a JavaScript stack trace of every failed attempt in the job
 * unless told not to, and Bull Board shows them (`at takeSnapshot (file:///…)`,
 * once per attempt). A job's reason is the whole story for an operator: it is
 * bounded, escaped and says what to do. The worker logs the stack of each
 * failed attempt at debug level.
 */
const NO_STACK_TRACES = { stackTraceLimit: 0 } satisfies JobsOptions;

/** Options of every retention job, after a commit or in the sweep. */
export const RETENTION_JOB_OPTIONS = {
  ...NO_STACK_TRACES,
  attempts: 3,
  backoff: { type: 'exponential', delay: 30_000 },
  removeOnComplete: KEEP_COMPLETED,
  removeOnFail: KEEP_FAILED,
} satisfies JobsOptions;

/**
 * Given the retention queue and a target, enqueue its retention. Deduplicated
 * per app: while one waits, another is not added; while one runs, the newest
 * request is kept for after it (a commit landing mid-retention is not missed).
 */
export async function enqueueRetention(queue: TypedQueue<typeof RETENTION_QUEUE>, target: RetentionTarget): Promise<void> {
  const data: RetentionJobData = { targets: [target], reason: 'commit' };
  await queue.add(RETENTION_JOB, data, { ...RETENTION_JOB_OPTIONS, deduplication: { id: `retention-${target.app}`, keepLastIfActive: true } });
}

/** Given an app, return the BullMQ options of its snapshot jobs (attempts, exponential backoff, history). */
export function snapshotJobOptions(app: AppConfig): JobsOptions {
  return {
    ...NO_STACK_TRACES,
    attempts: app.attempts,
    backoff: { type: 'exponential', delay: app.backoffMs },
    removeOnComplete: KEEP_COMPLETED,
    removeOnFail: KEEP_FAILED,
  };
}

/** Given the snapshot queue, the config and an app, enqueue a manual snapshot now; return its job id. */
export async function enqueueManualSnapshot(queue: TypedQueue<typeof SNAPSHOT_QUEUE>, config: Config, app: AppConfig, now = new Date()): Promise<string> {
  const jobId = manualJobId(app.name, now);
  const job = await queue.add(SNAPSHOT_JOB, buildSnapshotJob(config, app, 'manual'), { ...snapshotJobOptions(app), jobId });
  return String(job.id);
}

/** Given the config and an app with a drill, return the drill job's payload. */
export function buildDrillJob(config: Config, app: AppConfig, trigger: SnapshotTrigger): DrillJobData {
  if (!app.drill) throw new ConfigError([`app "${app.name}" has no drill configured`]);
  const node = config.nodes.find((candidate) => candidate.name === app.drill!.node);
  if (!node) throw new ConfigError([`app "${app.name}": unknown drill node "${app.drill.node}"`]);
  return {
    app: app.name,
    trigger,
    node: nodeAddressOf(node),
    steps: app.drill.steps.map((step) => ({ ...step })),
    limits: { timeoutMs: app.timeoutMs, perNode: config.concurrency.perNode },
    ...(app.ping ? { ping: app.ping } : {}),
  };
}

/** Options of drill jobs: the app's attempts and backoff. */
export function drillJobOptions(app: AppConfig): JobsOptions {
  return snapshotJobOptions(app);
}

/** Given the drill queue, the config and an app, enqueue a drill now; return its job id. */
export async function enqueueManualDrill(queue: TypedQueue<typeof DRILL_QUEUE>, config: Config, app: AppConfig, now = new Date()): Promise<string> {
  const job = await queue.add(DRILL_JOB, buildDrillJob(config, app, 'manual'), { ...drillJobOptions(app), jobId: manualDrillJobId(app.name, now) });
  return String(job.id);
}

/** Given an app and why it runs, return the payload of its verification (the worker reads its bound from its own config). */
export function buildVerifyJob(app: Pick<AppConfig, 'name'>, trigger: SnapshotTrigger): VerifyJobData {
  return { app: app.name, trigger };
}

/** Given a mirror and why it runs, return the payload of the verification of its copies here. */
export function buildMirrorVerifyJob(mirror: Pick<MirrorConfig, 'name'>, trigger: SnapshotTrigger): VerifyJobData {
  return { app: mirrorKey(mirror.name), trigger, mirror: mirror.name };
}

/** Given a mirror, return the options of its runs: attempts with a doubling backoff from a minute; history kept like the others. */
export function mirrorJobOptions(mirror: Pick<MirrorConfig, 'attempts'>): JobsOptions {
  return { ...NO_STACK_TRACES, attempts: mirror.attempts, backoff: { type: 'exponential', delay: 60_000 }, removeOnComplete: KEEP_COMPLETED, removeOnFail: KEEP_FAILED };
}

/** Options of every verification job: a failure to read the listing or write the record is retried; history kept like the others. */
export const VERIFY_JOB_OPTIONS = {
  ...NO_STACK_TRACES,
  attempts: 3,
  backoff: { type: 'exponential', delay: 60_000 },
  removeOnComplete: KEEP_COMPLETED,
  removeOnFail: KEEP_FAILED,
} satisfies JobsOptions;
