/**
 * One attempt at a snapshot, from its private directory under
 * `<app>/.incoming/` to a committed `<app>/<id>/`. Parts are streamed to disk
 * through the inspector with the limits enforced as the bytes arrive; every
 * file and directory is fsynced before the atomic rename; `latest` is
 * repointed atomically afterwards. Until the rename nothing is visible as a
 * snapshot, and a failed attempt removes its directory.
 */
import { createHash, randomBytes } from 'node:crypto';
import { link, lstat, mkdir, open, readdir, readFile, readlink, rename, rm, stat, symlink } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AbortedError, BysuError, CommitConflictError, LimitExceededError, RepositoryUnavailableError, StorageError } from '../errors.ts';
import {
  appDirectory,
  COMMITS_DIR,
  DIR_MODE,
  FILE_MODE,
  INCOMING_DIR,
  LATEST_LINK,
  MANIFEST_FILE,
  safeJobName,
  snapshotIdCandidate,
  snapshotIdFor,
  SUMMARY_DIR,
  SUMS_FILE,
} from './layout.ts';
import { renderManifest, renderSums, type Manifest } from './manifest.ts';
import { PartInspector, type Inspection, type StreamHead } from './part-inspector.ts';
import { createPartFile } from './part-writer.ts';
import { requireRepository } from './marker.ts';
import { fsyncPath, makeDirectory, storageError, writeFileDurably } from './durable.ts';
import { listSnapshots } from './read.ts';
import { refreshAppSummary } from './summary.ts';

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
  /** Keeps the first bytes of the stream (for the reason when the command then fails). */
  head?: StreamHead;
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

export class SnapshotAttempt {
  private readonly written: { file: string; sha256: string }[] = [];
  private finished = false;

  private constructor(
    readonly repository: string,
    readonly app: string,
    readonly directory: string,
    readonly jobId: string,
    /** The marker id of the repository this attempt was opened in. */
    private readonly repositoryId: string,
  ) {}

  /**
   * Throw RepositoryUnavailableError unless the root still has a marker, and the
   * same one as when this attempt was opened: another BYSU repository mounted
   * at the same path mid-job must not receive this snapshot.
   */
  private async checkRepository(): Promise<void> {
    const marker = await requireRepository(this.repository);
    if (marker.id !== this.repositoryId) {
      throw new RepositoryUnavailableError(`repository ${this.repository} is not the one this snapshot started in (marker id ${this.repositoryId}, now ${marker.id}): was another disk mounted there? check the mount; the snapshot is not committed`);
    }
  }

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
    const marker = await requireRepository(repository);
    try {
      await makeDirectory(appDir);
      await makeDirectory(incoming);
      await mkdir(directory, { mode: DIR_MODE });
    } catch (error) {
      throw storageError(error, `create ${directory}`);
    }
    return new SnapshotAttempt(repository, app, directory, jobId, marker.id);
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
        options.head?.add(chunk);
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
   * Given a file's name in the snapshot, a complete, fsynced file elsewhere on
   * the repository's filesystem and its sha256 (checked by the caller), move
   * it into the attempt: a mirror's verified download becomes a part.
   */
  async adoptFile(file: string, source: string, sha256: string): Promise<void> {
    try {
      await rename(source, path.join(this.directory, file));
    } catch (error) {
      throw storageError(error, `move ${source} into ${this.directory}`);
    }
    this.written.push({ file, sha256 });
  }

