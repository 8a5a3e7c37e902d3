/**
 * One snapshot copied from a mirror's source into this repository, under the
 * same id, as the snapshot worker commits its own: nothing is visible until
 * every file is here and matches, then one rename publishes it.
 *
 * The files download into `<app>/.incoming/mirror.<id>/`, which outlives a
 * failed attempt: the next attempt asks only for the bytes it lacks
 * (`Range` from the size on disk, `If-Range` on the source's ETag, so a file
 * that changed there is sent whole instead of spliced). Each file is hashed
 * as it arrives (a resumed one: the bytes on disk first) and must match the
 * sha256 of the source's manifest.json, which must agree with its
 * SHA256SUMS and its listing; a file that does not is deleted and the copy
 * refused, naming it. The committed manifest.json is the source's with
 * `mirroredFrom` added; SHA256SUMS is written anew for it.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Transform, Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { PART_FILE_PATTERN, RESERVED_FILE_NAMES } from '../config/formats.ts';
import { CommitConflictError, LimitExceededError, SnapshotDamagedError } from '../errors.ts';
import { SnapshotAttempt, type CommitResult } from '../repository/attempt.ts';
import { fsyncPath, makeDirectory, storageError } from '../repository/durable.ts';
import { appDirectory, DIR_MODE, FILE_MODE, INCOMING_DIR, MANIFEST_FILE, SUMS_FILE } from '../repository/layout.ts';
import { isManifest, parseSums, type Manifest } from '../repository/manifest.ts';
import { requireRepository } from '../repository/marker.ts';
import { listSnapshots } from '../repository/read.ts';
import type { ReadThrottle } from '../repository/read-throttle.ts';
import { MirrorSourceError, type Download, type MirrorSource, type SourceSnapshot } from './source.ts';

/** A copy's download directory in `.incoming`: `mirror.<snapshot id>`. */
export const PARTIAL_PREFIX = 'mirror.';
export const partialDirectory = (repository: string, app: string, id: string) => path.join(appDirectory(repository, app), INCOMING_DIR, `${PARTIAL_PREFIX}${id}`);

export interface CopyOptions {
  signal?: AbortSignal;
  /** Paces every byte received (mirrors[].maxRate, shared by the source's downloads). */
  throttle?: ReadThrottle;
  /** No byte for this long aborts the file (it resumes at the next attempt). */
  stallTimeoutMs: number;
  /** Throws when this worker no longer owns the job; run before the publishing rename. */
  fence: () => Promise<void>;
  /** Runs the commit holding the app's lock (so retention does not run meanwhile). */
  lockApp?: <T>(fn: (lease?: { confirm(): Promise<void> }) => Promise<T>) => Promise<T>;
  /** Called as bytes arrive (the copy's total so far). */
  onBytes?: (received: number) => void;
}

export interface CopyResult {
  id: string;
  /** The copy was here already (an earlier run committed it): nothing was downloaded. */
  alreadyHere: boolean;
  /** The snapshot's size. */
  bytes: number;
  /** Bytes received from the source by this run, and bytes an earlier, interrupted run had received and this one kept. */
  received: number;
  resumed: number;
  committed?: CommitResult;
}

/**
 * Given the source's manifest.json and SHA256SUMS texts and its listing of
 * the snapshot, return the manifest; throw SnapshotDamagedError naming the
 * first file on which they disagree (the copy is refused).
 */
