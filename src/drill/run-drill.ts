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
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AbortedError, DrillFailedError, LimitExceededError, toError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { DrillJobData, DrillResult } from '../queue/jobs.ts';
import { writeDrillResult } from '../repository/attempt.ts';
import { SUMS_FILE } from '../repository/layout.ts';
import { parseSums } from '../repository/manifest.ts';
import { newestSnapshot } from '../repository/read.ts';
import { openSession, type SshIdentity, type SshSession } from '../ssh/session.ts';

/** Bytes of each step's stdout kept for `expect` and the result file. */
const STDOUT_KEEP_BYTES = 64 * 1024;

export interface DrillContext {
  jobId: string;
  repository: string;
  identity: SshIdentity;
  connectTimeoutMs: number;
  keepalive?: { intervalMs: number; countMax: number };
  logger: Logger;
  signal?: AbortSignal;
}

async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), async function* (source) {
    for await (const chunk of source) hash.update(chunk as Buffer);
  });
  return hash.digest('hex');
}

/**
 * Given the drill's payload and context, run it and return its result (also
 * written to `<app>/.drills/`). Throw DrillFailedError when a step fails, does
 * not match, or the snapshot file is corrupt; ConnectionError and the like
 * when the node cannot be reached (retried); in every case after writing the
 * failed result.
 */
export async function runDrill(data: DrillJobData, context: DrillContext): Promise<DrillResult> {
  const startedAt = new Date();
  const log = context.logger;
  const result: DrillResult = {
    format: 'bysu-drill/1', app: data.app, snapshotId: null, node: data.node.name, jobId: context.jobId,
    startedAt: startedAt.toISOString(), finishedAt: '', passed: false, error: null, steps: [],
  };
  const controller = new AbortController();
  const timeout = setTimeout(() => controller.abort(new LimitExceededError(`drill of ${data.app} exceeded its timeout of ${data.limits.timeoutMs} ms`)), data.limits.timeoutMs);
  const forward = () => controller.abort(context.signal?.reason instanceof Error ? context.signal.reason : new AbortedError('drill aborted'));
  context.signal?.addEventListener('abort', forward, { once: true });
  let session: SshSession | null = null;
  try {
    const snapshot = await newestSnapshot(context.repository, data.app);
    if (!snapshot?.manifest) throw new DrillFailedError(`no complete snapshot of ${data.app} to drill`);
    result.snapshotId = snapshot.id;
    const sums = parseSums(await readFile(path.join(snapshot.path, SUMS_FILE), 'utf8'));
    // Refuse a corrupt file before anything reaches the drill node.
    for (const file of new Set(data.steps.flatMap((step) => (step.stdin ? [step.stdin] : [])))) {
      const expected = sums.find((entry) => entry.file === file)?.sha256;
      if (!expected) throw new DrillFailedError(`${file} is not listed in ${snapshot.id}/${SUMS_FILE}`);
      const actual = await sha256OfFile(path.join(snapshot.path, file));
      if (actual !== expected) {
        throw new DrillFailedError(`checksum mismatch: ${data.app}/${snapshot.id}/${file} has sha256 ${actual}, ${SUMS_FILE} says ${expected}; refusing to restore it`);
      }
    }
    session = await openSession(
      { name: data.node.name, host: data.node.host, port: data.node.port, user: data.node.user, ...(data.node.hostKey ? { hostKey: data.node.hostKey } : {}) },
      context.identity,
      {
        readyTimeoutMs: context.connectTimeoutMs,
        signal: controller.signal,
        ...(context.keepalive ? { keepaliveIntervalMs: context.keepalive.intervalMs, keepaliveCountMax: context.keepalive.countMax } : {}),
      },
    );
    for (const [index, step] of data.steps.entries()) {
      const label = `step ${index + 1} (${step.run})`;
      const stepStarted = Date.now();
      const command = await session.exec(step.run, { stdin: step.stdin !== undefined });
      const closeOnAbort = () => command.close();
      controller.signal.addEventListener('abort', closeOnAbort, { once: true });
      let stdout = Buffer.alloc(0);
      command.stdout.on('data', (chunk: Buffer) => {
        stdout = Buffer.concat([stdout, chunk]);
        if (stdout.length > STDOUT_KEEP_BYTES) stdout = stdout.subarray(stdout.length - STDOUT_KEEP_BYTES);
      });
      const entry: DrillResult['steps'][number] = { run: step.run, exitCode: null, durationMs: 0, stdoutTail: '' };
      result.steps.push(entry);
      try {
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
              // Checked before the end of input reaches the command: a file changed while streaming gets no EOF.
              const actual = hash.digest('hex');
              callback(actual === expected ? null : new DrillFailedError(`checksum mismatch while streaming ${step.stdin}: ${actual}, expected ${expected}`));
            },
          });
          await pipeline(createReadStream(path.join(snapshot.path, step.stdin)), meter, command.stdin, { signal: controller.signal });
          entry.bytesIn = bytes;
        }
        const status = await Promise.race([
          command.exit,
          new Promise<never>((_resolve, reject) => {
            if (controller.signal.aborted) reject(controller.signal.reason);
            controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
          }),
        ]);
        entry.exitCode = status.code;
        entry.durationMs = Date.now() - stepStarted;
        entry.stdoutTail = stdout.toString('utf8');
        if (status.code !== 0) {
          const how = status.signal ? `was killed by signal ${status.signal}` : status.code === null ? 'ended without an exit status' : `exited with code ${status.code}`;
          const stderr = command.stderrTail().trim();
          throw new DrillFailedError(`${label} ${how}${stderr ? `\nstderr:\n${stderr}` : ''}`);
        }
        if (step.expect !== undefined) {
          entry.expect = step.expect;
          entry.matched = new RegExp(step.expect, 'm').test(entry.stdoutTail);
          if (!entry.matched) throw new DrillFailedError(`${label}: output ${JSON.stringify(entry.stdoutTail.slice(-200))} does not match /${step.expect}/`);
        }
        log.info({ step: index + 1, durationMs: entry.durationMs, bytesIn: entry.bytesIn }, 'drill step passed');
      } catch (error) {
        command.close();
        entry.durationMs = Date.now() - stepStarted;
        entry.stdoutTail ||= stdout.toString('utf8');
        throw error;
      } finally {
        controller.signal.removeEventListener('abort', closeOnAbort);
      }
    }
    result.passed = true;
    return result;
  } catch (thrown) {
    const error = toError(thrown);
    result.error = error.message;
    throw error;
  } finally {
    clearTimeout(timeout);
    context.signal?.removeEventListener('abort', forward);
    session?.close();
    result.finishedAt = new Date().toISOString();
    await writeDrillResult(context.repository, data.app, result).catch((error: unknown) => log.error({ err: toError(error).message }, 'cannot write the drill result'));
  }
}