  /**
   * Given the manifest (without id) and a fence that throws when this worker
   * no longer owns the job, commit: claim the job's commit (claimCommit),
   * choose the id, write manifest.json and SHA256SUMS, fsync, run the fence
   * again and check that the claim is still this run's, rename into place,
   * repoint `latest`. When this job id was already committed, return that
   * snapshot and discard this attempt. Throw CommitConflictError when another
   * run of the job is committing right now, or took this run's commit over
   * while it was paused (nothing of this run is then committed),
   * RepositoryUnavailableError when the root lost its marker (a disk unmounted
   * mid-job), StorageError on I/O failure.
   */
  async commit(manifest: Omit<Manifest, 'id'>, fence: () => Promise<void>, options: { id?: string } = {}): Promise<CommitResult> {
    const appDir = appDirectory(this.repository, this.app);
    const commits = path.join(appDir, COMMITS_DIR);
    await this.checkRepository();
    await fence();
    let claim: CommitClaim | null = null;
    let id: string | null = null;
    let full: Manifest | null = null;
    try {
      const claimed = await this.claimCommit(commits);
      if ('earlier' in claimed) {
        const earlier = claimed.earlier;
        await this.discard();
        // The earlier run may have died between its rename and `latest`.
        const problem = await repointLatest(appDir).then(() => undefined, (error: unknown) => describe(error));
        return { id: earlier.id, path: earlier.path, alreadyCommitted: true, manifest: earlier.manifest, ...(problem ? { problem } : {}) };
      }
      claim = claimed.claim;
      const baseId = options.id ?? snapshotIdFor(new Date(manifest.startedAt));
      // A copy keeps its source's id: that one, or none.
      for (let n = 1; n < (options.id === undefined ? 1000 : 2) && id === null; n += 1) {
        const candidate = snapshotIdCandidate(baseId, n);
        const target = path.join(appDir, candidate);
        if (await exists(target)) continue;
        full = { ...manifest, id: candidate };
        const manifestText = renderManifest(full);
        await writeFileDurably(path.join(this.directory, MANIFEST_FILE), manifestText);
        const manifestSum = createHash('sha256').update(manifestText).digest('hex');
        await writeFileDurably(path.join(this.directory, SUMS_FILE), renderSums([...this.written, { file: MANIFEST_FILE, sha256: manifestSum }]));
        await fsyncPath(this.directory);
        // Ownership checked once, long before, is no fence: this process may have been paused since.
        await fence();
        await this.confirmClaim(commits, claim);
        // Again right before the irreversible step: a disk unmounted since the last check must not
        // receive this snapshot on the filesystem underneath.
        await this.checkRepository();
        try {
          // The publishing step. A run that took the commit over has renamed this directory away
          // first, so after a pause here (even past every check above) this rename finds nothing.
          await rename(this.directory, target);
          id = candidate;
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
        }
      }
      if (id === null || full === null) {
        if (options.id !== undefined) throw new CommitConflictError(`${appDir} already has a snapshot ${options.id} that is not this copy (another one with that id); nothing is committed`);
        throw new StorageError(`no free snapshot id for ${baseId} in ${appDir}`);
      }
    } catch (error) {
      if (claim !== null) await this.recordClaim(commits, claim, { released: true }).catch(() => undefined);
      if (error instanceof BysuError) throw error;
      // A disk unmounted (or swapped) at the rename also makes the attempt directory vanish: say that, not "taken over".
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') await this.checkRepository();
      if (claim !== null && (error as NodeJS.ErrnoException).code === 'ENOENT' && !(await exists(this.directory))) {
        throw new CommitConflictError(`${this.takenOver()}: its attempt directory ${this.directory} was taken out of its reach (by a run that took the commit over, or by retention as a stale attempt)`, { cause: error });
      }
      throw storageError(error, `commit the snapshot of ${this.app}`);
    }
    this.finished = true;
    // The snapshot is committed and visible: what follows must not turn it into a failure.
    const problems: string[] = [];
    await fsyncPath(appDir).catch((error: unknown) => problems.push(`fsync ${appDir}: ${describe(error)}`));
    await this.recordClaim(commits, claim, { id })
      .catch((error: unknown) => problems.push(`update ${path.join(commits, claim.name)}: ${describe(error)}`));
    await repointLatest(appDir).catch((error: unknown) => problems.push(`repoint latest: ${describe(error)}`));
    await refreshAppSummary(this.repository, this.app).catch((error: unknown) => problems.push(`update ${SUMMARY_DIR}: ${describe(error)}`));
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
   * Given the app's `.commits` directory, claim this job's commit, or find it
   * done. Claims form a chain per job: `<job>` is generation 1, `<job>~2`,
   * `<job>~3`… follow, each created exclusively with its content complete (a
   * hard link of a written, fsynced file) and naming the claiming run's token
   * and attempt directory. Only the newest claim counts. Return the earlier
   * snapshot when one has this job id (found by the id in its manifest, claim
   * or not: a power loss may have kept the snapshot and lost the claim),
   * looked for before claiming and again after, since a run that published
   * before the claim was taken over must be seen. Throw CommitConflictError
   * when another run holds a fresh claim. A claim older than
   * STALE_COMMIT_MARKER_MS, or released by its run, is taken over: its
   * attempt directory is first renamed away (so that its run, if it is only
   * paused, can never publish it), then the next generation is claimed.
   */
  private async claimCommit(commits: string): Promise<{ earlier: CommittedSnapshot } | { claim: CommitClaim }> {
    await makeDirectory(commits);
    for (let round = 0; round < 5; round += 1) {
      const before = await this.findCommitted();
      if (before !== null) return { earlier: before };
      const newest = await this.newestClaim(commits);
      if (newest !== null && !newest.record.released && Date.now() - newest.mtimeMs < STALE_COMMIT_MARKER_MS) {
        throw new CommitConflictError(`job ${this.jobId} of ${this.app} is being committed by another worker (marker ${path.join(commits, newest.name)})`);
      }
      // A released claim's run has given up and publishes nothing; a stale one's may only be paused.
      if (newest?.record.attempt !== undefined && !newest.record.released) await this.retireAttempt(newest.record.attempt);
      const claim = await this.createClaim(commits, (newest?.generation ?? 0) + 1);
      if (claim === null) continue;
      // Every run holding an older claim has now either published already or can no longer do so.
      const after = await this.findCommitted();
      if (after !== null) {
        await this.recordClaim(commits, claim, { id: after.id }).catch(() => undefined);
        return { earlier: after };
      }
      return { claim };
    }
    throw new CommitConflictError(`cannot claim the commit of job ${this.jobId} in ${commits}: other runs kept claiming it`);
  }

  /** Return the snapshot of the app whose manifest has this job id, or null. */
  private async findCommitted(): Promise<CommittedSnapshot | null> {
    const committed = (await listSnapshots(this.repository, this.app)).find((snapshot) => snapshot.manifest?.jobId === this.jobId);
    return committed?.manifest ? { id: committed.id, path: committed.path, manifest: committed.manifest } : null;
  }

  /** Given `.commits`, return this job's newest claim with its record and age, or null when it has none. */
  private async newestClaim(commits: string): Promise<ClaimOnDisk | null> {
    const job = safeJobName(this.jobId);
    let newest: { name: string; generation: number } | null = null;
    for (const name of await readdir(commits)) {
      const generation = name === job ? 1 : name.startsWith(`${job}~`) && /^[1-9]\d*$/.test(name.slice(job.length + 1)) ? Number(name.slice(job.length + 1)) : 0;
      if (generation > (newest?.generation ?? 0)) newest = { name, generation };
    }
    if (newest === null) return null;
    const file = path.join(commits, newest.name);
    const [text, info] = await Promise.all([readFile(file, 'utf8').catch(() => ''), stat(file).catch(() => ({ mtimeMs: 0 }))]);
    return { ...newest, record: parseClaimRecord(text), mtimeMs: info.mtimeMs };
  }

  /**
   * Given `.commits` and a generation, create that claim for this run with a
   * fresh token. Return null when another run created it first.
   */
  private async createClaim(commits: string, generation: number): Promise<CommitClaim | null> {
    const job = safeJobName(this.jobId);
    const claim: CommitClaim = { name: generation === 1 ? job : `${job}~${generation}`, generation, token: randomBytes(8).toString('hex') };
    const record: ClaimRecord = { jobId: this.jobId, attempt: path.basename(this.directory), token: claim.token, generation };
    // link(2) creates the claim exclusively with its content already complete: no reader sees it half-written.
    const temporary = path.join(commits, `.${claim.name}.${claim.token}`);
    try {
      await writeFileDurably(temporary, `${JSON.stringify(record)}\n`);
      await link(temporary, path.join(commits, claim.name));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return null;
      if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') {
        throw new StorageError(`cannot claim the commit in ${commits}: the repository's filesystem refused a hard link (${code}); the commit fence needs hard links (use a POSIX filesystem such as ext4, XFS or NFS)`, { cause: error });
      }
      throw error;
    } finally {
      await rm(temporary, { force: true }).catch(() => undefined);
    }
    await fsyncPath(commits);
    return claim;
  }

