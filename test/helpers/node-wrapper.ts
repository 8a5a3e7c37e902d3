/**
 * The node wrapper contrib/node/bysu-allow on a real sshd, set up as the
 * README says (`restrict,command="<wrapper> <allow-list>"` in authorized_keys),
 * and one table of bypass attempts and of allowed commands run through it with
 * the OpenSSH client. The integration test asserts every row; the fault suite
 * counts them for its ledger. Written once here so that the two cannot drift.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PROJECT_ROOT } from './cluster.ts';
import { run, withTempDir } from './processes.ts';
import { withSshNodes } from './sshd.ts';

/** The wrapper as shipped, which the README installs on each node. */
export const WRAPPER = path.join(PROJECT_ROOT, 'contrib/node/bysu-allow');

/** A POSIX shell the wrapper must work under (its `#!` line is set to `interpreter`). */
export interface WrapperShell {
  name: string;
  /** The `#!` line's program and argument. */
  interpreter: string;
  /** Why it cannot be tested on this machine, or undefined when it can. */
  missing?: string;
}

/** dash (Debian's /bin/sh) and busybox sh, the shells of small nodes. */
export const WRAPPER_SHELLS: WrapperShell[] = [
  { name: 'dash', interpreter: '/usr/bin/dash', missing: existsSync('/usr/bin/dash') ? undefined : 'dash is not installed (apt-get install -y dash)' },
  { name: 'busybox sh', interpreter: '/usr/bin/busybox sh', missing: existsSync('/usr/bin/busybox') ? undefined : 'busybox is not installed (apt-get install -y busybox)' },
];

/** Where an attempt runs: its own empty directory, so that any side effect shows as a file in it. */
interface Place {
  dir: string;
  /** The file each attempt tries to create. */
  sentinel: string;
  /** An allowed line with a visible effect: it creates `<sentinel>.allowed`. */
  allowedTouch: string;
}

/** The allow-list the attempts run against unless they bring their own. */
function defaultList(place: Place): string {
  return [
    '# BYSU dumps on this node: one command per line, as in bysu.yaml',
    '',
    'echo dump-ok',
    place.allowedTouch,
    `touch\t${place.sentinel}`,
    '   ',
    `  # touch ${place.sentinel}`,
    '',
  ].join('\n');
}

/** A command that must be refused with exit 126 and must leave nothing behind. */
export interface BypassAttempt {
  name: string;
  command: (place: Place) => string;
  /** The allow-list's content; null: no file there; 'directory': a directory at its path; 'unreadable': a file of mode 000. */
  list?: (place: Place) => string | null | 'directory' | 'unreadable';
  /** What the refusal must say on stderr (besides starting with `bysu-allow: `). */
  says?: RegExp;
  /** Why this attempt cannot be made here (it is then left out of the count). */
  unavailable?: string;
}

const CONTROL = /control character/;
const NOT_LISTED = /: command not in .*allowed-commands: /;
const asRoot = process.getuid?.() === 0;

