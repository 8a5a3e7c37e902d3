/**
 * Where a restore writes: a directory that does not exist yet, or an empty
 * one, never anything else. The files are written into a hidden staging
 * directory and appear under the target's name only once all of them were
 * written and checked: a new target by one rename of the staging directory
 * (its sibling), an existing empty one (a mount point, a directory prepared
 * with its owner and mode) by moving the staging directory's entries into it.
 * A failed or interrupted restore removes the staging directory, so no
 * half-restored directory is ever left under the target's name.
 */
import { mkdtemp, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { fsyncPath } from '../repository/durable.ts';

/** A target a restore may write to. */
export type TargetState = { kind: 'new' } | { kind: 'empty-directory' };

/**
 * The staging directory of a restore into an existing empty directory, left
 * inside it when that restore was killed (kill -9, a power cut): it does not
 * make the target non-empty, and the next restore into it removes it.
 */
const LEFTOVER_STAGING = /^\.bysu-restore-[A-Za-z0-9]{6}$/;

/** How many entries of a non-empty target a refusal names. */
const ENTRIES_SHOWN = 3;

/**
 * Given an absolute target path, return whether it is new or an existing
 * empty directory, or `{ refused }` saying why it cannot be used: it is not a
 * directory, holds something, or its parent does not exist. Creates nothing.
 */
export async function checkTarget(target: string): Promise<TargetState | { refused: string }> {
  const info = await stat(target).catch((error: NodeJS.ErrnoException) => error);
  if (info instanceof Error) {
    if (info.code !== 'ENOENT') return { refused: `cannot use ${target}: ${info.code ?? info.message}` };
    const parent = await stat(path.dirname(target)).catch(() => null);
    if (parent === null || !parent.isDirectory()) {
      return { refused: `cannot restore into ${target}: its parent ${path.dirname(target)} does not exist; create it first, or choose another place with --to` };
    }
    return { kind: 'new' };
  }
  if (!info.isDirectory()) return { refused: `refusing to restore into ${target}: it exists and is not a directory; choose a new or empty directory with --to` };
  const entries = (await readdir(target)).filter((name) => !LEFTOVER_STAGING.test(name));
  if (entries.length > 0) {
    const shown = entries.sort().slice(0, ENTRIES_SHOWN).map((name) => JSON.stringify(name)).join(', ') + (entries.length > ENTRIES_SHOWN ? ', …' : '');
    return { refused: `refusing to restore into ${target}: it is not empty (${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}: ${shown}); choose a new or empty directory with --to` };
  }
  return { kind: 'empty-directory' };
}

/**
 * Given the target and its state, create the staging directory (mode 0700):
 * a hidden sibling `.<name>.bysu-restore-XXXXXX` for a new target, a hidden
 * `.bysu-restore-XXXXXX` inside an empty one. Return its path.
 */
export async function createStaging(target: string, state: TargetState): Promise<string> {
  return state.kind === 'new'
    ? mkdtemp(path.join(path.dirname(target), `.${path.basename(target)}.bysu-restore-`))
    : mkdtemp(path.join(target, '.bysu-restore-'));
}

/**
 * Given the staging directory holding everything restored, the target and
 * its state, put the files under the target's name: rename the staging
 * directory (new target; a target that someone created meanwhile makes the
 * rename fail, and nothing is replaced but an empty directory), or move its
 * entries into the empty target and remove it. Then fsync the directory that
 * changed. Return `{ refused }` when the target was taken meanwhile.
 */
export async function publishStaging(staging: string, target: string, state: TargetState): Promise<{ refused: string } | null> {
  if (state.kind === 'new') {
    try {
      await rename(staging, target);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR' || code === 'EISDIR') {
        return { refused: `refusing to restore into ${target}: something was created there while the files were checked and copied; choose a new or empty directory with --to` };
      }
      throw error;
    }
    await fsyncPath(path.dirname(target));
    return null;
  }
  const inTarget = await readdir(target);
  if (inTarget.some((name) => name !== path.basename(staging) && !LEFTOVER_STAGING.test(name))) {
    return { refused: `refusing to restore into ${target}: it is no longer empty (something was written there while the files were checked and copied); choose a new or empty directory with --to` };
  }
  for (const name of inTarget) {
    if (name !== path.basename(staging) && LEFTOVER_STAGING.test(name)) await rm(path.join(target, name), { recursive: true, force: true });
  }
  for (const name of await readdir(staging)) await rename(path.join(staging, name), path.join(target, name));
  await rmdir(staging);
  await fsyncPath(target);
  return null;
}

/** Given a staging directory, remove it and everything in it (after a failure or an interruption). */
export async function discardStaging(staging: string): Promise<void> {
  await rm(staging, { recursive: true, force: true });
}
