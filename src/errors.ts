/**
 * The few error classes BYSU raises. Each says whether trying again can help:
 * the snapshot worker turns `retryable: false` into BullMQ's UnrecoverableError
 * so that a wrong host key or a bad job fails at once instead of four times.
 */

export abstract class BysuError extends Error {
  /** Whether a later attempt of the same operation may succeed. */
  abstract readonly retryable: boolean;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The configuration file or a job's payload is invalid. Never retried. */
export class ConfigError extends BysuError {
  readonly retryable = false;
  /** One line per problem, each naming the field (`apps[2].node: unknown node "db9"`). */
  readonly problems: string[];

  constructor(problems: string[]) {
    super(problems.join('\n'));
    this.problems = problems;
  }
}

/** The node could not be reached or the SSH session broke. Retried. */
export class ConnectionError extends BysuError {
  readonly retryable = true;
}

/** The node presented a host key we do not trust, or none is known for it. Never retried. */
export class HostKeyError extends BysuError {
  readonly retryable = false;
}

/** The SSH server refused our key. Never retried: it will refuse it again. */
export class AuthenticationError extends BysuError {
  readonly retryable = false;
}

/**
 * Exit codes with which the node says it will not run the command at all:
 * 126 (refused by the forced-command wrapper, or not executable) and 127
 * (not found). The same command gets the same answer next time.
 */
export const REFUSED_EXIT_CODES: readonly number[] = [126, 127];

/**
 * A part's command exited with a code that is not accepted, or was killed.
 * Retried, except when the node refused the command (REFUSED_EXIT_CODES).
 */
export class RemoteCommandError extends BysuError {
  /** The command's exit code; null when it was killed or the connection dropped. */
  readonly exitCode: number | null;
  readonly retryable: boolean;

  constructor(message: string, options: { exitCode?: number | null; cause?: unknown } = {}) {
    super(message, options);
    this.exitCode = options.exitCode ?? null;
    this.retryable = this.exitCode === null || !REFUSED_EXIT_CODES.includes(this.exitCode);
  }
}

/** A part failed validation: a truncated or malformed tar archive. Retried. */
export class InvalidArchiveError extends BysuError {
  readonly retryable = true;
}

/** maxBytes, stallTimeout or timeout was exceeded. Retried (the next night may be fine). */
export class LimitExceededError extends BysuError {
  readonly retryable = true;
}

/** Writing to the repository failed (disk full, permissions, I/O). Retried. */
export class StorageError extends BysuError {
  readonly retryable = true;
}

/**
 * The repository root is missing or carries no BYSU marker: most likely its
 * disk is not mounted. Never retried, and nothing is created: a retry would
 * only find the same empty mount point, and writing there would put the
 * snapshots on the wrong filesystem. The message is one line that says what
 * is wrong and what to do.
 */
export class RepositoryUnavailableError extends BysuError {
  readonly retryable = false;
}

/**
 * The commit was refused because this job already has, or is getting, a
 * snapshot from another worker (at-least-once delivery). Retried: a retry
 * finds the other commit and returns it.
 */
export class CommitConflictError extends BysuError {
  readonly retryable = true;
}

/**
 * A restore drill found a problem: a step failed, its output did not match,
 * or the snapshot file did not match its checksum. Not retried: it is the
 * finding the drill exists to report.
 */
export class DrillFailedError extends BysuError {
  readonly retryable = false;
}

/**
 * A snapshot's files do not match its SHA256SUMS, a file is missing or not a
 * regular file, or SHA256SUMS does not cover what manifest.json lists:
 * `bysu restore` and `bysu cat` refuse to hand it out as a good copy. Not
 * retried: the bytes on disk will not mend themselves.
 */
export class SnapshotDamagedError extends BysuError {
  readonly retryable = false;
}

/**
 * An archive holds an entry that would land outside the directory it is
 * extracted into (an absolute path, `..`, a link pointing out): `bysu restore
 * --extract` refuses it. Not retried.
 */
export class UnsafeArchiveError extends BysuError {
  readonly retryable = false;
}

/** The operation was cancelled (shutdown or the snapshot's own timeout). */
export class AbortedError extends BysuError {
  readonly retryable: boolean = true;
}

/**
 * The worker is stopping: the job goes back to the queue without using an
 * attempt. Retried: another worker, or this one restarted, runs it.
 */
export class WorkerShutdownError extends AbortedError {}

/**
 * Someone cancelled the job (BullMQ's cancelJob). Never retried: the
 * cancellation was the point.
 */
export class CancelledError extends AbortedError {
  override readonly retryable = false;
}

/** Redis did not answer. */
export class RedisUnavailableError extends BysuError {
  readonly retryable = true;
}

/**
 * Given anything thrown, return an Error: non-errors are wrapped so that a
 * failure reason is never `[object Object]`.
 */
export function toError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  return new Error(typeof thrown === 'string' ? thrown : JSON.stringify(thrown), { cause: thrown });
}

/** Given an error, say whether a retry may help; unknown errors are assumed transient. */
export function isRetryable(error: unknown): boolean {
  return error instanceof BysuError ? error.retryable : true;
}
