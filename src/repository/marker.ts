/**
 * The repository's identity: the marker file `<root>/.bysu-repository` that
 * `bysu init` writes once, and the check every writer and reader makes before
 * it touches the root. A root that is missing, or a directory without the
 * marker (a mount point whose disk is not mounted), is refused with one line
 * that says what is wrong and what to do; nothing in BYSU but `bysu init`
 * ever creates the root, so an unmounted disk can never be papered over by a
 * fresh directory on the wrong filesystem.
 */
import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, link, mkdir, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { NAME_PATTERN } from '../config/formats.ts';
import { RepositoryUnavailableError } from '../errors.ts';
import { BYSU_VERSION } from '../version.ts';
import { COMMITS_DIR, DIR_MODE, DRILLS_DIR, FAILURE_RECORD_FILE, FILE_MODE, INCOMING_DIR, isSnapshotId, LATEST_LINK, REPOSITORY_FORMAT, REPOSITORY_MARKER_FILE, SUMMARY_DIR, VERIFY_RECORD_FILE } from './layout.ts';

/** What `<root>/.bysu-repository` holds (one JSON object). */
export interface RepositoryMarker {
  /** Always REPOSITORY_FORMAT for this version. */
  format: string;
  /** A random UUID, so two repositories (or a disk and its backup copy) can be told apart. */
  id: string;
  createdAt: string;
  /** `bysu <version>` that wrote it. */
  createdBy: string;
}

/** What `bysu init` found and did. */
export interface InitOutcome {
  /** created: a new directory; marked: an empty directory; adopted: a repository from before markers; existing: nothing to do. */
  action: 'created' | 'marked' | 'adopted' | 'existing';
  marker: RepositoryMarker;
  /** For `adopted`: the app directories found. */
  apps: string[];
  /** Whether the root is on another filesystem than its parent (a mount point). */
  mountPoint: boolean;
}

/** Given the root, return the marker's path. */
export function markerPath(root: string): string {
  return path.join(root, REPOSITORY_MARKER_FILE);
}

/**
 * Given the repository root, return its marker; throw
 * RepositoryUnavailableError (one line: what is wrong, what to do) when the
 * root does not exist, is not a directory, or has no readable marker of this
 * format. Creates nothing. Cheap enough to call right before every write
 * that matters (one stat and one small read).
 */
