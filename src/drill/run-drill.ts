/**
 * The restore drill: given a drill job, take the app's newest complete
 * snapshot, log in to the drill node, run each step in order (streaming a
 * snapshot file into the step's stdin when it names one, after checking the
 * file against SHA256SUMS and again while it streams), require exit code 0
 * and, where given, stdout matching `expect`, and record the result as JSON
 * beside the app's snapshots. Snapshot files are only read, never modified.
 * Knows nothing of BullMQ.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { NAME_PATTERN, PART_FILE_PATTERN } from '../config/formats.ts';
import type { DrillStep } from '../config/load.ts';
import { escapeControls } from '../printable.ts';
import { AbortedError, ConfigError, ConnectionError, DrillFailedError, LimitExceededError, toError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { DrillJobData } from '../queue/jobs.ts';
import { writeDrillResult } from '../repository/records.ts';
import { changeApp, type AppLock } from '../repository/summary.ts';
import type { DrillResult, DrillStepResult } from '../repository/drill-result.ts';
import { DRILL_RESULT_FORMAT, SUMS_FILE } from '../repository/layout.ts';
import { parseSums } from '../repository/manifest.ts';
import { requireRepository } from '../repository/marker.ts';
import { newestSnapshot, type SnapshotEntry } from '../repository/read.ts';
import { openNodeSession, type ExitStatus, type NodeConnectSettings, type RemoteCommand, type SshSession } from '../ssh/session.ts';

/** Bytes of each step's stdout kept for `expect` and the result file. */
const STDOUT_KEEP_BYTES = 64 * 1024;
/** After a step's stdin broke off, how long its exit status may take to arrive. */
const EXIT_AFTER_BROKEN_STDIN_MS = 10_000;

export interface DrillContext extends NodeConnectSettings {
  jobId: string;
  repository: string;
  logger: Logger;
  /** Aborts the drill (shutdown, cancellation); then no result is written. */
  signal?: AbortSignal;
  /** Holds the app's lock while the result is written and the app's summary rebuilt (see changeApp); without it only the result is written. */
  lockApp?: AppLock;
}

/** Given a payload from Redis, throw ConfigError unless it has the shape of DrillJobData (names become paths). */
export function checkDrillJobData(data: unknown): asserts data is DrillJobData {
  const job = data as Partial<DrillJobData> | null;
  const problems: string[] = [];
  if (typeof job?.app !== 'string' || !NAME_PATTERN.test(job.app)) problems.push(`job.app: not an app name: ${JSON.stringify(job?.app)}`);
  const node = job?.node;
  if (typeof node?.name !== 'string' || !NAME_PATTERN.test(node.name) || typeof node.host !== 'string' || typeof node.user !== 'string' || !Number.isInteger(node.port)) problems.push('job.node: bad name, host, port or user');
  if (!Array.isArray(job?.steps) || job.steps.length === 0) problems.push('job.steps: missing');
  for (const step of job?.steps ?? []) {
    if (typeof step?.run !== 'string') problems.push('job.steps: a step without run');
    if (step?.stdin !== undefined && (typeof step.stdin !== 'string' || !PART_FILE_PATTERN.test(step.stdin))) problems.push(`job.steps: bad stdin ${JSON.stringify(step.stdin)}`);
  }
  if (typeof job?.limits?.timeoutMs !== 'number' || typeof job.limits.perNode !== 'number') problems.push('job.limits: missing timeoutMs or perNode');
  if (problems.length > 0) throw new ConfigError(problems);
}

async function sha256OfFile(file: string, signal: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), new Writable({
    write(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      callback();
    },
  }), { signal });
  return hash.digest('hex');
}

/**
 * The command's stdin as a Writable that forwards with backpressure, ends the
 * channel only on success, and on failure does not end it: the caller kills
 * the command, which must never see a clean end of a half-sent file.
 */
function stdinOf(command: RemoteCommand): Writable {
  const channel = command.stdin;
  let closed = false;
  const stopped = () => new Error('the command stopped reading its input (the channel closed)');
  const writable = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (closed) {
        callback(stopped());
        return;
      }
      if (channel.write(chunk)) {
        callback();
        return;
      }
      // Wait for room, unless the command goes away first (it exited without reading everything).
      const onDrain = () => {
        channel.off('close', onClose);
        callback();
      };
      const onClose = () => {
        channel.off('drain', onDrain);
        callback(stopped());
      };
      channel.once('drain', onDrain);
      channel.once('close', onClose);
    },
    final(callback) {
      channel.end();
      callback();
    },
    destroy(error, callback) {
      callback(error);
    },
  });
  channel.once('close', () => {
    closed = true;
  });
  return writable;
}

