/**
 * A fresh node that is thrown away: a private mount namespace (unshare
 * --mount --propagation private) in which /etc, /home, /usr/local and
 * /var/log are overlays whose writes land in a temporary directory, so that a
 * script run there as root may create users and install files without
 * changing the machine. Commands and an OpenSSH sshd run inside it (nsenter);
 * the network is the machine's, so BYSU's workers reach the sshd on a loopback
 * port from outside. Needs root (CAP_SYS_ADMIN for the mounts).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { freePort, run, spawnTracked, stopProcess, waitForPort } from './processes.ts';
import { sshdPath } from './sshd.ts';

/** The directories a node setup writes under; each is an overlay in the namespace. */
export const OVERLAID = ['/etc', '/home', '/usr/local', '/var/log'];

/** Why a namespace cannot be made here, or undefined when it can. */
export function nodeNamespaceUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) {
    return 'needs root: it runs contrib/node/setup-node.sh, which creates a user and writes /etc, /home and /usr/local, '
      + 'in a private mount namespace with overlays over them (unshare --mount needs CAP_SYS_ADMIN); CI runs it as root';
  }
  for (const tool of ['/usr/bin/unshare', '/usr/bin/nsenter']) if (!existsSync(tool)) return `${tool} is missing (apt-get install -y util-linux)`;
  return undefined;
}

export interface NodeSshd {
  port: number;
  /** The known_hosts line of its host key, for [127.0.0.1]:port. */
  knownHostsLine: string;
  /** What sshd printed on stderr so far. */
  output(): string;
}

export interface NodeNamespace {
  /** Run a program inside the namespace. */
  exec(command: string, args: string[], options?: { input?: string; env?: NodeJS.ProcessEnv }): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** Run a line of shell inside the namespace, from directory cwd. */
  shell(line: string, cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** Start an sshd inside the namespace on a free loopback port, with the system's defaults but no PAM. */
  startSshd(): Promise<NodeSshd>;
  /** Every path the namespace has written so far (under each overlaid directory), sorted. */
  changes(): Promise<string[]>;
}

/** The files that say who the machine's users are, and a hash of each: to prove they were not touched. */
export function userDatabaseHashes(): Record<string, string> {
  const hashes: Record<string, string> = {};
  for (const file of ['/etc/passwd', '/etc/shadow', '/etc/group', '/etc/gshadow']) {
    hashes[file] = existsSync(file) ? createHash('sha256').update(readFileSync(file)).digest('hex') : 'missing';
  }
  return hashes;
}

/**
 * Given a scratch directory, make a private mount namespace with overlays over
 * OVERLAID (their writes go under dir), run fn with it, then stop everything
 * started in it; the namespace and its mounts go with its last process.
 */
export async function withNodeNamespace<T>(dir: string, fn: (namespace: NodeNamespace) => Promise<T>): Promise<T> {
  const overlays = path.join(dir, 'overlays');
  await mkdir(overlays, { recursive: true });
  const upper = (lower: string) => path.join(overlays, lower.slice(1).replaceAll('/', '_'), 'upper');
  // The holder mounts the overlays, says so, and keeps the namespace alive until it is stopped.
  const mountAll = [
    'set -e',
    'for lower in "$@"; do',
    '  name=$(printf %s "${lower#/}" | tr / _)',
    '  mkdir -p "$OVERLAYS/$name/upper" "$OVERLAYS/$name/work"',
    '  mount -t overlay overlay -o "lowerdir=$lower,upperdir=$OVERLAYS/$name/upper,workdir=$OVERLAYS/$name/work" "$lower"',
    'done',
    'echo mounted',
    'exec sleep 86400',
  ].join('\n');
  const holder = spawnTracked('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', mountAll, 'sh', ...OVERLAID], {
    env: { ...process.env, OVERLAYS: overlays },
  });
  const started: ChildProcess[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      let stdout = '';
      let stderr = '';
      holder.stdout!.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        if (stdout.includes('mounted\n')) resolve();
      });
      holder.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      holder.once('exit', (code) => reject(new Error(`could not make the node's mount namespace (exit ${code}): ${stderr}`)));
    });
    // Never run a command meant for the throwaway node on the machine itself.
    const [own, theirs] = await Promise.all([readlink('/proc/self/ns/mnt'), readlink(`/proc/${holder.pid}/ns/mnt`)]);
    if (own === theirs) throw new Error(`the node's namespace is the machine's own (${own})`);
    const enter = (command: string, args: string[]) => {
      if (holder.exitCode !== null || holder.signalCode !== null) throw new Error('the node\'s namespace is gone: its holder process exited');
      return ['--target', String(holder.pid), '--mount', '--', command, ...args];
    };
    const namespace: NodeNamespace = {
      exec(command, args, options = {}) {
        return run('nsenter', enter(command, args), { input: options.input, env: options.env ?? process.env, timeout: 120_000 });
      },
      shell(line, cwd) {
        return namespace.exec('sh', ['-c', 'cd -- "$1" || exit 1; eval "$2"', 'sh', cwd, line]);
      },
      async startSshd() {
        const sshdDir = path.join(dir, `sshd-${started.length}`);
        await mkdir(sshdDir);
        const hostKey = path.join(sshdDir, 'ssh_host_ed25519_key');
        const keygen = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'node', '-f', hostKey]);
        if (keygen.code !== 0) throw new Error(`ssh-keygen failed: ${keygen.stderr}`);
        const port = await freePort();
        // OpenSSH's defaults otherwise, as on a fresh node: AuthorizedKeysFile .ssh/authorized_keys and
        // StrictModes yes, so that the owners and modes the setup gives ~/.ssh are checked for real.
        // No PAM: sshd then also refuses key logins to a locked account (password field "!…").
        const config = [
          `Port ${port}`,
          'ListenAddress 127.0.0.1',
          `HostKey ${hostKey}`,
          `PidFile ${path.join(sshdDir, 'sshd.pid')}`,
          'UsePAM no',
          'PasswordAuthentication no',
          'KbdInteractiveAuthentication no',
          'PubkeyAuthentication yes',
          'LogLevel VERBOSE',
        ].join('\n');
        const configFile = path.join(sshdDir, 'sshd_config');
        await writeFile(configFile, `${config}\n`, { mode: 0o600 });
        await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
        const sshd = spawnTracked('nsenter', enter(sshdPath(), ['-D', '-e', '-f', configFile]));
        started.push(sshd);
        let output = '';
        sshd.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
        try {
          await waitForPort(port);
        } catch (error) {
          throw new Error(`sshd in the node's namespace did not start: ${output}`, { cause: error });
        }
        const [type, key] = (await readFile(`${hostKey}.pub`, 'utf8')).trim().split(/\s+/);
        return { port, knownHostsLine: `[127.0.0.1]:${port} ${type} ${key}`, output: () => output };
      },
      async changes() {
        const found: string[] = [];
        const walk = async (base: string, lower: string) => {
          for (const entry of await readdir(base, { withFileTypes: true })) {
            const full = path.join(base, entry.name);
            found.push(path.join(lower, path.relative(upper(lower), full)));
            if (entry.isDirectory()) await walk(full, lower);
          }
        };
        for (const lower of OVERLAID) await walk(upper(lower), lower);
        return found.sort();
      },
    };
    return await fn(namespace);
  } finally {
    await Promise.all(started.map((child) => stopProcess(child)));
    await stopProcess(holder);
  }
}
