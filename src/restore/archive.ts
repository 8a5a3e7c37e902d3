/**
 * Extracting a tar part for `bysu restore --extract`, so that nothing lands
 * outside the directory it is extracted into. Three fences, each enough for
 * what it covers:
 *
 * 1. Before anything is extracted, every entry of the archive is judged as
 *    its header is read (the same block-by-block reader that validated it
 *    when the snapshot was taken): an absolute name, a `..` in a name, a hard
 *    link whose target is absolute or holds `..`, and a symbolic link whose
 *    target is absolute or climbs out of the directory refuse the archive.
 * 2. GNU tar extracts it (the system's `tar`, as an operator would), without
 *    `-P`: it creates a symbolic link whose target holds `..` as a
 *    placeholder file until the end, so no later entry is written through it.
 * 3. After extraction every symbolic link of the tree is resolved as the
 *    kernel would, one component at a time, following the links it meets; a
 *    link that leads out at any step (`d -> .` then `e -> d/..`, which no
 *    single target shows) refuses the result. A regular file with more hard
 *    links than the tree holds is linked to something outside: refused too.
 */
import { execFile, spawn } from 'node:child_process';
import type { FileHandle } from 'node:fs/promises';
import { lstat, readdir, readlink, realpath } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { UnsafeArchiveError } from '../errors.ts';
import { cutToBytes, escapeControls, quoteName } from '../printable.ts';
import type { TarEntry } from '../repository/tar-validator.ts';
import { HashingStream } from '../repository/snapshot-files.ts';

/** How many unsafe entries a refusal names (the rest are counted). */
export const UNSAFE_ENTRIES_SHOWN = 5;
/** Bytes of tar's stderr kept for an error message. */
const STDERR_TAIL_BYTES = 4096;
/** Symbolic links followed while resolving one path before it counts as a loop (the kernel's own limit). */
const MAX_LINK_HOPS = 40;

/** Whether a name, as tar stores it, has a `..` component. */
function climbs(name: string): boolean {
  return name.split('/').includes('..');
}

/**
 * Given an entry of an archive, return why extracting it could write or
 * point outside the directory it is extracted into, or null when it cannot.
 */
export function unsafeEntryReason(entry: TarEntry): string | null {
  if (entry.name.startsWith('/')) return 'an absolute path';
  if (climbs(entry.name)) return 'a ".." in its path';
  // A device node extracted as root is a door to the host's device (a block device 7:0 is /dev/loop0); no dump
  // BYSU takes needs one back, and a FIFO would hang whoever reads the restored tree.
  if (entry.type === '3' || entry.type === '4') return `a ${entry.type === '3' ? 'character' : 'block'} device node`;
  if (entry.type === '6') return 'a FIFO';
  if (entry.type === '1') {
    // A hard link's target is a name in the archive, from the directory it is extracted into.
    if (entry.linkName.startsWith('/') || climbs(entry.linkName)) return `a hard link to ${quoteName(entry.linkName, 256)}, outside the archive`;
  }
  if (entry.type === '2') {
    if (entry.linkName.startsWith('/')) return `a symbolic link to the absolute path ${quoteName(entry.linkName, 256)}`;
    const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(entry.name), entry.linkName));
    if (resolved === '..' || resolved.startsWith('../')) return `a symbolic link to ${quoteName(entry.linkName, 256)}, which points outside`;
  }
  return null;
}

/** Collects the unsafe entries of an archive as its headers are read (for PartInspector's onTarEntry). */
export class UnsafeEntries {
  readonly shown: string[] = [];
  count = 0;

  /** Given an entry, remember it when it is unsafe. */
  readonly check = (entry: TarEntry): void => {
    const reason = unsafeEntryReason(entry);
    if (reason === null) return;
    this.count += 1;
    if (this.shown.length < UNSAFE_ENTRIES_SHOWN) this.shown.push(`${quoteName(entry.name, 256)} (${reason})`);
  };

  /** Given the archive's label, return the refusal naming the unsafe entries, or null when there were none. */
  refusal(label: string): UnsafeArchiveError | null {
    if (this.count === 0) return null;
    const more = this.count > this.shown.length ? `, and ${this.count - this.shown.length} more` : '';
    return new UnsafeArchiveError(`refusing to extract ${label}: ${this.count} entr${this.count === 1 ? 'y' : 'ies'} would land or point outside the target directory: ${this.shown.join(', ')}${more}. Restore it without --extract and look at it with tar -tvf`);
  }
}

let gnuTarChecked: Promise<string | null> | null = null;

/** Return null when the system's `tar` is GNU tar (whose placeholder links --extract relies on), else what was found instead. */
export function gnuTarProblem(): Promise<string | null> {
  gnuTarChecked ??= promisify(execFile)('tar', ['--version']).then(
    ({ stdout }) => (/\bGNU tar\b/.test(stdout) ? null : `the system's tar is not GNU tar (${escapeControls(stdout.split('\n')[0] ?? '')})`),
    (error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? 'no tar command on the PATH' : `tar --version failed: ${error.message}`),
  );
  return gnuTarChecked;
}

/**
 * Given an open tar part, its kind and a directory, extract the archive into
 * the directory with GNU tar (existing files are never replaced: a name two
 * parts share is an error) while hashing the bytes handed to it, and return
 * their sha256 and count. Throw when tar fails, with the end of its stderr.
 */
