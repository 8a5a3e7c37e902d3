/**
 * What every job that runs against a node does first, for the snapshot and
 * the drill workers alike: refuse a malformed payload for good, hand the job
 * back when the worker is stopping, take a slot on the node or come back
 * later (neither uses an attempt), and keep the slot's lease renewed,
 * aborting the job if the lease is lost.
 */
import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import { ConnectionError, isRetryable, toError } from '../errors.ts';
import { cutToBytes, escapeControls } from '../printable.ts';
import type { Config } from '../config/load.ts';
import type { Logger } from '../log.ts';
import type { LiveConfig } from '../config/live.ts';
import { readIdentity, type NodeConnectSettings, type SshIdentity } from '../ssh/session.ts';
import { NODE_SLOT_LEASE_MS, type NodeSlots } from '../queue/node-slots.ts';
import type { WaitingProgress } from '../queue/jobs.ts';

/**
 * Deaths of the worker running a job (stalls: a worker killed, out of memory,
 * frozen past its lock) before the job fails for good. Passed to BullMQ as
 * maxStalledCount and enforced by refuseStalledOut for the jobs BullMQ exempts.
 */
export const MAX_STALLED_COUNT = 2;
/** Starts of one job (each busy-node delay is one) before BullMQ fails it: about a day at the default busyNodeDelay. */
export const MAX_STARTED_ATTEMPTS = 10_000;
/** BullMQ's own failure reasons for a job that stalled, or started, too often. */
const BULLMQ_STALLED_OUT = 'job stalled more than allowable limit';
const BULLMQ_STARTED_OUT = 'job started more than allowable limit';

/** Move the job back to the queue now, without using an attempt (moveToDelayed + DelayedError). */
export async function handBack(job: Job, token: string | undefined): Promise<never> {
  await job.moveToDelayed(Date.now(), token);
  throw new DelayedError();
}

export interface NodeJobOptions<T> {
  /** Throws when the payload is malformed. */
  check: (data: unknown) => asserts data is T;
  nodeOf: (data: T) => { name: string; perNode: number };
  shutdown: AbortSignal;
  slots: NodeSlots;
  busyDelayMs: number;
  /** @defaultValue NODE_SLOT_LEASE_MS */
  leaseMs?: number;
  log: Logger;
}

export interface NodeJobSlot {
  /** Aborts (with a ConnectionError) when the slot's lease was lost. */
  lost: AbortSignal;
  /** Stop renewing and release the slot. */
  release(): Promise<void>;
}

/**
 * Given a job, its token and the options, return its held node slot; throw
 * UnrecoverableError for a malformed payload and DelayedError (after moving
 * the job back) when the worker is stopping or the node is at its limit.
 */
export async function takeNodeSlot<T>(job: Job, token: string | undefined, options: NodeJobOptions<T>): Promise<NodeJobSlot> {
  refuseStalledOut(job);
  try {
    options.check(job.data);
  } catch (error) {
    options.log.error({ err: toError(error).message }, 'malformed job');
    throw new UnrecoverableError(toError(error).message);
  }
  if (options.shutdown.aborted) await handBack(job, token);
  const node = options.nodeOf(job.data as T);
  const slot = await options.slots.acquire(node.name, node.perNode, job.id ?? 'job');
  if (slot === null) {
    options.log.debug('node busy; delaying the job');
    const until = Date.now() + options.busyDelayMs + Math.floor(Math.random() * options.busyDelayMs);
    // Said in the job for `--wait` (a follower prints it); losing it loses only that line.
    const waiting: WaitingProgress = { waitingFor: `node ${node.name}: ${node.perNode} of ${node.perNode} slot(s) in use`, until };
    await job.updateProgress(waiting).catch(() => undefined);
    await job.moveToDelayed(until, token);
    throw new DelayedError();
  }
  const lost = new AbortController();
  const renewal = setInterval(() => {
    slot.renew().then((held) => {
      if (!held) lost.abort(new ConnectionError(`lost the slot on node ${node.name} (lease expired)`));
    }, (error: unknown) => options.log.warn({ err: toError(error).message }, 'cannot renew the node slot'));
  }, Math.max(1000, Math.floor((options.leaseMs ?? NODE_SLOT_LEASE_MS) / 3)));
  return {
    lost: lost.signal,
    async release() {
      clearInterval(renewal);
      await slot.release().catch((error: unknown) => options.log.warn({ err: toError(error).message }, 'cannot release the node slot; it expires by itself'));
    },
  };
}

/**
 * Given a job about to run, throw UnrecoverableError when its workers died
 * more than MAX_STALLED_COUNT times. BullMQ fails such a job itself before it
 * runs, except a job made by a job scheduler: that one it puts back in the
 * queue after every stall, for ever (moveStalledJobsToWait skips jobs whose
 * scheduler exists), so a part that kills its worker would kill every worker
 * in turn and never be reported. This check gives those jobs the same bound.
 */