export const BYPASS_ATTEMPTS: BypassAttempt[] = [
  // The issue's exploit: with grep -Fx each line of the command was its own pattern.
  { name: 'newline, then a second command', command: (p) => `echo dump-ok\ntouch ${p.sentinel}`, says: CONTROL },
  { name: 'newline, after a first command', command: (p) => `touch ${p.sentinel}\necho dump-ok`, says: CONTROL },
  { name: 'an allowed line and a trailing newline', command: (p) => `${p.allowedTouch}\n`, says: CONTROL },
  { name: 'carriage return', command: (p) => `echo dump-ok\r; touch ${p.sentinel}`, says: CONTROL },
  { name: 'CRLF', command: (p) => `echo dump-ok\r\ntouch ${p.sentinel}`, says: CONTROL },
  { name: 'tab (a line of the list holds this very command)', command: (p) => `touch\t${p.sentinel}`, says: CONTROL },
  { name: 'DEL', command: (p) => `echo dump-ok\x7f; touch ${p.sentinel}`, says: CONTROL },
  { name: 'a terminal escape', command: (p) => `echo dump-ok\x1b[2J; touch ${p.sentinel}`, says: CONTROL },
  { name: 'trailing space', command: (p) => `${p.allowedTouch} `, says: NOT_LISTED },
  { name: 'leading space', command: (p) => ` ${p.allowedTouch}`, says: NOT_LISTED },
  { name: 'a second command after ;', command: (p) => `echo dump-ok; touch ${p.sentinel}`, says: NOT_LISTED },
  { name: 'a second command after &&', command: (p) => `echo dump-ok && touch ${p.sentinel}`, says: NOT_LISTED },
  { name: '$(…)', command: (p) => `echo dump-ok $(touch ${p.sentinel})`, says: NOT_LISTED },
  { name: 'backquotes', command: (p) => `echo dump-ok \`touch ${p.sentinel}\``, says: NOT_LISTED },
  { name: 'only a prefix of an allowed line', command: (p) => `touch ${p.sentinel}`, says: NOT_LISTED },
  { name: 'an allowed line plus an argument', command: (p) => `${p.allowedTouch} ${p.sentinel}`, says: NOT_LISTED },
  { name: 'empty command (a login shell)', command: () => '', says: /no command was given/ },
  // Would run nothing, but exit 0: the exit status tells whether it was matched.
  { name: 'a blank line of the list', command: () => '   ', says: NOT_LISTED },
  { name: 'a comment line of the list', command: (p) => `  # touch ${p.sentinel}`, says: NOT_LISTED },
  {
    name: 'allow-list of comments and blank lines only',
    command: (p) => p.allowedTouch,
    list: (p) => `# ${p.allowedTouch}\n\n   \n`,
    says: /has no commands/,
  },
  { name: 'allow-list empty', command: (p) => p.allowedTouch, list: () => '', says: /has no commands/ },
  { name: 'allow-list missing', command: (p) => p.allowedTouch, list: () => null, says: /cannot read the allow-list/ },
  { name: 'allow-list is a directory', command: (p) => p.allowedTouch, list: () => 'directory', says: /cannot read the allow-list/ },
  {
    name: 'allow-list not readable (mode 000)',
    command: (p) => p.allowedTouch,
    list: () => 'unreadable',
    says: /cannot read the allow-list/,
    unavailable: asRoot ? 'the test runs as root, who reads a file of mode 000' : undefined,
  },
  // Decided: a line ending in CR never matches (the command cannot hold a CR), and the refusal says why.
  {
    name: 'allow-list with CRLF line ends',
    command: (p) => p.allowedTouch,
    list: (p) => `echo dump-ok\r\n${p.allowedTouch}\r\n`,
    says: /end in a carriage return \(CRLF line ends\) and never match/,
  },
  // Found by attack after the fix: the shells' `read` drops NUL bytes, so `echo dump-ok<NUL>; touch …` in the
  // list matched `echo dump-ok; touch …` and ran the touch. A list holding a NUL is refused whole.
  {
    name: 'allow-list line with a NUL byte',
    command: (p) => `echo dump-ok; touch ${p.sentinel}`,
    list: (p) => `echo dump-ok\0; touch ${p.sentinel}\n${p.allowedTouch}\n`,
    says: /holds a NUL byte/,
  },
];

/** A command of the allow-list that must run byte for byte, with its exit status passed on. */
export interface AllowedCommand {
  name: string;
  command: string;
  stdout: (nodeDir: string) => string;
  stderr?: string;
  code: number;
}

const LONG_TAIL = 'x'.repeat(16_000);
export const ALLOWED_COMMANDS: AllowedCommand[] = [
  { name: 'a plain command', command: 'echo dump-ok', stdout: () => 'dump-ok\n', code: 0 },
  {
    name: 'quotes, a pipe, $VAR and a backslash',
    command: `printf '%s|%s\\n' "it's" 'a "b" \\c' | tr a-z A-Z; echo "$NODE_DIR"`,
    stdout: (nodeDir) => `IT'S|A "B" \\C\n${nodeDir}\n`,
    code: 0,
  },
  {
    name: 'a 16 KB line (it prints its own length)',
    command: `printf '%s' "$SSH_ORIGINAL_COMMAND" | wc -c; : ${LONG_TAIL}`,
    stdout: () => `${Buffer.byteLength(`printf '%s' "$SSH_ORIGINAL_COMMAND" | wc -c; : ${LONG_TAIL}`)}\n`,
    code: 0,
  },
  // The list's last line, written without a newline after it.
  { name: 'a failing command (exit 3), the last line with no newline', command: 'echo failing >&2; exit 3', stdout: () => '', stderr: 'failing\n', code: 3 },
];

export interface AttemptResult {
  attempt: BypassAttempt;
  code: number | null;
  stdout: string;
  stderr: string;
  /** Files the attempt left in its directory (none when refused cleanly). */
  leftovers: string[];
  sentinelExists: boolean;
}

