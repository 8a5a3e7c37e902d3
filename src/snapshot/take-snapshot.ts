/**
 * The snapshot action: given a job's payload, log in to the node once, run
 * each part's command in order, stream its stdout into a new attempt in the
 * repository, and commit only if every command exited with an accepted code,
 * every tar part is valid, no limit was exceeded and all bytes reached disk.
 * Knows nothing of BullMQ: the worker passes in what it needs.
 */
import { NAME_PATTERN, PART_FILE_PATTERN, RESERVED_FILE_NAMES } from '../config/formats.ts';
import type { PartConfig } from '../config/load.ts';
import type { Logger } from '../log.ts';
import type { SnapshotJobData, SnapshotProgress, SnapshotResult } from '../queue/jobs.ts';
import { SnapshotAttempt } from '../repository/attempt.ts';
import { StreamHead, type Inspection } from '../repository/part-inspector.ts';
import { readAppSummary } from '../repository/summary.ts';
import { MANIFEST_FORMAT } from '../repository/layout.ts';
import { boundPartWarnings, type ManifestPart } from '../repository/manifest.ts';
import { openNodeSession, type ExitStatus, type NodeConnectSettings, type RemoteCommand, type SshSession } from '../ssh/session.ts';
import { AbortedError, ConfigError, InvalidArchiveError, LimitExceededError, RemoteCommandError } from '../errors.ts';
import { BYSU_VERSION } from '../version.ts';

export interface SnapshotContext extends NodeConnectSettings {
  jobId: string;
  /** 1 for the first attempt. */
  attempt: number;
  repository: string;
  logger: Logger;
  /** Aborts the snapshot (shutdown, cancellation); its reason becomes the error. */
  signal?: AbortSignal;
  /** Throws when this worker no longer owns the job; called before the commit claims the job and again right before it publishes. */
  fence: () => Promise<void>;
  /**
   * Runs the commit while holding the app's lock (shared with retention);
   * `confirm` extends the lock or throws when it was lost, and runs with every fence.
   */
  lockApp?: <T>(fn: (lease: { confirm(): Promise<void> }) => Promise<T>) => Promise<T>;
  onProgress?: (progress: SnapshotProgress) => void;
  /** @defaultValue 1000 */
  progressIntervalMs?: number;
}

/** Given a payload from Redis, throw ConfigError unless it has the shape of SnapshotJobData. */
export function checkSnapshotJobData(data: unknown): asserts data is SnapshotJobData {
  const job = data as Partial<SnapshotJobData> | null;
  const problems: string[] = [];
  // The app name becomes a directory of the repository: only names the config could hold.
  if (typeof job?.app !== 'string' || !NAME_PATTERN.test(job.app)) problems.push(`job.app: not an app name: ${JSON.stringify(job?.app)}`);
  if (typeof job?.node?.host !== 'string' || typeof job.node.port !== 'number' || typeof job.node.user !== 'string') problems.push('job.node: missing host, port or user');
  else if (typeof job.node.name !== 'string' || !NAME_PATTERN.test(job.node.name) || !Number.isInteger(job.node.port) || job.node.port < 1 || job.node.port > 65535) {
    problems.push('job.node: bad name or port');
  }
  if (!Array.isArray(job?.parts) || job.parts.length === 0) problems.push('job.parts: missing');
  const limits = job?.limits;
  if (typeof limits?.timeoutMs !== 'number' || typeof limits.stallTimeoutMs !== 'number' || typeof limits.maxBytes !== 'number' || typeof limits.perNode !== 'number') {
    problems.push('job.limits: missing timeoutMs, stallTimeoutMs, maxBytes or perNode');
  }
  for (const part of job?.parts ?? []) {
    if (typeof part?.file !== 'string' || !PART_FILE_PATTERN.test(part.file) || RESERVED_FILE_NAMES.includes(part.file)) problems.push(`job.parts: bad file name ${JSON.stringify(part?.file)}`);
    if (typeof part?.run !== 'string' || !Array.isArray(part.okExitCodes)) problems.push('job.parts: a part without run or okExitCodes');
  }
  if (problems.length > 0) throw new ConfigError(problems);
}

/**
 * Given a command whose stdout has ended, wait for its exit status; throw
 * LimitExceededError when it does not come within stallTimeoutMs, or the
 * signal's reason on abort.
 */
