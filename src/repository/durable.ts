/**
 * Writing to the repository durably: directories that are never created
 * with their parents, files fsynced before they count, replacements by
 * rename, and fs errors in words an operator knows.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chown, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { StorageError } from '../errors.ts';
import { DIR_MODE, FILE_MODE } from './layout.ts';

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

export async function fsyncPath(target: string): Promise<void> {
  const handle = await open(target, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Whose a file BYSU creates is: the owner of the directory it belongs to, when root writes it (see ownerFor). */
export interface Owner {
  uid: number;
  gid: number;
}

/**
 * Given a directory of the repository, return the owner that what root
 * creates in it must get (its own), or null when this process is not root
 * or already is that owner. A `bysu verify` or `prune` run as root must not
 * leave files the workers' user cannot read or replace.
 */
export async function ownerFor(dir: string): Promise<Owner | null> {
  if (process.getuid?.() !== 0) return null;
  const info = await stat(dir);
  return info.uid === 0 && info.gid === 0 ? null : { uid: info.uid, gid: info.gid };
}

/**
 * Create dir (mode 0700) unless it exists, owned by `owner` when given. Never
 * with `recursive`: its parent must already exist, so that no path of the
 * repository writer can create the repository root (or an app directory on an
 * unmounted mount point).
 */
export async function makeDirectory(dir: string, owner: Owner | null = null): Promise<void> {
  try {
    await mkdir(dir, { mode: DIR_MODE });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return;
  }
  if (owner !== null) await chown(dir, owner.uid, owner.gid);
}

export async function writeFileDurably(file: string, text: string): Promise<void> {
  await writeWhole(file, text, { flag: 'w', durable: true, owner: null });
}

/** Given a file and its text, write it (mode 0600, given to `owner` before it has content), fsynced when durable. */
async function writeWhole(file: string, text: string, options: { flag: 'w' | 'wx'; durable: boolean; owner: Owner | null }): Promise<void> {
  const handle = await open(file, options.flag, FILE_MODE);
  try {
    if (options.owner) await handle.chown(options.owner.uid, options.owner.gid);
    await handle.writeFile(text);
    if (options.durable) await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Given a directory that exists, a file name and its text, replace the file
 * atomically: written and fsynced under a temporary name (`.<name>.<8 hex>`),
 * then renamed over it, so a reader sees the old text or the new, never half.
 * With `durable: false` nothing is fsynced (a cache, rebuilt when lost); with
 * an `owner` (see ownerFor) the file is given to it before it has content.
 * Leaves no temporary behind when it fails.
 */
export async function replaceFile(dir: string, name: string, text: string, options: { durable?: boolean; owner?: Owner | null } = {}): Promise<string> {
  const target = path.join(dir, name);
  const temporary = path.join(dir, `.${name.replace(/^\./, '')}.${randomBytes(4).toString('hex')}`);
  try {
    await writeWhole(temporary, text, { flag: 'wx', durable: options.durable !== false, owner: options.owner ?? null });
    await rename(temporary, target);
  } catch (error) {
    await rm(temporary, { force: true }).catch(() => undefined);
    throw error;
  }
  return target;
}