export interface AllowedResult {
  allowed: AllowedCommand;
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface WrapperReport {
  nodeDir: string;
  attempts: AttemptResult[];
  allowed: AllowedResult[];
}

/** A refusal as the fault suite counts it: exit 126, no output, nothing created. */
export function refusedCleanly(result: AttemptResult): boolean {
  return result.code === 126 && result.stdout === '' && result.leftovers.length === 0 && !result.sentinelExists;
}

/** Run fn over items, `width` at a time, keeping their order. */
async function inParallel<T, R>(items: T[], width: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, lane));
  return results;
}

/**
 * Given a shell, start an sshd node whose keys are restricted to the wrapper
 * (a copy whose `#!` line names that shell) by the README's authorized_keys
 * line, make every bypass attempt and run every allowed command with the
 * OpenSSH client, and return what each did. Each attempt has its own key,
 * allow-list and empty directory, so that attempts can run side by side (a
 * login on these machines costs seconds) and any side effect is its own.
 * Throws when the shell is missing.
 */
export async function tryWrapper(shell: WrapperShell, wrapperFile = WRAPPER): Promise<WrapperReport> {
  if (shell.missing) throw new Error(`cannot test the wrapper under ${shell.name}: ${shell.missing}`);
  return withTempDir((dir) => withSshNodes(dir, ['node'], async ([node], keys) => {
    const source = await readFile(wrapperFile, 'utf8');
    const wrapper = path.join(node!.dir, 'bysu-allow');
    await writeFile(wrapper, source.replace(/^#!.*\n/, `#!${shell.interpreter}\n`), { mode: 0o755 });
    await mkdir(path.join(node!.dir, 'lists'));
    await mkdir(path.join(node!.dir, 'keys'));
    if (/\s/.test(node!.dir)) throw new Error(`the temporary directory ${node!.dir} holds a blank; the attempts need a path without one`);

    /** A key whose forced command is the wrapper with an allow-list of this content. */
    const restrictedKey = async (name: string, content: string | null | 'directory' | 'unreadable') => {
      const list = path.join(node!.dir, 'lists', name, 'allowed-commands');
      await mkdir(path.dirname(list));
      if (content === 'directory') await mkdir(list);
      else if (content === 'unreadable') await writeFile(list, 'echo dump-ok\n', { mode: 0o000 });
      else if (content !== null) await writeFile(list, content);
      const identity = path.join(node!.dir, 'keys', name);
      const keygen = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', identity]);
      if (keygen.code !== 0) throw new Error(`ssh-keygen failed: ${keygen.stderr}`);
      const publicKey = (await readFile(`${identity}.pub`, 'utf8')).trim();
      return { identity, line: `restrict,command="${wrapper} ${list}" ${publicKey}\n` };
    };
    const ssh = (identity: string, command: string) =>
      run('ssh', ['-T', '-i', identity, '-o', 'IdentitiesOnly=yes', '-o', `UserKnownHostsFile=${keys.knownHostsFile}`, '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR',
        '-p', String(node!.port), `${node!.user}@127.0.0.1`, command], { timeout: 120_000 });

    const planned = await Promise.all(BYPASS_ATTEMPTS.filter((attempt) => !attempt.unavailable).map(async (attempt, index) => {
      const placeDir = path.join(node!.dir, `attempt-${index}`);
      await mkdir(placeDir);
      const sentinel = path.join(placeDir, 'sentinel');
      const place: Place = { dir: placeDir, sentinel, allowedTouch: `touch ${sentinel}.allowed` };
      const key = await restrictedKey(`attempt-${index}`, attempt.list ? attempt.list(place) : defaultList(place));
      return { attempt, place, key };
    }));
    // The list of the allowed commands has comments and a blank line, and no newline after its last line.
    const allowedKey = await restrictedKey('allowed', ['# the dumps of this node', '', ...ALLOWED_COMMANDS.map((allowed) => allowed.command)].join('\n'));
    await writeFile(path.join(node!.dir, 'authorized_keys'), [...planned.map(({ key }) => key.line), allowedKey.line].join(''));

    const attempts = await inParallel(planned, 6, async ({ attempt, place, key }): Promise<AttemptResult> => {
      const result = await ssh(key.identity, attempt.command(place));
      return { attempt, ...result, leftovers: await readdir(place.dir), sentinelExists: existsSync(place.sentinel) };
    });
    const allowed = await inParallel(ALLOWED_COMMANDS, 6, async (command): Promise<AllowedResult> => ({ allowed: command, ...(await ssh(allowedKey.identity, command.command)) }));
    return { nodeDir: node!.dir, attempts, allowed };
  }));
}