  /**
   * Given `.commits` and this run's claim, throw CommitConflictError unless it
   * is still the newest claim of the job and still carries this run's token.
   */
  private async confirmClaim(commits: string, claim: CommitClaim): Promise<void> {
    const newest = await this.newestClaim(commits);
    if (newest?.generation !== claim.generation || newest.record.token !== claim.token) {
      throw new CommitConflictError(`${this.takenOver()} (its claim ${claim.name} was superseded by ${newest?.name ?? 'nothing'})`);
    }
  }

  /** Given `.commits`, this run's claim and what to add (released, or the committed id), rewrite the claim atomically. */
  private async recordClaim(commits: string, claim: CommitClaim, update: { released: true } | { id: string }): Promise<void> {
    const record: ClaimRecord = { jobId: this.jobId, attempt: path.basename(this.directory), token: claim.token, generation: claim.generation, ...update };
    const temporary = path.join(commits, `.${claim.name}.${claim.token}`);
    await writeFileDurably(temporary, `${JSON.stringify(record)}\n`);
    await rename(temporary, path.join(commits, claim.name));
  }

  /**
   * Given the name of another run's attempt directory, take it out of reach:
   * rename it (atomically, so that it races the other run's publishing rename
   * and exactly one of the two wins) to a new attempt name, then remove it.
   * A directory that is gone already was published or discarded by its run.
   */
  private async retireAttempt(name: string): Promise<void> {
    const shape = /^(.+)\.(\d+)\.[0-9a-f]{8}$/.exec(name);
    if (shape === null || name !== path.basename(name)) return; // not an attempt directory BYSU made: nothing could publish it
    const incoming = path.join(appDirectory(this.repository, this.app), INCOMING_DIR);
    const retired = path.join(incoming, `${shape[1]}.${shape[2]}.${randomBytes(4).toString('hex')}`);
    try {
      await rename(path.join(incoming, name), retired);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    // Left behind if this fails: retention removes attempt directories once they are old.
    await rm(retired, { recursive: true, force: true }).catch(() => undefined);
  }

  private takenOver(): string {
    return `the commit of job ${this.jobId} of ${this.app} was taken over by another run while this one was paused; nothing of this run is committed`;
  }
}

interface CommittedSnapshot {
  id: string;
  path: string;
  manifest: Manifest;
}

/** This run's claim on its job's commit: the file `.commits/<name>` carrying its token. */
interface CommitClaim {
  name: string;
  generation: number;
  token: string;
}

/** The content of a claim file (claims written before the chain existed hold only jobId and attempt, or jobId and id). */
interface ClaimRecord {
  jobId?: string;
  /** The claiming run's attempt directory in `.incoming/`. */
  attempt?: string;
  token?: string;
  generation?: number;
  /** Set by the run when it failed: the claim may be taken over at once. */
  released?: true;
  /** Set by the run after it published: the snapshot's id. */
  id?: string;
}

interface ClaimOnDisk {
  name: string;
  generation: number;
  record: ClaimRecord;
  mtimeMs: number;
}

/** Given a claim file's text, return its record; an unreadable one (an empty legacy marker) reads as `{}`. */
function parseClaimRecord(text: string): ClaimRecord {
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed === null || typeof parsed !== 'object') return {};
    const record = parsed as Record<string, unknown>;
    return {
      ...(typeof record.jobId === 'string' ? { jobId: record.jobId } : {}),
      ...(typeof record.attempt === 'string' ? { attempt: record.attempt } : {}),
      ...(typeof record.token === 'string' ? { token: record.token } : {}),
      ...(typeof record.generation === 'number' ? { generation: record.generation } : {}),
      ...(record.released === true ? { released: true as const } : {}),
      ...(typeof record.id === 'string' ? { id: record.id } : {}),
    };
  } catch {
    return {};
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