async function waitForExit(command: RemoteCommand, signal: AbortSignal, stallTimeoutMs: number, file: string): Promise<ExitStatus> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    return await Promise.race([
      command.exit,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new LimitExceededError(`part ${file}: the command closed its output but did not exit within ${stallTimeoutMs} ms (stallTimeout)`)), stallTimeoutMs);
        onAbort = () => reject(signal.reason);
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      }),
    ]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal.removeEventListener('abort', onAbort);
  }
}

/**
 * Given the app's committed snapshots and the new total, return a warning when
 * the new snapshot is smaller than `fraction` of their median size (the silent
 * partial dump), else null. The median, not the newest, so that a second
 * partial dump in a row is flagged too. A fraction of 0 turns the check off.
 */
export async function shrinkWarning(repository: string, app: string, bytes: number, fraction: number | undefined): Promise<string | null> {
  if (!fraction) return null;
  const sizes = (await readAppSummary(repository, app)).snapshots.map((snapshot) => snapshot.bytes).sort((a, b) => a - b);
  if (sizes.length === 0) return null;
  const middle = Math.floor(sizes.length / 2);
  const median = sizes.length % 2 === 1 ? sizes[middle]! : Math.round((sizes[middle - 1]! + sizes[middle]!) / 2);
  if (median === 0 || bytes >= fraction * median) return null;
  const percent = ((bytes / median) * 100).toFixed(1);
  return `snapshot shrank to ${percent}% of the usual size (${bytes} bytes; the median of the ${sizes.length} kept snapshots is ${median}): a partial dump? (shrinkWarn ${fraction})`;
}

/** Bytes of stdout quoted in a failure reason when the command's stderr was empty. */
export const STDOUT_HEAD_BYTES = 512;

