/**
 * Removing things from the repository, for retention: a complete snapshot
 * (renamed out of sight first, so it never appears half-deleted, and then
 * deleted like any `.incoming` entry), an
 * `.incoming` leftover, a commit marker, a drill result. Each re-checks on
 * disk that the thing is what retention planned to remove; none follows a symlink.
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, rename, rm, unlink } from 'node:fs/promises';
import path from 'node:path';
import { StorageError } from '../errors.ts';
import { storageError } from './durable.ts';
import { appDirectory, COMMITS_DIR, DIR_MODE, DRILL_RESULT_PATTERN, DRILL_TEMPORARY_PATTERN, DRILLS_DIR, INCOMING_DIR, isSnapshotId, MANIFEST_FILE } from './layout.ts';
import { latestTarget } from './read.ts';

/**
 * Given an app and a snapshot id, take that snapshot out of sight: rename it
 * into `.incoming/deleting.<id>.<random>` (atomic; it is no longer a
 * snapshot), and return that entry's name for removeIncoming to delete at
 * leisure. Throw StorageError when it is not a complete snapshot directory or
 * is the target of `latest`.
 */
export async function hideSnapshot(repository: string, app: string, id: string): Promise<string> {
  const appDir = appDirectory(repository, app);
  const target = path.join(appDir, id);
  if (!isSnapshotId(id)) throw new StorageError(`refusing to delete ${target}: not a snapshot id`);
  const info = await lstat(target).catch(() => null);
  if (info === null || !info.isDirectory()) throw new StorageError(`refusing to delete ${target}: not a directory`);
  if (!(await lstat(path.join(target, MANIFEST_FILE)).catch(() => null))?.isFile()) {
    throw new StorageError(`refusing to delete ${target}: no manifest.json, not a complete snapshot`);
  }
  if ((await latestTarget(appDir)) === id) throw new StorageError(`refusing to delete ${target}: it is the target of latest`);
  const incoming = path.join(appDir, INCOMING_DIR);
  const name = `deleting.${id}.${randomBytes(4).toString('hex')}`;
  try {
    // Not recursive: the app directory holds the snapshot, so it exists; nothing above it may be created.
    await mkdir(incoming, { mode: DIR_MODE }).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
    await rename(target, path.join(incoming, name));
  } catch (error) {
    throw storageError(error, `delete ${target}`);
  }
  return name;
}

/**
 * Given an app and the name of an `.incoming` entry (a plain name only),
 * remove it. An attempt directory is first renamed to `deleting.<name>.<random>`:
 * its run may only be paused, and a run publishes by renaming its attempt
 * directory, so a deletion in place that failed or was slow half-way could
 * leave a half-deleted attempt for it to publish. After the rename the run's
 * own rename finds nothing, and a deletion that fails leaves an entry that
 * is out of sight and removed by the next run. One already gone (published
 * or discarded by its run) is no error.
 */
export async function removeIncoming(repository: string, app: string, name: string): Promise<void> {
  const incoming = path.join(appDirectory(repository, app), INCOMING_DIR);
  let doomed = name;
  if (!name.startsWith('deleting.') && name === path.basename(name) && name !== '.' && name !== '..') {
    doomed = `deleting.${name}.${randomBytes(4).toString('hex')}`;
    try {
      await rename(path.join(incoming, name), path.join(incoming, doomed));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw storageError(error, `remove ${path.join(incoming, name)}`);
    }
  }
  await removePlainEntry(incoming, doomed);
}

/** Given an app and the name of a `.commits` marker, remove it. */
export async function removeCommitMarker(repository: string, app: string, name: string): Promise<void> {
  await removePlainEntry(path.join(appDirectory(repository, app), COMMITS_DIR), name);
}

/**
 * Given an app and the name of a drill result (or a half-written one) in
 * `.drills`, delete that file; one already gone is no error. Throw
 * StorageError when the name is not a drill result's or it is not a regular file.
 */
export async function removeDrillResult(repository: string, app: string, name: string): Promise<void> {
  const target = path.join(appDirectory(repository, app), DRILLS_DIR, name);
  if (!DRILL_RESULT_PATTERN.test(name) && !DRILL_TEMPORARY_PATTERN.test(name)) throw new StorageError(`refusing to delete ${target}: not a drill result`);
  const info = await lstat(target).catch(() => null);
  if (info === null) return;
  if (!info.isFile()) throw new StorageError(`refusing to delete ${target}: not a regular file`);
  try {
    await unlink(target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw storageError(error, `delete ${target}`);
  }
}

async function removePlainEntry(dir: string, name: string): Promise<void> {
  if (name !== path.basename(name) || name === '.' || name === '..') throw new StorageError(`refusing to remove ${JSON.stringify(name)} from ${dir}`);
  try {
    await rm(path.join(dir, name), { recursive: true, force: true });
  } catch (error) {
    throw storageError(error, `remove ${path.join(dir, name)}`);
  }
}
