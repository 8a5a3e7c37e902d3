/**
 * One attempt at a snapshot, from its private directory under
 * `<app>/.incoming/` to a committed `<app>/<id>/`. Parts are streamed to disk
 * through the inspector with the limits enforced as the bytes arrive; every
 * file and directory is fsynced before the atomic rename; `latest` is
 * repointed atomically afterwards. Until the rename nothing is visible as a
 * snapshot, and a failed attempt removes its directory.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, readlink, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AbortedError, BysuError, CommitConflictError, LimitExceededError, StorageError } from '../errors.ts';
import {
  appDirectory,
  COMMITS_DIR,
  DIR_MODE,
  DRILLS_DIR,
  FILE_MODE,
  INCOMING_DIR,
  LATEST_LINK,
  MANIFEST_FILE,
  safeJobName,
  snapshotIdCandidate,
  snapshotIdFor,
  SUMS_FILE,
} from './layout.ts';
import { renderManifest, renderSums, type Manifest } from './manifest.ts';
import type { DrillResult } from '../queue/jobs.ts';
import { PartInspector, type Inspection } from './part-inspector.ts';
import { createPartFile } from './part-writer.ts';
import { requireRepository } from './marker.ts';
import { listSnapshots } from './read.ts';

/**
 * A commit marker older than this, whose job has no snapshot, was left by a
 * crash between marker and rename (milliseconds apart) and may be replaced.
 * Shorter than the default retry span, so a crash does not cost the night.
 */
export const STALE_COMMIT_MARKER_MS = 2 * 60_000;

export interface WritePartOptions {
  /** Bytes this part may still take before the snapshot exceeds maxBytes. */
  maxBytes: number;
  /** The snapshot's maxBytes, for the message. */
  snapshotMaxBytes: number;
  /** No byte for this long aborts the part. */
  stallTimeoutMs: number;
  /** Aborts the part (timeout, shutdown). */
  signal?: AbortSignal;
  /** Called with the part's byte count as it grows (throttle it yourself). */
  onBytes?: (bytes: number) => void;
}

export interface CommitResult {
  id: string;
  path: string;
  /** True when this job had already been committed (by an earlier run of it): nothing new was written. */
  alreadyCommitted: boolean;
  manifest: Manifest;
  /** Set when the snapshot is committed but a step after the rename (fsync, marker, `latest`) failed. */
  problem?: string;
}

/** Given an fs error, return a StorageError that says what happened in words an operator knows. */
export function storageError(error: unknown, doing: string): Error {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === undefined) return error as Error;
  const reason = code === 'ENOSPC' ? 'the repository disk is full (ENOSPC)'
    : code === 'EDQUOT' ? 'the repository quota is exceeded (EDQUOT)'
      : code === 'EACCES' || code === 'EPERM' ? `permission denied (${code})`
        : code === 'EROFS' ? 'the repository is read-only (EROFS)'
          : (error as Error).message.startsWith(`${code}:`) ? (error as Error).message : `${code}: ${(error as Error).message}`;
  return new StorageError(`cannot ${doing}: ${reason}`, { cause: error });
}