/** Describe how a step ended, for the failure reason. */
function describeStatus(status: ExitStatus): string {
  return status.signal ? `was killed by signal ${status.signal}` : `exited with code ${status.code}`;
}

/** The most of a failed step's stdout quoted in its reason when its stderr was empty. */
const STDOUT_SHOWN_BYTES = 512;

/**
 * Given a failed step's stderr tail and the end of its stdout, describe what it
 * said: its stderr, or when that was empty (a login shell of nologin speaks on
 * stdout) the end of its stdout, escaped and cut, as a snapshot's reason does.
 */
function describeStepOutput(stderr: string, stdout: Buffer): string {
  if (stderr.trim()) return `\nstderr:\n${stderr.trim()}`;
  if (stdout.length === 0) return '';
  const tail = stdout.subarray(Math.max(0, stdout.length - STDOUT_SHOWN_BYTES));
  if (tail.includes(0)) return '; stderr was empty; its stdout is binary, not shown';
  const size = stdout.length > tail.length ? `last ${tail.length} bytes` : `${tail.length} bytes`;
  return `; stderr was empty; the end of stdout (${size}): "${escapeControls(tail.toString('utf8'))}"`;
}

/** The drill's own abort signal, and what the drill needs to know about it. */
interface DrillSignal {
  signal: AbortSignal;
  /** Rejects with the signal's reason on abort: one promise for every wait on the abort, so that steps add no listeners of their own. */
  aborted: Promise<never>;
  /** Whether the worker's signal (shutdown, cancellation) aborted the drill, rather than its own timeout. */
  fromOutside(): boolean;
  /** Stop the timeout and stop listening to the worker's signal. */
  release(): void;
}

/**
 * Given the drill's payload and context, return the drill's own abort signal:
 * aborted with LimitExceededError at the app's timeout, or with the worker's
 * signal's reason (AbortedError when that is no Error).
 */