export async function extractArchive(source: FileHandle, kind: 'tar' | 'tar.gz', directory: string, label: string, signal?: AbortSignal): Promise<{ sha256: string; bytes: number }> {
  const child = spawn('tar', ['-x', '-f', '-', '-C', directory, '--keep-old-files', ...(kind === 'tar.gz' ? ['-z'] : [])], {
    stdio: ['pipe', 'ignore', 'pipe'],
    ...(signal ? { signal } : {}),
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    stderr = (stderr + text).slice(-STDERR_TAIL_BYTES);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, killedBy) => resolve({ code, signal: killedBy }));
  });
  // Awaited below; marked handled now, so that tar failing while the pipeline still runs is not an unhandled rejection.
  exited.catch(() => undefined);
  const hashing = new HashingStream();
  try {
    await pipeline(source.createReadStream({ autoClose: false }), hashing, intoStdin(child.stdin), signal ? { signal } : {});
  } catch (error) {
    child.kill('SIGKILL');
    await exited.catch(() => undefined);
    throw error;
  }
  const status = await exited;
  if (status.code !== 0) {
    const said = cutToBytes(escapeControls(stderr.trim(), { keepLineBreaks: true }), STDERR_TAIL_BYTES);
    throw new Error(`tar could not extract ${label}: ${status.signal ? `killed by ${status.signal}` : `exit status ${status.code}`}${said ? `:\n${said}` : ''}`);
  }
  return { sha256: hashing.digest(), bytes: hashing.bytes };
}

/**
 * Given tar's stdin, return a Writable that forwards to it with backpressure
 * and, once tar has stopped reading (it may exit after the end-of-archive
 * marker, before the zero padding that follows), drops the rest: tar's exit
 * status says whether it got what it needed, and the hash still sees every byte.
 */
function intoStdin(stdin: Writable): Writable {
  let gone = false;
  let waiting: (() => void) | null = null;
  const stopped = () => {
    gone = true;
    const resume = waiting;
    waiting = null;
    resume?.();
  };
  stdin.on('error', stopped); // EPIPE
  stdin.on('close', stopped);
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (gone || stdin.write(chunk)) {
        callback();
        return;
      }
      const resume = () => {
        stdin.off('drain', resume);
        waiting = null;
        callback();
      };
      waiting = resume;
      stdin.once('drain', resume);
    },
    final(callback) {
      if (!gone) stdin.end();
      callback();
    },
  });
}

/**
 * Given a root (a real path) and a path inside it (also real), resolve
 * `target` from `fromDir` one component at a time as the kernel would,
 * following the symbolic links met on the way; return the path it leads to,
 * or null when it leaves the root at any step or loops. Components that do
 * not exist are taken by name.
 */
async function resolveInside(root: string, fromDir: string, target: string, hops: { count: number }): Promise<string | null> {
  if (target.startsWith('/')) return null;
  const inside = (candidate: string) => candidate === root || candidate.startsWith(`${root}${path.sep}`);
  let current = fromDir;
  const parts = target.split('/').filter((part) => part !== '' && part !== '.');
  for (let index = 0; index < parts.length; index += 1) {
    const part = parts[index]!;
    if (part === '..') {
      if (current === root) return null;
      current = path.dirname(current);
      continue;
    }
    const next = path.join(current, part);
    const info = await lstat(next).catch(() => null);
    if (info === null) {
      // Not there: the rest can only be taken by name.
      const rest = path.resolve(current, parts.slice(index).join('/'));
      return inside(rest) ? rest : null;
    }
    if (info.isSymbolicLink()) {
      hops.count += 1;
      if (hops.count > MAX_LINK_HOPS) return null;
      const resolved = await resolveInside(root, current, await readlink(next), hops);
      if (resolved === null) return null;
      current = resolved;
      continue;
    }
    current = next;
  }
  return inside(current) ? current : null;
}

/**
 * Given a directory tree that was just extracted, throw UnsafeArchiveError
 * when a symbolic link in it leads outside it (resolved step by step, see
 * resolveInside) or a regular file has more hard links than the tree holds
 * (linked to something outside). Return how many entries the tree holds.
 */
export async function checkExtractedTree(directory: string, label: string): Promise<number> {
  const root = await realpath(directory);
  const outside: string[] = [];
  const links = new Map<string, { expected: number; seen: number; name: string }>();
  let entries = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const name of await readdir(dir)) {
      const full = path.join(dir, name);
      const info = await lstat(full, { bigint: true });
      entries += 1;
      if (info.isSymbolicLink()) {
        if ((await resolveInside(root, dir, await readlink(full), { count: 0 })) === null) outside.push(path.relative(root, full));
      } else if (info.isDirectory()) {
        await walk(full);
      } else if (info.isFile() && info.nlink > 1n) {
        const key = `${info.dev}:${info.ino}`;
        const known = links.get(key) ?? { expected: Number(info.nlink), seen: 0, name: path.relative(root, full) };
        known.seen += 1;
        links.set(key, known);
      }
    }
  };
  await walk(root);
  const problems = outside.map((name) => `${quoteName(name, 256)} (a symbolic link that leads outside, or loops)`);
  for (const link of links.values()) {
    if (link.seen < link.expected) problems.push(`${quoteName(link.name, 256)} (a hard link to a file outside)`);
  }
  if (problems.length > 0) {
    const more = problems.length > UNSAFE_ENTRIES_SHOWN ? `, and ${problems.length - UNSAFE_ENTRIES_SHOWN} more` : '';
    throw new UnsafeArchiveError(`refusing the extraction of ${label}: ${problems.slice(0, UNSAFE_ENTRIES_SHOWN).join(', ')}${more}. Restore it without --extract and look at it with tar -tvf`);
  }
  return entries;
}