export function checkSourceSnapshot(app: string, listed: SourceSnapshot, manifestText: string, sumsText: string, sourceName: string): Manifest {
  const where = `${app}/${listed.id} on mirror source ${sourceName}`;
  const refuse = (problem: string) => new SnapshotDamagedError(`${where}: ${problem}; the copy is refused (run \`bysu verify ${app}\` on the source)`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(manifestText);
  } catch {
    throw refuse(`${MANIFEST_FILE} is not JSON`);
  }
  if (!isManifest(parsed)) throw refuse(`${MANIFEST_FILE} lacks what a manifest holds`);
  const manifest = parsed;
  // What `bysu list`, `restore` and `status` read of a copy's manifest is there, of the right kind.
  const missing: string[] = (['format', 'node', 'host', 'jobId', 'bysuVersion'] as const).filter((key) => typeof manifest[key] !== 'string');
  if (manifest.trigger !== 'schedule' && manifest.trigger !== 'manual') missing.push('trigger');
  if (!Number.isInteger(manifest.attempt)) missing.push('attempt');
  if (missing.length > 0) throw refuse(`${MANIFEST_FILE} lacks ${missing.join(', ')} (or has them of the wrong kind)`);
  if (manifest.id !== listed.id || manifest.app !== app) throw refuse(`${MANIFEST_FILE} names ${manifest.app}/${manifest.id}`);
  let sums: { file: string; sha256: string }[];
  try {
    sums = parseSums(sumsText);
  } catch (error) {
    throw refuse(`${SUMS_FILE}: ${(error as Error).message}`);
  }
  const sumOf = new Map(sums.map(({ file, sha256 }) => [file, sha256]));
  const manifestSum = createHash('sha256').update(manifestText).digest('hex');
  if (sumOf.get(MANIFEST_FILE) !== manifestSum) throw refuse(`${MANIFEST_FILE}: its sha256 ${manifestSum} is not the one ${SUMS_FILE} lists (${sumOf.get(MANIFEST_FILE) ?? 'none'})`);
  for (const part of manifest.parts) {
    if (RESERVED_FILE_NAMES.includes(part.file) || !PART_FILE_PATTERN.test(part.file)) throw refuse(`${MANIFEST_FILE} names a part ${JSON.stringify(part.file)}, which no part may be called`);
    if (sumOf.get(part.file) !== part.sha256) throw refuse(`${part.file}: ${SUMS_FILE} lists sha256 ${sumOf.get(part.file) ?? 'none'}, ${MANIFEST_FILE} ${part.sha256}`);
    const file = listed.files.find((candidate) => candidate.file === part.file);
    if (file?.sha256 !== part.sha256 || file.bytes !== part.bytes) throw refuse(`${part.file}: the listing and ${MANIFEST_FILE} disagree on its size or sha256`);
  }
  const extra = sums.map(({ file }) => file).filter((file) => file !== MANIFEST_FILE && !manifest.parts.some((part) => part.file === file));
  if (extra.length > 0) throw refuse(`${SUMS_FILE} lists ${extra.join(', ')}, which ${MANIFEST_FILE} does not`);
  return manifest;
}

/** Given a file, return the sha256 state of its first bytes (all of them), read from disk. */
async function hashOnDisk(file: string, bytes: number): Promise<Hash> {
  const hash = createHash('sha256');
  if (bytes === 0) return hash;
  await pipeline(createReadStream(file, { start: 0, end: bytes - 1 }), new Writable({
    write(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      callback();
    },
  }));
  return hash;
}

/** A download in progress is written under this name in the partial directory (no part name starts with a dot). */
const FRESH_PREFIX = '.new.';

/** What a part's download left: the bytes received and kept, and the file's identity (device and inode) as this run wrote it. */
interface PartOnDisk {
  received: number;
  resumed: number;
  identity: string;
}

const identityOf = (info: { dev: number; ino: number }) => `${info.dev}:${info.ino}`;

/**
 * Given the source, the app, the snapshot, a part's size and sha256 and the
 * partial directory, bring the file to its full size there (resuming from
 * what is on disk), fsync it and check its sha256. Return the bytes received
 * and kept, and the identity of the file written. Throw SnapshotDamagedError
 * (the file deleted) when it does not match; MirrorSourceError,
 * LimitExceededError (stall), StorageError or the signal's reason otherwise,
 * the bytes received so far kept for the next attempt.
 *
 * Each run writes a file of its own: the kept bytes are copied into a new
 * file, which then replaces the old name, and the download goes on in it.
 * A run that lost its job while frozen (SIGSTOP, a long pause) may still
 * write what its socket held once it wakes: into its own file, which is no
 * longer the one named here, never into the file another run goes on with
 * and publishes.
 */
