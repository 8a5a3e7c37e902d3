/**
 * The SSH files BYSU logs in with, checked before anything reads them: the
 * private key and known_hosts, as a worker, a reload and `bysu config check`
 * refuse them, each as one line naming the file and what to do. Reads no key
 * material (src/ssh/session.ts parses it).
 */
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import type { Config } from '../config/load.ts';
import { ConfigError } from '../errors.ts';

/**
 * Given the private key's path, return what keeps BYSU from using it, one line
 * each (empty when none): missing, unreadable, not a file, or readable by
 * group or others (OpenSSH refuses such a key; BYSU refuses it too).
 */
export function identityFileProblems(identity: string): string[] {
  try {
    accessSync(identity, constants.R_OK);
    const info = statSync(identity);
    if (!info.isFile()) return [`ssh.identityFile: ${identity} is not a file; point ssh.identityFile (BYSU_SSH_IDENTITY) at the private key`];
    const mode = info.mode & 0o777;
    if ((mode & 0o077) !== 0) {
      return [`ssh.identityFile: ${identity} is readable by group or others (mode ${mode.toString(8).padStart(4, '0')}); run: chmod 600 ${identity}`];
    }
    return [];
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const fix = code === 'ENOENT'
      ? `create it (ssh-keygen -t ed25519 -N '' -f ${identity}) or point ssh.identityFile (BYSU_SSH_IDENTITY) at the key`
      : 'make it readable by the user BYSU runs as (owned by that user, mode 0600)';
    return [`ssh.identityFile: cannot read ${identity} (${code ?? error}): ${fix}`];
  }
}

/**
 * Given a loaded Config, check the SSH files a worker needs: the identity file
 * exists, is readable and is not readable by group or others; the known_hosts
 * file can be read when it exists (every connection reads it, for @revoked
 * keys even when the node's key is pinned), and exists when some node has no
 * pinned key. Throw ConfigError otherwise.
 */
export function checkSshFiles(config: Config): void {
  const problems = identityFileProblems(config.ssh.identityFile);
  const unpinned = config.nodes.filter((node) => node.hostKey === undefined);
  try {
    readFileSync(config.ssh.knownHosts);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' || unpinned.length > 0) {
      problems.push(
        `ssh.knownHosts: cannot read ${config.ssh.knownHosts} (${code ?? error})` +
          (code === 'ENOENT' ? `, and node "${unpinned[0]!.name}" has no pinned hostKey` : ': every connection reads it; make it a file readable by the user BYSU runs as'),
      );
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
}