const ESCAPES: Record<string, string> = { '\\': '\\\\', '"': '\\"', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** Given text a node sent, return it on one line: control characters, quotes and backslashes escaped. */
function escapeControls(text: string): string {
  return text.replace(/["\\\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (char) => ESCAPES[char] ?? `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * Given a failed command's stderr tail and the head of its stdout, say what it
 * printed: the stderr tail, else (a login shell of /usr/sbin/nologin, a tool
 * that reports on stdout) the start of stdout, bounded and on the same line.
 */
function describeOutput(stderr: string, stdout: StreamHead): string {
  if (stderr.trim()) return `\nstderr (last ${Buffer.byteLength(stderr)} bytes):\n${stderr.trimEnd()}`;
  if (stdout.total === 0) return '';
  const head = stdout.bytes();
  // A dump (tar, pg_dump -Fc) has NULs within its first bytes; a message has none.
  if (head.includes(0)) return `; stderr was empty; stdout (${stdout.total} bytes) is binary, not shown`;
  const size = stdout.total > head.length ? `first ${head.length} of ${stdout.total} bytes` : `${head.length} bytes`;
  return `; stderr was empty; the start of stdout (${size}): "${escapeControls(head.toString('utf8'))}"`;
}

/** Given a failed command's status and output, describe it for the job's failure reason. */
function describeExit(file: string, node: string, status: { code: number | null; signal: string | null }, okExitCodes: number[], stderr: string, stdout: StreamHead): string {
  const how = status.signal !== null ? `command was killed by signal ${status.signal}`
    : status.code === 126 ? `the node refused the command (exit 126 from the forced-command wrapper: is it, byte for byte, a line of /etc/bysu/allowed-commands on ${node}? or it is not executable); not retried`
      : status.code === 127 ? `command not found on the node ${node} (exit 127); not retried`
        : status.code !== null ? `command exited with code ${status.code} (accepted: ${okExitCodes.join(', ')})`
          : 'command ended without an exit status (the connection dropped)';
  return `part ${file}: ${how}${describeOutput(stderr, stdout)}`;
}

/** The snapshot's own abort signal, and how to let go of what feeds it. */
interface SnapshotSignal {
  signal: AbortSignal;
  /** Stop the timeout and stop listening to the worker's signal. */
  release(): void;
}

/**
 * Given the job's payload and the worker's context, return the snapshot's own
 * abort signal: aborted with LimitExceededError at the app's timeout, or with
 * the worker's signal's reason (AbortedError when that is no Error).
 */
function snapshotSignal(data: SnapshotJobData, context: SnapshotContext): SnapshotSignal {
  const controller = new AbortController();
  const timeout = setTimeout(() => controller.abort(new LimitExceededError(`snapshot of ${data.app} exceeded its timeout of ${data.limits.timeoutMs} ms`)), data.limits.timeoutMs);
  const forward = () => controller.abort(context.signal?.reason instanceof Error ? context.signal.reason : new AbortedError('snapshot aborted'));
  if (context.signal?.aborted) forward();
  context.signal?.addEventListener('abort', forward, { once: true });
  return {
    signal: controller.signal,
    release() {
      clearTimeout(timeout);
      context.signal?.removeEventListener('abort', forward);
    },
  };
}

/** What streaming a snapshot's parts works with: its attempt, its session and signal, and the command running now (closed on abort). */
interface PartRun {
  attempt: SnapshotAttempt;
  session: SshSession;
  signal: AbortSignal;
  running: { command: RemoteCommand | null };
}

/** Every part streamed into the attempt: the manifest's parts and warnings, and their total size. */
interface StreamedParts {
  parts: ManifestPart[];
  warnings: string[];
  total: number;
}

/**
 * Given a part, the job's limits, the run and the bytes the snapshot may still
 * take, run the part's command and stream its stdout into the attempt; return
 * what was written and the accepted exit code. Throw what writePart throws
 * (with the command's stderr tail, or the start of its stdout for a part that
 * is not a tar at all), LimitExceededError when the exit status does not
 * follow the end of output, RemoteCommandError for an exit code not accepted.
 */
async function streamPart(
  part: PartConfig,
  data: SnapshotJobData,
  run: PartRun,
  options: { maxBytes: number; onBytes: (bytes: number) => void },
): Promise<{ inspection: Inspection; exitCode: number }> {
  const { limits } = data;
  const { signal } = run;
  run.running.command = await run.session.exec(part.run, { signal });
  const command = run.running.command;
  const stdoutHead = new StreamHead(STDOUT_HEAD_BYTES);
  let inspection;
  try {
    inspection = await run.attempt.writePart(part.file, command.stdout, {
      maxBytes: options.maxBytes,
      snapshotMaxBytes: limits.maxBytes,
      stallTimeoutMs: limits.stallTimeoutMs,
      signal,
      onBytes: options.onBytes,
      head: stdoutHead,
    });
  } catch (error) {
    command.close();
    const stderr = command.stderrTail().trim();
    if (stderr && error instanceof Error && !(error instanceof AbortedError)) {
      error.message += `\nstderr (last ${Buffer.byteLength(stderr)} bytes):\n${stderr}`;
    } else if (error instanceof InvalidArchiveError) {
      // Not a tar at all is often a message instead of the dump (nologin): show its start.
      error.message += describeOutput('', stdoutHead);
    }
    throw error;
  }
  // stdout has ended; the exit status follows at once, unless the command closed its output and went on running.
  const status = await waitForExit(command, signal, limits.stallTimeoutMs, part.file);
  if (status.code === null || !part.okExitCodes.includes(status.code)) {
    throw new RemoteCommandError(describeExit(part.file, data.node.name, status, part.okExitCodes, command.stderrTail(), stdoutHead), { exitCode: status.code });
  }
  return { inspection, exitCode: status.code };
}

/** Given a part written, its exit code and when it started, return its manifest entry. */
function manifestPart(part: PartConfig, inspection: Inspection, exitCode: number, partStarted: number): ManifestPart {
  const entry: ManifestPart = {
    file: part.file,
    run: part.run,
    bytes: inspection.bytes,
    sha256: inspection.sha256,
    exitCode,
    durationMs: Date.now() - partStarted,
  };
  if (inspection.tar) entry.tarEntries = inspection.tar.entries;
  return entry;
}

/**
 * Given the job's payload, the context and the run, stream each part in
 * order (see streamPart), reporting progress; return the parts, their
 * warnings (bounded per part) and the total. Throw at the first part that fails.
 */
async function streamParts(data: SnapshotJobData, context: SnapshotContext, run: PartRun): Promise<StreamedParts> {
  const log = context.logger;
  const parts: ManifestPart[] = [];
  const warnings: string[] = [];
  let total = 0;
  let lastProgress = 0;
  for (const [index, part] of data.parts.entries()) {
    const partStarted = Date.now();
    log.info({ part: part.file, partIndex: index + 1, parts: data.parts.length }, 'part started');
    const report = (partBytes: number, force = false) => {
      const now = Date.now();
      if (!force && now - lastProgress < (context.progressIntervalMs ?? 1000)) return;
      lastProgress = now;
      context.onProgress?.({ part: part.file, partIndex: index + 1, parts: data.parts.length, partBytes, bytes: total + partBytes });
    };
    report(0, true);
    const { inspection, exitCode } = await streamPart(part, data, run, { maxBytes: data.limits.maxBytes - total, onBytes: (bytes) => report(bytes) });
    // Reported before it joins the total: after, the part's bytes counted twice in `bytes`.
    report(inspection.bytes, true);
    total += inspection.bytes;
    const entry = manifestPart(part, inspection, exitCode, partStarted);
    // Bounded per part: a node cannot make the manifest or the job's return value in Redis grow with what it sends.
    const partWarnings = [...(exitCode !== 0 ? [`command exited with accepted code ${exitCode}`] : []), ...(inspection.tar?.warnings ?? [])];
    warnings.push(...boundPartWarnings(part.file, partWarnings, inspection.tar?.omittedWarnings));
    parts.push(entry);
    log.info({ part: part.file, bytes: inspection.bytes, exitCode, durationMs: entry.durationMs }, 'part done');
  }
  return { parts, warnings, total };
}

/** Given the streamed parts, add a warning (and log it) when the snapshot shrank (see shrinkWarning). */
async function warnWhenShrunk(data: SnapshotJobData, context: SnapshotContext, streamed: StreamedParts): Promise<void> {
  const shrink = await shrinkWarning(context.repository, data.app, streamed.total, data.shrinkWarn);
  if (shrink !== null) {
    streamed.warnings.push(shrink);
    context.logger.warn({ bytes: streamed.total }, shrink);
  }
}

/**
 * Given the attempt with every part in it, commit it with its manifest,
 * holding the app's lock when the context has one and passing the fences;
 * return the job's result. Throw what commit throws (CommitConflictError,
 * StorageError, RepositoryUnavailableError, the fence's error).
 */
async function commitSnapshot(data: SnapshotJobData, context: SnapshotContext, attempt: SnapshotAttempt, startedAt: Date, streamed: StreamedParts): Promise<SnapshotResult> {
  const commit = (lease?: { confirm(): Promise<void> }) => attempt.commit(
    {
      format: MANIFEST_FORMAT,
      app: data.app,
      node: data.node.name,
      host: data.node.host,
      trigger: data.trigger,
      jobId: context.jobId,
      attempt: context.attempt,
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      bytes: streamed.total,
      bysuVersion: BYSU_VERSION,
      warnings: streamed.warnings,
      parts: streamed.parts,
    },
    async () => {
      await context.fence();
      await lease?.confirm();
    },
  );
  const committed = context.lockApp ? await context.lockApp(commit) : await commit();
  if (committed.problem) context.logger.error({ id: committed.id, problem: committed.problem }, 'snapshot committed, but finishing touches failed');
  return {
    id: committed.id,
    path: committed.path,
    bytes: committed.manifest.bytes,
    warnings: committed.manifest.warnings,
    alreadyCommitted: committed.alreadyCommitted,
    finishedAt: committed.manifest.finishedAt,
  };
}

/**
 * Given the job's payload and the worker's context, take the snapshot and
 * commit it: open an attempt, log in, stream the parts, check the size, commit.
 * Return the committed snapshot. Throw (and leave nothing behind)
 * on any failure: HostKeyError, AuthenticationError, ConnectionError,
 * RemoteCommandError, InvalidArchiveError, LimitExceededError, StorageError,
 * AbortedError, CommitConflictError.
 */
export async function takeSnapshot(data: SnapshotJobData, context: SnapshotContext): Promise<SnapshotResult> {
  checkSnapshotJobData(data);
  const startedAt = new Date();
  const bounds = snapshotSignal(data, context);
  const { signal } = bounds;

  let attempt: SnapshotAttempt | null = null;
  let session: SshSession | null = null;
  const running: PartRun['running'] = { command: null };
  const closeCurrent = () => running.command?.close();
  signal.addEventListener('abort', closeCurrent);
  try {
    attempt = await SnapshotAttempt.open(context.repository, data.app, context.jobId, context.attempt);
    session = await openNodeSession(data.node, context, signal);
    if (signal.aborted) throw signal.reason;
    const streamed = await streamParts(data, context, { attempt, session, signal, running });
    session.close();
    session = null;
    if (signal.aborted) throw signal.reason;
    await warnWhenShrunk(data, context, streamed);
    return await commitSnapshot(data, context, attempt, startedAt, streamed);
  } finally {
    bounds.release();
    signal.removeEventListener('abort', closeCurrent);
    session?.close();
    await attempt?.discard().catch((error: unknown) => context.logger.error({ err: error, dir: attempt?.directory }, 'cannot remove the failed attempt'));
  }
}