async function downloadPart(
  source: MirrorSource, app: string, id: string, part: { file: string; bytes: number; sha256: string }, directory: string, options: CopyOptions,
  counted: (bytes: number) => void,
): Promise<PartOnDisk> {
  const target = path.join(directory, part.file);
  const onDisk = await stat(target).catch(() => null);
  let have = onDisk === null || onDisk.size > part.bytes ? 0 : onDisk.size;
  if (onDisk !== null && have === part.bytes) {
    // Whole already (an earlier run downloaded it, then failed before its commit): checked as it is.
    const sha256 = (await hashOnDisk(target, have)).digest('hex');
    if (sha256 === part.sha256) return { received: 0, resumed: have, identity: identityOf(onDisk) };
    have = 0;
  }
  let resumed = have;
  let received = 0;
  const download = part.bytes === 0 ? null : await source.download(app, id, part.file, part.bytes, have, options.signal);
  if (download !== null && download.status === 200 && have > 0) {
    // The source sent the whole file (If-Range did not match): what is on disk is not a prefix of it.
    have = 0;
    resumed = 0;
  }
  const hash = createHash('sha256');
  const fresh = path.join(directory, `${FRESH_PREFIX}${randomBytes(4).toString('hex')}.${part.file}`);
  let handle: FileHandle;
  try {
    handle = await open(fresh, 'wx', FILE_MODE);
  } catch (error) {
    download?.body.destroy();
    throw storageError(error, `create ${fresh}`);
  }
  const sink = handle.createWriteStream({ autoClose: false, highWaterMark: 1024 * 1024 });
  let identity = '';
  let sinkError: Error | undefined;
  sink.on('error', (error) => { sinkError ??= error; });
  const put = async (chunk: Buffer) => {
    if (sinkError) throw sinkError;
    if (!sink.write(chunk)) await once(sink, 'drain');
  };
  let copyingKept = false;
  let startOver = false;
  try {
    // The kept bytes, copied (and hashed) into this run's own file, which then takes the name.
    if (have > 0) {
      copyingKept = true;
      for await (const chunk of createReadStream(target, { start: 0, end: have - 1 }) as AsyncIterable<Buffer>) {
        hash.update(chunk);
        await put(chunk);
      }
      copyingKept = false;
    }
    try {
      await rename(fresh, target);
    } catch (error) {
      // Gone: another run of the copy removed it, having taken the job over while this one was frozen.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new CommitConflictError(`${app}/${id}: ${fresh} was removed by another run of the copy (it took the job over); nothing of this run is committed`);
      throw storageError(error, `rename ${fresh} to ${target}`);
    }
    if (download !== null) await receive(source, app, id, part, download, options, { have, hash, put, counted: (bytes) => { received += bytes; counted(bytes); } });
    sink.end();
    await finished(sink);
    await handle.sync();
    identity = identityOf(await handle.stat());
  } catch (error) {
    download?.body.destroy();
    // Every byte counted as received lands before the next attempt measures what is on disk.
    if (!sinkError && !sink.writableEnded) sink.end();
    await finished(sink).catch(() => undefined);
    if (options.signal?.aborted) throw options.signal.reason;
    // No room for the kept bytes twice: they go, and the file is asked for whole (it fits where they were).
    const full = (sinkError ?? error) as NodeJS.ErrnoException;
    if (copyingKept && (full.code === 'ENOSPC' || full.code === 'EDQUOT')) startOver = true;
    else if (sinkError) throw storageError(sinkError, `write ${target}`);
    else throw error;
  } finally {
    sink.destroy();
    await handle.close().catch(() => undefined);
    await rm(fresh, { force: true });
  }
  if (startOver) {
    await rm(target, { force: true });
    return downloadPart(source, app, id, part, directory, options, counted);
  }
  if (have + received < part.bytes) {
    throw new MirrorSourceError(`mirror source ${source.name} ended ${app}/${id}/${part.file} after ${have + received} of ${part.bytes} bytes; the next attempt resumes from there`, { retryable: true });
  }
  const sha256 = hash.digest('hex');
  if (sha256 !== part.sha256 && resumed > 0) {
    // The bytes kept from an earlier attempt may be of a file the source has replaced since (same id and size:
    // If-Range cannot tell). Not the source's damage: the next attempt copies the file whole.
    await rm(target, { force: true });
    throw new MirrorSourceError(`${app}/${id}/${part.file} from mirror source ${source.name} does not match its manifest after a resumed download: the file changed on the source since the first bytes were copied; the next attempt copies it whole`, { retryable: true });
  }
  if (sha256 !== part.sha256) {
    await rm(target, { force: true });
    throw new SnapshotDamagedError(`${app}/${id} on mirror source ${source.name}: ${part.file} arrived with sha256 ${sha256}, but its manifest says ${part.sha256}; the file is refused and the copy not committed (run \`bysu verify ${app}\` on the source)`);
  }
  return { received, resumed, identity };
}

