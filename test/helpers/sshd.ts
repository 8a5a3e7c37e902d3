/**
 * Real OpenSSH sshd processes as cluster nodes: each on its own random
 * loopback port with its own ed25519 host key, logging in the current user
 * with a client key generated per run. Commands run by the node run as that
 * user, in a shell, with the node's directory as a scratch area.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { freePort, run, spawnTracked, stopProcess, waitForPort } from './processes.ts';

export interface ClientKeys {
  /** Private key file (0600). */
  identityFile: string;
  publicKey: string;
  /** known_hosts file; nodes append their entries to it. */
  knownHostsFile: string;
}

export interface TestNode {
  name: string;
  host: string;
  port: number;
  user: string;
  dir: string;
  /** `SHA256:` fingerprint of the node's host key. */
  fingerprint: string;
  /** The known_hosts line for this node. */
  knownHostsLine: string;
  process: ChildProcess;
  /** Stop the sshd (SIGTERM). */
  stop(): Promise<void>;
  /** Start it again on the same port with the same key. */
  start(): Promise<void>;
}

export function sshdPath(): string {
  for (const candidate of ['/usr/sbin/sshd', '/usr/bin/sshd']) if (existsSync(candidate)) return candidate;
  throw new Error('OpenSSH sshd is not installed: run `npm run setup` (or apt-get install -y openssh-server)');
}

async function keygen(file: string, comment: string): Promise<void> {
  const result = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file]);
  if (result.code !== 0) throw new Error(`ssh-keygen failed: ${result.stderr}`);
}

/** Generate a client key pair and an empty known_hosts in dir. */
export async function createClientKeys(dir: string): Promise<ClientKeys> {
  await mkdir(dir, { recursive: true });
  const identityFile = path.join(dir, 'id_ed25519');
  await keygen(identityFile, 'bysu-test-client');
  await chmod(identityFile, 0o600);
  const knownHostsFile = path.join(dir, 'known_hosts');
  await writeFile(knownHostsFile, '', { mode: 0o600 });
  return { identityFile, publicKey: (await readFile(`${identityFile}.pub`, 'utf8')).trim(), knownHostsFile };
}

/**
 * Start an sshd node named `name` under dir that accepts `keys`. Its host key
 * is appended to keys.knownHostsFile unless `addToKnownHosts` is false.
 */
export async function startSshNode(name: string, dir: string, keys: ClientKeys, options: { addToKnownHosts?: boolean } = {}): Promise<TestNode> {
  const nodeDir = path.join(dir, `node-${name}`);
  await mkdir(nodeDir, { recursive: true });
  if (process.getuid?.() === 0) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const hostKey = path.join(nodeDir, 'ssh_host_ed25519_key');
  await keygen(hostKey, name);
  const authorizedKeys = path.join(nodeDir, 'authorized_keys');
  await writeFile(authorizedKeys, `${keys.publicKey}\n`, { mode: 0o600 });
  const port = await freePort();
  const user = os.userInfo().username;
  const config = [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${hostKey}`,
    `AuthorizedKeysFile ${authorizedKeys}`,
    `PidFile ${path.join(nodeDir, 'sshd.pid')}`,
    'StrictModes no',
    'UsePAM no',
    'PermitRootLogin prohibit-password',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PubkeyAuthentication yes',
    'MaxStartups 200:30:400',
    'MaxSessions 50',
    'LogLevel ERROR',
    'PrintMotd no',
    // SHLVL=1: bash, started by sshd, sources ~/.bashrc only at shell level 1. The test user's
    // .bashrc is the machine's, not a node's (root's runs `pyenv init`, 5 s a login, and waits
    // 60 s on a lock left by a rehash that a killed sshd tree interrupted), so keep it out.
    `SetEnv NODE_DIR=${nodeDir} SHLVL=1`,
  ].join('\n');
  const configFile = path.join(nodeDir, 'sshd_config');
  await writeFile(configFile, `${config}\n`, { mode: 0o600 });
  const publicKey = (await readFile(`${hostKey}.pub`, 'utf8')).trim().split(/\s+/);
  const fingerprintResult = await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${hostKey}.pub`]);
  const fingerprint = fingerprintResult.stdout.split(/\s+/)[1]!;
  const knownHostsLine = `[127.0.0.1]:${port} ${publicKey[0]} ${publicKey[1]}`;
  if (options.addToKnownHosts !== false) await writeFile(keys.knownHostsFile, `${knownHostsLine}\n`, { flag: 'a' });

  const spawnSshd = () => spawnTracked(sshdPath(), ['-D', '-e', '-f', configFile]);
  const node: TestNode = {
    name,
    host: '127.0.0.1',
    port,
    user,
    dir: nodeDir,
    fingerprint,
    knownHostsLine,
    process: spawnSshd(),
    async stop() {
      await stopProcess(node.process);
    },
    async start() {
      node.process = spawnSshd();
      await waitForPort(port);
    },
  };
  let stderr = '';
  node.process.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  try {
    await waitForPort(port);
  } catch (error) {
    throw new Error(`sshd for node ${name} did not start: ${stderr}`, { cause: error });
  }
  return node;
}

/** Start `count` nodes, run fn, stop them all. */
export async function withSshNodes<T>(dir: string, names: string[], fn: (nodes: TestNode[], keys: ClientKeys) => Promise<T>): Promise<T> {
  const keys = await createClientKeys(path.join(dir, 'client'));
  const nodes: TestNode[] = [];
  try {
    for (const name of names) nodes.push(await startSshNode(name, dir, keys));
    return await fn(nodes, keys);
  } finally {
    await Promise.all(nodes.map((node) => node.stop()));
  }
}
