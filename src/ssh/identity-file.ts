/**
 * The private key file BYSU logs in with, checked before anything reads it:
 * what a worker and `bysu config check` refuse, each as one line naming the
 * file and what to do. Reads no key material (src/ssh/session.ts parses it).
 */
import { accessSync, constants, statSync } from 'node:fs';

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