/**
 * Given a download's answer and where the file stands (bytes kept, the hash
 * so far, how to write a chunk), receive the rest: paced by the throttle,
 * cut after stallTimeout without a byte, refused beyond the part's size.
 */
async function receive(
  source: MirrorSource, app: string, id: string, part: { file: string; bytes: number }, download: Download, options: CopyOptions,
  into: { have: number; hash: Hash; put: (chunk: Buffer) => Promise<void>; counted: (bytes: number) => void },
): Promise<void> {
  let stalled: NodeJS.Timeout | undefined;
  let sent = 0;
  let written = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      stalled?.refresh();
      sent += chunk.length;
      if (into.have + sent > part.bytes) {
        callback(new MirrorSourceError(`mirror source ${source.name} sent more than the ${part.bytes} bytes of ${app}/${id}/${part.file}`, { retryable: true }));
        return;
      }
      callback(null, chunk);
    },
  });
  stalled = setTimeout(() => meter.destroy(new LimitExceededError(`no data from mirror source ${source.name} for ${options.stallTimeoutMs} ms while copying ${app}/${id}/${part.file}`)), options.stallTimeoutMs);
  // Not piped into the file: a pipeline would destroy the write stream on a broken download, and what it
  // buffered would be lost and asked for again. Counted as received once handed to the file.
  const write = async (chunks: AsyncIterable<Buffer>) => {
    for await (const chunk of chunks) {
      await into.put(chunk);
      written += chunk.length;
      into.hash.update(chunk);
      into.counted(chunk.length);
    }
  };
  try {
    const signal = options.signal ? { signal: options.signal } : {};
    if (options.throttle) await pipeline(download.body, options.throttle.stream(), meter, write, signal);
    else await pipeline(download.body, meter, write, signal);
  } catch (error) {
    if (options.signal?.aborted || error instanceof MirrorSourceError || error instanceof LimitExceededError || (error as NodeJS.ErrnoException).syscall !== undefined) throw error;
    throw new MirrorSourceError(`copying ${app}/${id}/${part.file} from mirror source ${source.name} broke off after ${into.have + written} of ${part.bytes} bytes: ${(error as Error).message}; the next attempt resumes from there`, { retryable: true, cause: error });
  } finally {
    clearTimeout(stalled);
  }
}

/**
 * Given the repository, the source, the app and one of the source's
 * snapshots, copy it here under the same id, atomically; return what was
 * done. A snapshot with that id that is already a copy of the same job is
 * left as it is. Throw SnapshotDamagedError (the source's files disagree with
 * its manifest), MirrorSourceError, CommitConflictError (this repository
 * has another snapshot with that id), StorageError,
 * RepositoryUnavailableError, or the signal's reason.
 */