function drillSignal(data: DrillJobData, context: DrillContext): DrillSignal {
  const controller = new AbortController();
  let abortedFromOutside = false;
  const timeout = setTimeout(() => controller.abort(new LimitExceededError(`drill of ${data.app} exceeded its timeout of ${data.limits.timeoutMs} ms`)), data.limits.timeoutMs);
  const forward = () => {
    abortedFromOutside = true;
    controller.abort(context.signal?.reason instanceof Error ? context.signal.reason : new AbortedError('drill aborted'));
  };
  if (context.signal?.aborted) forward();
  context.signal?.addEventListener('abort', forward, { once: true });
  const signal = controller.signal;
  const aborted = new Promise<never>((_resolve, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
  aborted.catch(() => undefined);
  return {
    signal,
    aborted,
    fromOutside: () => abortedFromOutside,
    release() {
      clearTimeout(timeout);
      context.signal?.removeEventListener('abort', forward);
    },
  };
}

/**
 * Given the drill's payload and context, return the app's newest complete
 * snapshot. Throw RepositoryUnavailableError for a missing or unmarked root,
 * DrillFailedError when the app has no complete snapshot.
 */
async function snapshotToDrill(data: DrillJobData, context: DrillContext): Promise<SnapshotEntry> {
  // A missing or unmarked root must not read as "no snapshot to drill".
  await requireRepository(context.repository);
  const snapshot = await newestSnapshot(context.repository, data.app);
  if (!snapshot?.manifest) throw new DrillFailedError(`no complete snapshot of ${data.app} to drill`);
  return snapshot;
}

/**
 * Given the drill's payload and the snapshot, read its SHA256SUMS and check
 * every file a step streams against it; return the sums. Throw
 * DrillFailedError for a file not listed or not matching, before anything
 * reaches the drill node.
 */
async function checkStdinFiles(data: DrillJobData, snapshot: SnapshotEntry, signal: AbortSignal): Promise<{ file: string; sha256: string }[]> {
  const sums = parseSums(await readFile(path.join(snapshot.path, SUMS_FILE), 'utf8'));
  // Refuse a corrupt file before anything reaches the drill node.
  for (const file of new Set(data.steps.flatMap((step) => (step.stdin ? [step.stdin] : [])))) {
    const expected = sums.find((entry) => entry.file === file)?.sha256;
    if (!expected) throw new DrillFailedError(`${file} is not listed in ${snapshot.id}/${SUMS_FILE}`);
    const actual = await sha256OfFile(path.join(snapshot.path, file), signal);
    if (actual !== expected) {
      throw new DrillFailedError(`checksum mismatch: ${data.app}/${snapshot.id}/${file} has sha256 ${actual}, ${SUMS_FILE} says ${expected}; refusing to restore it`);
    }
  }
  return sums;
}

/** Given a command, keep the last STDOUT_KEEP_BYTES of its stdout; return what is kept so far. */
function keepStdoutTail(command: RemoteCommand): () => Buffer {
  let stdout = Buffer.alloc(0);
  command.stdout.on('data', (chunk: Buffer) => {
    stdout = Buffer.concat([stdout, chunk]);
    if (stdout.length > STDOUT_KEEP_BYTES) stdout = stdout.subarray(stdout.length - STDOUT_KEEP_BYTES);
  });
  return () => stdout;
}

/** What running the drill's steps works with. */
interface StepRun {
  data: DrillJobData;
  session: SshSession;
  drill: DrillSignal;
  snapshot: SnapshotEntry;
  sums: { file: string; sha256: string }[];
  result: DrillResult;
  /** The command running now, killed on abort. */
  running: { command: RemoteCommand | null };
  log: Logger;
}

/** One step as it runs: its command, its entry in the result, and how to record its end. */
interface RunningStep {
  label: string;
  command: RemoteCommand;
  entry: DrillStepResult;
  stdout: () => Buffer;
  finish: (status: ExitStatus) => void;
}

/**
 * Given a step with stdin and the run, stream the snapshot file into the
 * command's stdin, checking its sha256 before the end of input reaches the
 * command. Throw DrillFailedError for a changed file (the command is killed)
 * or a command that failed or exited before reading all of it,
 * ConnectionError when the connection broke, the abort's reason on abort.
 */
async function feedStdin(file: string, step: RunningStep, run: StepRun): Promise<void> {
  const { command, entry, label } = step;
  const { signal, aborted } = run.drill;
  entry.stdin = file;
  const expected = run.sums.find((candidate) => candidate.file === file)!.sha256;
  const hash = createHash('sha256');
  let bytes = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      bytes += chunk.length;
      callback(null, chunk);
    },
    flush(callback) {
      // Checked before the end of input reaches the command.
      const actual = hash.digest('hex');
      callback(actual === expected ? null : new DrillFailedError(`checksum mismatch while streaming ${file}: ${actual}, expected ${expected}`));
    },
  });
  try {
    await pipeline(createReadStream(path.join(run.snapshot.path, file)), meter, stdinOf(command), { signal });
    entry.bytesIn = bytes;
  } catch (error) {
    entry.bytesIn = bytes;
    if (signal.aborted) throw signal.reason;
    if (error instanceof DrillFailedError) {
      command.kill(); // a changed file: the command must not see the end of its input
      throw error;
    }
    // The command stopped reading (it failed, or the connection dropped): its exit status says which.
    const status = await Promise.race([command.exit, new Promise<null>((resolve) => setTimeout(() => resolve(null), EXIT_AFTER_BROKEN_STDIN_MS).unref()), aborted]);
    if (status === null || (status.code === null && status.signal === null)) {
      throw new ConnectionError(`${label}: the connection to ${run.data.node.name} broke while streaming ${file} (${bytes} bytes sent)`);
    }
    step.finish(status);
    const output = describeStepOutput(command.stderrTail(), step.stdout());
    if (status.code !== 0) throw new DrillFailedError(`${label} ${describeStatus(status)} after reading ${bytes} bytes of ${file}${output}`);
    throw new DrillFailedError(`${label} exited before reading all of ${file} (${bytes} bytes sent)${output}`);
  }
}

