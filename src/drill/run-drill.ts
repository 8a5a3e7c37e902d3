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
import { escapeControls } from '../printable.ts';
import { AbortedError, ConfigError, ConnectionError, DrillFailedError, LimitExceededError, toError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { DrillJobData } from '../queue/jobs.ts';
import { writeDrillResult } from '../repository/attempt.ts';
import type { DrillResult, DrillStepResult } from '../repository/drill-result.ts';
import { DRILL_RESULT_FORMAT, SUMS_FILE } from '../repository/layout.ts';
import { parseSums } from '../repository/manifest.ts';
import { requireRepository } from '../repository/marker.ts';
import { newestSnapshot } from '../repository/read.ts';
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

/**
 * Given the drill's payload and context, run it and return its result (also
 * written to `<app>/.drills/`). Throw DrillFailedError when a step fails, does
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
  // One promise for every wait on the abort, so that steps add no listeners of their own.
  const aborted = new Promise<never>((_resolve, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
  aborted.catch(() => undefined);
  let session: SshSession | null = null;
  let current: RemoteCommand | null = null;
  const killCurrent = () => current?.kill();
  signal.addEventListener('abort', killCurrent);
  try {
    // A missing or unmarked root must not read as "no snapshot to drill".
    await requireRepository(context.repository);
    const snapshot = await newestSnapshot(context.repository, data.app);
    if (!snapshot?.manifest) throw new DrillFailedError(`no complete snapshot of ${data.app} to drill`);
    result.snapshotId = snapshot.id;
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
    session = await openNodeSession(data.node, context, signal);
    for (const [index, step] of data.steps.entries()) {
      const label = `step ${index + 1} (${step.run})`;
      const stepStarted = Date.now();
      const command = await session.exec(step.run, { signal, stdin: step.stdin !== undefined });
      current = command;
      let stdout = Buffer.alloc(0);
      command.stdout.on('data', (chunk: Buffer) => {
        stdout = Buffer.concat([stdout, chunk]);
        if (stdout.length > STDOUT_KEEP_BYTES) stdout = stdout.subarray(stdout.length - STDOUT_KEEP_BYTES);
      });
      const entry: DrillStepResult = { run: step.run, exitCode: null, durationMs: 0, stdoutTail: '' };
      result.steps.push(entry);
      const finish = (status: ExitStatus) => {
        entry.exitCode = status.code;
        entry.durationMs = Date.now() - stepStarted;
        entry.stdoutTail = stdout.toString('utf8');
      };
      if (step.stdin) {
        entry.stdin = step.stdin;
        const expected = sums.find((candidate) => candidate.file === step.stdin)!.sha256;
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
            callback(actual === expected ? null : new DrillFailedError(`checksum mismatch while streaming ${step.stdin}: ${actual}, expected ${expected}`));
          },
        });
        try {
          await pipeline(createReadStream(path.join(snapshot.path, step.stdin)), meter, stdinOf(command), { signal });
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
            throw new ConnectionError(`${label}: the connection to ${data.node.name} broke while streaming ${step.stdin} (${bytes} bytes sent)`);
          }
          finish(status);
          const output = describeStepOutput(command.stderrTail(), stdout);
          if (status.code !== 0) throw new DrillFailedError(`${label} ${describeStatus(status)} after reading ${bytes} bytes of ${step.stdin}${output}`);
          throw new DrillFailedError(`${label} exited before reading all of ${step.stdin} (${bytes} bytes sent)${output}`);
        }
      }
      const status = await Promise.race([command.exit, aborted]);
      finish(status);
      if (status.code === null && status.signal === null) throw new ConnectionError(`${label}: the connection to ${data.node.name} dropped before the exit status arrived`);
      if (status.code !== 0) {
        throw new DrillFailedError(`${label} ${describeStatus(status)}${describeStepOutput(command.stderrTail(), stdout)}`);
      }
      if (step.expect !== undefined) {
        entry.expect = step.expect;
        entry.matched = new RegExp(step.expect, 'm').test(entry.stdoutTail);
        if (!entry.matched) throw new DrillFailedError(`${label}: output ${JSON.stringify(entry.stdoutTail.slice(-200))} does not match /${step.expect}/`);
      }
      current = null;
      log.info({ step: index + 1, durationMs: entry.durationMs, bytesIn: entry.bytesIn }, 'drill step passed');
    }
    result.passed = true;
    return result;
  } catch (thrown) {
    const error = signal.aborted && (thrown as Error)?.name === 'AbortError' ? toError(signal.reason) : toError(thrown);
    result.error = error.message;
    current?.kill();
    throw error;
  } finally {
    clearTimeout(timeout);
    signal.removeEventListener('abort', killCurrent);
    context.signal?.removeEventListener('abort', forward);
    session?.close();
    result.finishedAt = new Date().toISOString();
    // A shutdown is not a drill result: the job goes back to the queue and runs again.
    if (!abortedFromOutside) {
      await writeDrillResult(context.repository, data.app, result).catch((error: unknown) => log.error({ err: toError(error).message }, 'cannot write the drill result'));
    }
  }
}