export async function copySnapshot(repository: string, source: MirrorSource, app: string, listed: SourceSnapshot, options: CopyOptions): Promise<CopyResult> {
  await requireRepository(repository);
  const existing = (await listSnapshots(repository, app)).find((snapshot) => snapshot.id === listed.id);
  if (existing?.manifest) return { id: listed.id, alreadyHere: true, bytes: existing.manifest.bytes, received: 0, resumed: 0 };

  const [manifestText, sumsText] = await Promise.all([
    source.text(app, listed.id, MANIFEST_FILE, options.signal),
    source.text(app, listed.id, SUMS_FILE, options.signal),
  ]);
  const manifest = checkSourceSnapshot(app, listed, manifestText, sumsText, source.name);

  const directory = partialDirectory(repository, app, listed.id);
  await makeDirectory(appDirectory(repository, app));
  await makeDirectory(path.dirname(directory));
  await mkdir(directory, { mode: DIR_MODE }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
  // Files a crashed run was writing when it died (their bytes were never counted as kept).
  for (const name of await readdir(directory)) if (name.startsWith(FRESH_PREFIX)) await rm(path.join(directory, name), { force: true });
  let received = 0;
  let resumed = 0;
  let soFar = 0;
  const identities = new Map<string, string>();
  for (const part of manifest.parts) {
    const outcome = await downloadPart(source, app, listed.id, part, directory, options, (bytes) => {
      soFar += bytes;
      options.onBytes?.(soFar);
    });
    received += outcome.received;
    resumed += outcome.resumed;
    identities.set(part.file, outcome.identity);
    // Still this run's job? (A run frozen past its lock wakes here, its files no longer the ones named.)
    await options.fence();
  }
  await fsyncPath(directory);
  // A run that lost its job must not take the files another run has gone on with.
  for (const part of manifest.parts) {
    const now = await stat(path.join(directory, part.file)).catch(() => null);
    if (now === null || identityOf(now) !== identities.get(part.file) || now.size !== part.bytes) {
      throw new CommitConflictError(`${app}/${listed.id}: ${part.file} in ${directory} is no longer the file this run wrote (another run of the copy took it over); nothing of this run is committed`);
    }
  }

  // The job id the commit fence is keyed by is this copy's own, not the source's manifest's: a source that
  // reuses a job id must not make a new snapshot read as one copied already.
  const attempt = await SnapshotAttempt.open(repository, app, `mirror-${listed.id}`, 1);
  try {
    for (const part of manifest.parts) await attempt.adoptFile(part.file, path.join(directory, part.file), part.sha256);
    const { id: _id, ...rest } = manifest;
    const copy: Omit<Manifest, 'id'> = { ...rest, mirroredFrom: { source: source.name, url: source.url, copiedAt: new Date().toISOString() } };
    const commit = (lease?: { confirm(): Promise<void> }) => attempt.commit(copy, async () => {
      await options.fence();
      await lease?.confirm();
    }, { id: listed.id });
    const committed = options.lockApp ? await options.lockApp(commit) : await commit();
    await rm(directory, { recursive: true, force: true });
    return { id: committed.id, alreadyHere: committed.alreadyCommitted, bytes: manifest.bytes, received, resumed, committed };
  } catch (error) {
    // The verified files go back where the next attempt finds them (not by a run that lost its job: the run
    // that took it over has the directory now).
    if (error instanceof CommitConflictError) throw error;
    for (const part of manifest.parts) {
      await rename(path.join(attempt.directory, part.file), path.join(directory, part.file)).catch(() => undefined);
    }
    throw error;
  } finally {
    await attempt.discard().catch(() => undefined);
  }
}

/**
 * Given the repository, an app and the ids still wanted from its source,
 * remove the download directories of copies no longer wanted (the source
 * deleted the snapshot before it was copied). Return their names.
 */
export async function removeUnwantedPartials(repository: string, app: string, wanted: ReadonlySet<string>): Promise<string[]> {
  const incoming = path.join(appDirectory(repository, app), INCOMING_DIR);
  const names = await readdir(incoming).catch(() => [] as string[]);
  const unwanted = names.filter((name) => name.startsWith(PARTIAL_PREFIX) && !wanted.has(name.slice(PARTIAL_PREFIX.length)));
  for (const name of unwanted) await rm(path.join(incoming, name), { recursive: true, force: true });
  return unwanted;
}