/**
 * Given a step, its index and the run, run it on the drill node (fed its
 * snapshot file when it names one) and record it in the result. Throw
 * DrillFailedError when it exits with a code other than 0 or its output does
 * not match `expect`, ConnectionError when the exit status never came.
 */
async function runStep(step: DrillStep, index: number, run: StepRun): Promise<void> {
  const label = `step ${index + 1} (${step.run})`;
  const stepStarted = Date.now();
  const command = await run.session.exec(step.run, { signal: run.drill.signal, stdin: step.stdin !== undefined });
  run.running.command = command;
  const stdout = keepStdoutTail(command);
  const entry: DrillStepResult = { run: step.run, exitCode: null, durationMs: 0, stdoutTail: '' };
  run.result.steps.push(entry);
  const finish = (status: ExitStatus) => {
    entry.exitCode = status.code;
    entry.durationMs = Date.now() - stepStarted;
    entry.stdoutTail = stdout().toString('utf8');
  };
  if (step.stdin) await feedStdin(step.stdin, { label, command, entry, stdout, finish }, run);
  const status = await Promise.race([command.exit, run.drill.aborted]);
  finish(status);
  if (status.code === null && status.signal === null) throw new ConnectionError(`${label}: the connection to ${run.data.node.name} dropped before the exit status arrived`);
  if (status.code !== 0) {
    throw new DrillFailedError(`${label} ${describeStatus(status)}${describeStepOutput(command.stderrTail(), stdout())}`);
  }
  if (step.expect !== undefined) {
    entry.expect = step.expect;
    entry.matched = new RegExp(step.expect, 'm').test(entry.stdoutTail);
    if (!entry.matched) throw new DrillFailedError(`${label}: output ${JSON.stringify(entry.stdoutTail.slice(-200))} does not match /${step.expect}/`);
  }
  run.running.command = null;
  run.log.info({ step: index + 1, durationMs: entry.durationMs, bytesIn: entry.bytesIn }, 'drill step passed');
}

/**
 * Given the drill's payload and context, run it and return its result (also
 * written to `<app>/.drills/`): find the newest snapshot, check the files the
 * steps stream, log in, run the steps in order. Throw DrillFailedError when a step fails, does
 * not match, or the snapshot file is corrupt (not retried: that is the
 * finding); ConnectionError and the like when the node cannot be reached or
 * the connection drops (retried); in every case after writing the failed
 * result, except when the drill was aborted from outside (shutdown).
 */
export async function runDrill(data: DrillJobData, context: DrillContext): Promise<DrillResult> {
  checkDrillJobData(data);
  const log = context.logger;
  const result: DrillResult = {
    format: DRILL_RESULT_FORMAT, app: data.app, snapshotId: null, node: data.node.name, jobId: context.jobId,
    startedAt: new Date().toISOString(), finishedAt: '', passed: false, error: null, steps: [],
  };
  const drill = drillSignal(data, context);
  const { signal } = drill;
  let session: SshSession | null = null;
  const running: StepRun['running'] = { command: null };
  const killCurrent = () => running.command?.kill();
  signal.addEventListener('abort', killCurrent);
  try {
    const snapshot = await snapshotToDrill(data, context);
    result.snapshotId = snapshot.id;
    const sums = await checkStdinFiles(data, snapshot, signal);
    session = await openNodeSession(data.node, context, signal);
    const run: StepRun = { data, session, drill, snapshot, sums, result, running, log };
    for (const [index, step] of data.steps.entries()) await runStep(step, index, run);
    result.passed = true;
    return result;
  } catch (thrown) {
    const error = signal.aborted && (thrown as Error)?.name === 'AbortError' ? toError(signal.reason) : toError(thrown);
    result.error = error.message;
    running.command?.kill();
    throw error;
  } finally {
    drill.release();
    signal.removeEventListener('abort', killCurrent);
    session?.close();
    result.finishedAt = new Date().toISOString();
    // A shutdown is not a drill result: the job goes back to the queue and runs again.
    if (!drill.fromOutside()) {
      await changeApp(context.repository, data.app, context.lockApp ?? null, () => writeDrillResult(context.repository, data.app, result),
        (error) => log.warn({ err: error.message }, 'cannot update the app summary'))
        .catch((error: unknown) => log.error({ err: toError(error).message }, 'cannot write the drill result'));
    }
  }
}