async function fsyncPath(target: string): Promise<void> {
  const handle = await open(target, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Create dir (mode 0700) unless it exists. Never with `recursive`: its parent
 * must already exist, so that no path of the repository writer can create
 * the repository root (or an app directory on an unmounted mount point).
 */
async function makeDirectory(dir: string): Promise<void> {
  try {
    await mkdir(dir, { mode: DIR_MODE });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
}

async function writeFileDurably(file: string, text: string): Promise<void> {
  const handle = await open(file, 'w', FILE_MODE);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export class SnapshotAttempt {
  private readonly written: { file: string; sha256: string }[] = [];
  private finished = false;

  private constructor(
    readonly repository: string,
    readonly app: string,
    readonly directory: string,
    readonly jobId: string,
  ) {}

  /**
   * Given the repository, app and job, create the attempt's private directory
   * `<app>/.incoming/<job>.<attempt>.<random>` (and the app's directory the
   * first time). Throw RepositoryUnavailableError when the root is missing or
   * unmarked (nothing is created), StorageError when it cannot write.
   */
  static async open(repository: string, app: string, jobId: string, attempt: number): Promise<SnapshotAttempt> {
    const appDir = appDirectory(repository, app);
    const incoming = path.join(appDir, INCOMING_DIR);
    const directory = path.join(incoming, `${safeJobName(jobId)}.${attempt}.${randomBytes(4).toString('hex')}`);
    await requireRepository(repository);
    try {
      await makeDirectory(appDir);
      await makeDirectory(incoming);
      await mkdir(directory, { mode: DIR_MODE });
    } catch (error) {
      throw storageError(error, `create ${directory}`);
    }
    return new SnapshotAttempt(repository, app, directory, jobId);
  }

  /**
   * Given a part's file name and its byte stream, write it into the attempt,
   * hashing and (for tar parts) validating as it streams, and fsync it.
   * Throw LimitExceededError (maxBytes, stall), InvalidArchiveError,
   * StorageError, AbortedError, or the source's own error.
   */
  async writePart(file: string, source: Readable, options: WritePartOptions): Promise<Inspection> {
    const target = path.join(this.directory, file);
    const inspector = new PartInspector(file, { hash: false });
    let stalled: NodeJS.Timeout | undefined;
    const meter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        stalled?.refresh();
        if (inspector.bytes + chunk.length > options.maxBytes) {
          callback(new LimitExceededError(`snapshot exceeds maxBytes (${options.snapshotMaxBytes} bytes) while writing ${file}`));
          return;
        }
        try {
          const pending = inspector.update(chunk);
          options.onBytes?.(inspector.bytes);
          if (pending) pending.then(() => callback(null, chunk), callback);
          else callback(null, chunk);
        } catch (error) {
          callback(error as Error);
        }
      },
    });
    stalled = setTimeout(() => {
      meter.destroy(new LimitExceededError(`no data received for ${options.stallTimeoutMs} ms (stallTimeout) while writing ${file}`));
    }, options.stallTimeoutMs);
    // Hashed, written and fsynced on the part writer's thread; the pipeline settles after the file is closed.
    const sink = createPartFile(target, FILE_MODE);
    try {
      await pipeline(source, meter, sink, options.signal ? { signal: options.signal } : {});
      const checked = await inspector.finishArchive();
      const written = sink.result!;
      if (written.bytes !== checked.bytes) throw new StorageError(`${target}: ${written.bytes} bytes written, ${checked.bytes} received`);
      const inspection: Inspection = { ...checked, sha256: written.sha256 };
      this.written.push({ file, sha256: inspection.sha256 });
      return inspection;
    } catch (error) {
      inspector.discard();
      if ((error as Error).name === 'AbortError') {
        const reason: unknown = options.signal?.reason;
        throw reason instanceof Error ? reason : new AbortedError(`writing ${file} was aborted`);
      }
      if ((error as NodeJS.ErrnoException).code !== undefined && (error as NodeJS.ErrnoException).syscall !== undefined) {
        throw storageError(error, `write ${target}`);
      }
      throw error;
    } finally {
      clearTimeout(stalled);
      // Before the caller removes the attempt: the thread must not still be creating or writing the file.
      await sink.closeFile();
    }
  }

  /**
   * Given the manifest (without id) and a fence that throws when this worker
   * no longer owns the job, commit: claim the job's commit marker, choose the
   * id, write manifest.json and SHA256SUMS, fsync, rename into place, repoint
   * `latest`. When this job id was already committed, return that snapshot
   * and discard this attempt. Throw CommitConflictError when another run of
   * the job is committing right now, RepositoryUnavailableError when the
   * root lost its marker (a disk unmounted mid-job), StorageError on I/O
   * failure.
   */
  async commit(manifest: Omit<Manifest, 'id'>, fence: () => Promise<void>): Promise<CommitResult> {
    const appDir = appDirectory(this.repository, this.app);
    const marker = path.join(appDir, COMMITS_DIR, safeJobName(this.jobId));
    await requireRepository(this.repository);
    await fence();
    let claimedMarker = false;
    let id: string | null = null;
    let full: Manifest | null = null;
    try {
      const earlier = await this.claimCommit(marker);
      if (earlier !== null) {
        await this.discard();
        // The earlier run may have died between its rename and `latest`.
        const problem = await repointLatest(appDir).then(() => undefined, (error: unknown) => describe(error));
        return { id: earlier.id, path: earlier.path, alreadyCommitted: true, manifest: earlier.manifest, ...(problem ? { problem } : {}) };
      }
      claimedMarker = true;
      const baseId = snapshotIdFor(new Date(manifest.startedAt));
      for (let n = 1; n < 1000 && id === null; n += 1) {
        const candidate = snapshotIdCandidate(baseId, n);
        const target = path.join(appDir, candidate);
        if (await exists(target)) continue;
        full = { ...manifest, id: candidate };
        const manifestText = renderManifest(full);
        await writeFileDurably(path.join(this.directory, MANIFEST_FILE), manifestText);
        const manifestSum = createHash('sha256').update(manifestText).digest('hex');
        await writeFileDurably(path.join(this.directory, SUMS_FILE), renderSums([...this.written, { file: MANIFEST_FILE, sha256: manifestSum }]));
        await fsyncPath(this.directory);
        // Again right before the irreversible step: a disk unmounted since the last check must not
        // receive this snapshot on the filesystem underneath.
        await requireRepository(this.repository);
        try {
          await rename(this.directory, target);
          id = candidate;
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
        }
      }
      if (id === null || full === null) throw new StorageError(`no free snapshot id for ${baseId} in ${appDir}`);
    } catch (error) {
      if (claimedMarker) await rm(marker, { force: true }).catch(() => undefined);
      throw error instanceof BysuError ? error : storageError(error, `commit the snapshot of ${this.app}`);
    }
    this.finished = true;
    // The snapshot is committed and visible: what follows must not turn it into a failure.
    const problems: string[] = [];
    await fsyncPath(appDir).catch((error: unknown) => problems.push(`fsync ${appDir}: ${describe(error)}`));
    await writeFile(marker, `${JSON.stringify({ jobId: this.jobId, id })}\n`, { mode: FILE_MODE })
      .catch((error: unknown) => problems.push(`update ${marker}: ${describe(error)}`));
    await repointLatest(appDir).catch((error: unknown) => problems.push(`repoint latest: ${describe(error)}`));
    const result: CommitResult = { id, path: path.join(appDir, id), alreadyCommitted: false, manifest: full };
    if (problems.length > 0) result.problem = problems.join('; ');
    return result;
  }

  /** Remove the attempt's directory and everything in it (after a failure). Safe to call twice. */
  async discard(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    await rm(this.directory, { recursive: true, force: true });
  }

  /**
   * Create the job's commit marker exclusively (and fsync its directory).
   * Return null when we now own the commit; the existing snapshot when the job
   * was committed before (found by the job id in its manifest, marker or not:
   * a power loss may have kept the snapshot and lost the marker); throw
   * CommitConflictError when another run of the job holds a fresh marker.
   */
  private async claimCommit(marker: string): Promise<{ id: string; path: string; manifest: Manifest } | null> {
    const commits = path.dirname(marker);
    await makeDirectory(commits);
    for (let round = 0; round < 2; round += 1) {
      const committed = (await listSnapshots(this.repository, this.app)).find((snapshot) => snapshot.manifest?.jobId === this.jobId);
      if (committed?.manifest) return { id: committed.id, path: committed.path, manifest: committed.manifest };
      let handle;
      try {
        handle = await open(marker, 'wx', FILE_MODE);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        const age = Date.now() - (await stat(marker).catch(() => ({ mtimeMs: 0 }))).mtimeMs;
        if (age < STALE_COMMIT_MARKER_MS) {
          throw new CommitConflictError(`job ${this.jobId} of ${this.app} is being committed by another worker (marker ${marker})`);
        }
        await rm(marker, { force: true });
        continue;
      }
      try {
        await handle.writeFile(`${JSON.stringify({ jobId: this.jobId, attempt: path.basename(this.directory) })}\n`);
        await handle.sync();
      } catch (error) {
        await rm(marker, { force: true }).catch(() => undefined);
        throw error;
      } finally {
        await handle.close();
      }
      await fsyncPath(commits);
      return null;
    }
    throw new CommitConflictError(`cannot claim the commit marker ${marker}`);
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function exists(target: string): Promise<boolean> {
  try {
    await lstat(target);
    return true;
  } catch {
    return false;
  }
}

/**
 * Point `<app>/latest` at the newest complete snapshot, atomically (a new
 * symlink renamed over the old one). Re-checks afterwards so that two
 * committers racing end with the newest one.
 */
export async function repointLatest(appDir: string): Promise<string | null> {
  const repository = path.dirname(appDir);
  const app = path.basename(appDir);
  for (let round = 0; round < 5; round += 1) {
    const newest = (await listSnapshots(repository, app)).find((snapshot) => snapshot.manifest !== null);
    if (!newest) return null;
    const link = path.join(appDir, LATEST_LINK);
    const existing = await lstat(link).catch(() => null);
    // Never replace a `latest` that BYSU did not create (a file or directory someone put there).
    if (existing !== null && !existing.isSymbolicLink()) return null;
    const current = await readlink(link).catch(() => null);
    if (current === newest.id) return newest.id;
    const temporary = path.join(appDir, `.latest.${randomBytes(4).toString('hex')}`);
    await symlink(newest.id, temporary);
    await rename(temporary, link);
    await fsyncPath(appDir);
  }
  return (await readlink(path.join(appDir, LATEST_LINK)).catch(() => null));
}


/**
 * Given the repository, an app and a drill result, write it as
 * `<app>/.drills/<finishedAt>-<jobId>.json` (pretty JSON, 0600), atomically.
 * Throw RepositoryUnavailableError when the root is missing or unmarked
 * (nothing is created), StorageError when it cannot write.
 */
export async function writeDrillResult(repository: string, app: string, result: DrillResult): Promise<string> {
  const appDir = appDirectory(repository, app);
  const dir = path.join(appDir, DRILLS_DIR);
  const name = `${result.finishedAt.replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z')}-${safeJobName(result.jobId)}.json`;
  const target = path.join(dir, name);
  const temporary = path.join(dir, `.${name}.${randomBytes(4).toString('hex')}`);
  await requireRepository(repository);
  try {
    await makeDirectory(appDir);
    await makeDirectory(dir);
    await writeFileDurably(temporary, `${JSON.stringify(result, null, 2)}\n`);
    await rename(temporary, target);
  } catch (error) {
    await rm(temporary, { force: true }).catch(() => undefined);
    throw storageError(error, `write the drill result ${target}`);
  }
  return target;
}