export async function requireRepository(root: string): Promise<RepositoryMarker> {
  const info = await stat(root).catch((error: NodeJS.ErrnoException) => error);
  if (info instanceof Error) {
    if (info.code === 'ENOENT' || info.code === 'ENOTDIR') {
      throw new RepositoryUnavailableError(`repository ${root} does not exist: not mounted? run bysu init only to create a new repository`);
    }
    throw new RepositoryUnavailableError(`cannot reach repository ${root}: ${info.code ?? info.message}`, { cause: info });
  }
  if (!info.isDirectory()) throw new RepositoryUnavailableError(`repository ${root} is not a directory: fix the repository setting or the mount`);
  let text: string;
  try {
    text = await readFile(markerPath(root), 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new RepositoryUnavailableError(`repository ${root} has no BYSU marker: not mounted? run bysu init only for a new repository`);
    throw new RepositoryUnavailableError(`cannot read the BYSU marker ${markerPath(root)}: ${code ?? (error as Error).message}`, { cause: error });
  }
  return parseMarker(root, text);
}

/** Given the root, return null when it is a usable repository, else the one-line reason (for /healthz and the like). */
export async function repositoryProblem(root: string): Promise<string | null> {
  try {
    await requireRepository(root);
    return null;
  } catch (error) {
    if (error instanceof RepositoryUnavailableError) return error.message;
    throw error;
  }
}

function parseMarker(root: string, text: string): RepositoryMarker {
  let marker: Partial<RepositoryMarker>;
  try {
    marker = JSON.parse(text) as Partial<RepositoryMarker>;
  } catch {
    throw new RepositoryUnavailableError(`the BYSU marker ${markerPath(root)} is not valid JSON: restore it from another copy of the repository, or move it away and run bysu init --adopt`);
  }
  if (marker === null || typeof marker !== 'object' || marker.format !== REPOSITORY_FORMAT || typeof marker.id !== 'string') {
    throw new RepositoryUnavailableError(`the BYSU marker ${markerPath(root)} names format ${JSON.stringify(marker?.format ?? null)}, this BYSU reads ${REPOSITORY_FORMAT}: use the BYSU version that wrote it`);
  }
  return marker as RepositoryMarker;
}

/**
 * Given a root and the names in it, return the app directories that look like
 * BYSU's (an app name holding snapshots, `latest`, `.incoming`, `.commits`,
 * `.drills`, `.summary` or the failure and verify records) and the entries that do not (`lost+found` is neither).
 */
async function classifyEntries(root: string, names: string[]): Promise<{ apps: string[]; foreign: string[] }> {
  const apps: string[] = [];
  const foreign: string[] = [];
  for (const name of names.sort()) {
    if (name === 'lost+found') continue;
    const inside = NAME_PATTERN.test(name) ? await readdir(path.join(root, name)).catch(() => null) : null;
    const bysuLike = inside !== null && inside.length > 0 && inside.every((entry) => isSnapshotId(entry) || [LATEST_LINK, INCOMING_DIR, COMMITS_DIR, DRILLS_DIR, SUMMARY_DIR, FAILURE_RECORD_FILE, VERIFY_RECORD_FILE].includes(entry) || /^\.(latest|last-failure\.json|last-verify\.json)\./.test(entry));
    (bysuLike ? apps : foreign).push(name);
  }
  return { apps, foreign };
}

/**
 * Given the repository root, make it a BYSU repository: create the directory
 * (0700; its parent must exist) and write the marker; on a directory that is
 * empty (or holds only `lost+found`), write the marker; on one that already
 * has a marker, do nothing (idempotent). A non-empty directory without a
 * marker is refused, unless it holds only BYSU app directories and `adopt`
 * is set (a repository made before markers existed). Throw
 * RepositoryUnavailableError saying why and what to do when it refuses.
 */
export async function initRepository(root: string, options: { adopt?: boolean } = {}): Promise<InitOutcome> {
  const parent = path.dirname(root);
  const info = await stat(root).catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? null : Promise.reject(error)));
  let action: InitOutcome['action'];
  let apps: string[] = [];
  if (info === null) {
    // Only the root itself: a missing parent is a disk not mounted, or a typo, never something to paper over.
    const parentInfo = await stat(parent).catch(() => null);
    if (parentInfo === null || !parentInfo.isDirectory()) {
      throw new RepositoryUnavailableError(`cannot create repository ${root}: its parent ${parent} does not exist (a disk not mounted?); create or mount ${parent} first`);
    }
    await mkdir(root, { mode: DIR_MODE });
    action = 'created';
  } else {
    if (!info.isDirectory()) throw new RepositoryUnavailableError(`cannot make ${root} a repository: it is not a directory`);
    const existing = await readFile(markerPath(root), 'utf8').catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? null : Promise.reject(error)));
    if (existing !== null) {
      return { action: 'existing', marker: parseMarker(root, existing), apps: [], mountPoint: await isMountPoint(root) };
    }
    const classified = await classifyEntries(root, await readdir(root));
    if (classified.foreign.length > 0) {
      const shown = classified.foreign.slice(0, 5).join(', ') + (classified.foreign.length > 5 ? `, … (${classified.foreign.length} in all)` : '');
      throw new RepositoryUnavailableError(`refusing to make ${root} a repository: it is not empty and holds things that are not BYSU's (${shown}); choose an empty directory or a new path`);
    }
    if (classified.apps.length > 0 && !options.adopt) {
      throw new RepositoryUnavailableError(`${root} holds BYSU app directories (${classified.apps.join(', ')}) but no marker: a repository from before markers, or snapshots written while the disk was not mounted; check that the right disk is mounted, then run bysu init --adopt`);
    }
    apps = classified.apps;
    action = apps.length > 0 ? 'adopted' : 'marked';
    // `bysu init` promises a 0700 root; an operator's mkdir may have left it wider.
    await chmod(root, DIR_MODE).catch(() => undefined);
  }
  const marker: RepositoryMarker = { format: REPOSITORY_FORMAT, id: randomUUID(), createdAt: new Date().toISOString(), createdBy: `bysu ${BYSU_VERSION}` };
  const written = await writeMarker(root, marker);
  return { action: written === marker ? action : 'existing', marker: written, apps, mountPoint: await isMountPoint(root) };
}

/**
 * Write the marker durably and exclusively: a complete temporary file,
 * fsynced, hard-linked to its name (which fails if another init won the
 * race: its marker is returned), then the directory fsynced.
 */
async function writeMarker(root: string, marker: RepositoryMarker): Promise<RepositoryMarker> {
  const temporary = path.join(root, `${REPOSITORY_MARKER_FILE}.${marker.id}`);
  const handle = await open(temporary, 'wx', FILE_MODE);
  try {
    await handle.writeFile(`${JSON.stringify(marker)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(temporary, markerPath(root));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return requireRepository(root);
  } finally {
    await rm(temporary, { force: true });
  }
  const directory = await open(root, constants.O_RDONLY);
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
  return marker;
}

async function isMountPoint(root: string): Promise<boolean> {
  const [own, parent] = await Promise.all([stat(root), stat(path.dirname(root))]);
  return own.dev !== parent.dev;
}