export function refuseStalledOut(job: Job): void {
  if (job.stalledCounter > MAX_STALLED_COUNT) throw new UnrecoverableError(stalledOutReason(job));
}

function stalledOutReason(job: Job): string {
  return `${BULLMQ_STALLED_OUT}: the worker running it died or froze past its lock ${job.stalledCounter} times (maxStalledCount ${MAX_STALLED_COUNT});`
    + ' look for workers killed (out of memory?) or stopped while running it';
}

/**
 * Given a job that BullMQ has just reported failed and its error, return the
 * reason to record and alert when the failure is final, or null when the job
 * will be retried. Final is whatever moved the job to the failed set (BullMQ
 * then sets finishedOn): attempts used up, a non-retryable error, stalled out,
 * or started more than maxStartedAttempts times; not only the first two.
 */
export function finalFailureReason(job: Job, error: Error): string | null {
  if (job.finishedOn === undefined) return null;
  if (error.message === BULLMQ_STALLED_OUT) return stalledOutReason(job);
  if (error.message === BULLMQ_STARTED_OUT) {
    return `${BULLMQ_STARTED_OUT}: started ${job.attemptsStarted} times (maxStartedAttempts ${MAX_STARTED_ATTEMPTS}); its node was busy every time`;
  }
  if (job.attemptsStarted >= MAX_STARTED_ATTEMPTS && job.attemptsMade < (job.opts.attempts ?? 1)) {
    return `${error.message}\n(not retried: the job was started ${job.attemptsStarted} times, maxStartedAttempts ${MAX_STARTED_ATTEMPTS})`;
  }
  return error.message;
}

/**
 * How long a stopping worker waits for the failure record and alert state of
 * a job that failed just before the stop (a few Redis round trips; more only
 * when Redis is unreachable, and then the wait cannot help).
 */
export const FINAL_FAILURE_RECORD_BOUND_MS = 5000;

/**
 * The most a failure reason may take, in UTF-8 bytes: it is stored in Redis
 * (the job's failedReason and stack trace, the app's failure record) and shown
 * by status, the dashboard and every alert. Room for the stderr tail (4 KiB),
 * the start of stdout and BYSU's own words.
 */
export const MAX_FAILURE_REASON_BYTES = 8192;

/**
 * Given the error a job failed with, return the error to hand to BullMQ:
 * UnrecoverableError when a retry cannot help (or `final` says so), else the
 * error itself; either way with its message escaped (line breaks kept) and cut
 * to MAX_FAILURE_REASON_BYTES, and its stack no longer than that message plus
 * BYSU's own frames. Anything a node or an ssh2 peer said may be in the
 * message, and nothing else bounds it.
 */
export function jobFailure(error: Error, final = false): Error {
  const message = cutToBytes(escapeControls(error.message, { keepLineBreaks: true }), MAX_FAILURE_REASON_BYTES);
  if (final || !isRetryable(error)) return new UnrecoverableError(message);
  if (message !== error.message) {
    const frames = (error.stack ?? '').split('\n').filter((line) => /^\s+at /.test(line)).slice(0, 10);
    error.message = message;
    error.stack = [`${error.name}: ${message}`, ...frames].join('\n');
  }
  return error;
}

/** Given the worker's config and its identity, return how its jobs log in to nodes. */
export function connectSettings(config: Config, identity: SshIdentity): NodeConnectSettings {
  return {
    identity,
    connectTimeoutMs: config.ssh.connectTimeoutMs,
    keepalive: { intervalMs: config.ssh.keepaliveIntervalMs, countMax: config.ssh.keepaliveCountMax },
  };
}

/**
 * The SSH identity of a worker whose config is live: read at start (a key
 * that cannot be read refuses the start), and read again at the first job
 * after each reload, so a key rotated in place or a new ssh.identityFile
 * takes effect with SIGHUP. A reload whose key cannot be read or parsed is
 * refused before it takes effect (start-checks.ts), so the old key stays in use.
 */
export class IdentityCache {
  private identity: SshIdentity | null;

  constructor(private readonly live: LiveConfig) {
    // Read at start when there are nodes to log in to; an instance that only mirrors has none, and no key.
    this.identity = live.current().nodes.length > 0 ? this.read() : null;
    live.onReload(() => {
      this.identity = null;
    });
  }

  get(): SshIdentity {
    this.identity ??= this.read();
    return this.identity;
  }

  private read(): SshIdentity {
    const { identityFile, knownHosts } = this.live.current().ssh;
    return readIdentity(identityFile, knownHosts);
  }
}
