/**
 * SSH sessions to cluster nodes: the only place that imports ssh2. A session
 * is opened with the node's host key checked (pinned fingerprint or
 * known_hosts), keepalive on and a ready timeout; commands run without a pty,
 * their stderr is drained with a bounded tail kept, and their exit status
 * (code or signal) is reported, or its absence as a failure.
 */
import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import ssh2 from 'ssh2';
import { AuthenticationError, ConnectionError, HostKeyError } from '../errors.ts';
import {
  fingerprint,
  hostKeyAlgorithmsFor,
  keyTypeOf,
  knownHostsName,
  lookupHostKeys,
  parseKnownHosts,
  type KnownHostEntry,
} from './known-hosts.ts';

const { Client } = ssh2;

/** Where to log in. */
export interface SshTarget {
  /** Node name, for messages. */
  name: string;
  host: string;
  port: number;
  user: string;
  /** Pinned `SHA256:` fingerprint; when absent the known_hosts entries decide. */
  hostKey?: string;
}

/** What BYSU logs in with and what it trusts. */
export interface SshIdentity {
  privateKey: Buffer;
  knownHosts: KnownHostEntry[];
  /** Path of the known_hosts file, for messages. */
  knownHostsFile: string;
}

export interface ConnectOptions {
  /** TCP connect + handshake + login. */
  readyTimeoutMs: number;
  /** @defaultValue 15000 */
  keepaliveIntervalMs?: number;
  /** Unanswered keepalives before the connection counts as dead. @defaultValue 3 */
  keepaliveCountMax?: number;
}

export interface ExitStatus {
  /** Exit code, or null when the command was killed by a signal or the connection dropped. */
  code: number | null;
  /** Signal name (`TERM`, `KILL`) when the command was killed by one. */
  signal: string | null;
}

export interface RemoteCommand {
  /** The command's stdout, byte for byte. */
  stdout: Readable;
  /** Settles after stdout has been consumed and the channel closed. Never rejects. */
  exit: Promise<ExitStatus>;
  /** The last STDERR_TAIL_BYTES of the command's stderr, as text. */
  stderrTail(): string;
  /** Close the channel (on abort). */
  close(): void;
}

export const STDERR_TAIL_BYTES = 4096;

/** Given file paths, read the identity and known_hosts (missing known_hosts = empty: pins may suffice). */
export function readIdentity(identityFile: string, knownHostsFile: string): SshIdentity {
  let knownHostsText = '';
  try {
    knownHostsText = readFileSync(knownHostsFile, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  return { privateKey: readFileSync(identityFile), knownHosts: parseKnownHosts(knownHostsText), knownHostsFile };
}

/**
 * Given the node, the identity and limits, open an SSH session.
 * Throw HostKeyError when the host key is unknown or does not match (naming
 * both fingerprints), AuthenticationError when the key is refused, and
 * ConnectionError for anything else (refused, timeout, reset).
 */
export async function openSession(target: SshTarget, identity: SshIdentity, options: ConnectOptions): Promise<SshSession> {
  const where = `node "${target.name}" (${target.user}@${target.host}:${target.port})`;
  const { trusted, revoked } = lookupHostKeys(identity.knownHosts, target.host, target.port);
  let hostKeyProblem: string | null = null;

  const verify = (blob: Buffer): boolean => {
    const actual = fingerprint(blob);
    const offered = `${keyTypeOf(blob)} ${actual}`;
    if (revoked.some((key) => key.blob.equals(blob))) {
      hostKeyProblem = `host key of ${where} is marked @revoked in ${identity.knownHostsFile}: ${offered}`;
      return false;
    }
    if (target.hostKey !== undefined) {
      if (actual === target.hostKey) return true;
      hostKeyProblem = `host key of ${where} does not match the pinned key: expected ${target.hostKey}, got ${offered}`;
      return false;
    }
    if (trusted.length === 0) {
      hostKeyProblem =
        `host key of ${where} is unknown: ${knownHostsName(target.host, target.port)} is not in ${identity.knownHostsFile} ` +
        `and no hostKey is pinned; it offered ${offered}. Check it out of band, then pin it (bysu keyscan ${target.host} --port ${target.port})`;
      return false;
    }
    if (trusted.some((key) => key.blob.equals(blob))) return true;
    const expected = trusted.map((key) => `${key.type} ${fingerprint(key.blob)}`).join(' or ');
    hostKeyProblem = `host key of ${where} does not match ${identity.knownHostsFile}: expected ${expected}, got ${offered}. It may have been reinstalled, or someone is in the middle`;
    return false;
  };

  const client = new Client();
  const algorithms = target.hostKey === undefined && trusted.length > 0
    ? { serverHostKey: hostKeyAlgorithmsFor(trusted.map((key) => key.type)) as ssh2.ServerHostKeyAlgorithm[] }
    : undefined;

  await new Promise<void>((resolve, reject) => {
    const fail = (error: Error & { level?: string }) => {
      client.removeAllListeners('ready');
      client.end();
      if (hostKeyProblem !== null) reject(new HostKeyError(hostKeyProblem));
      else if (error.level === 'client-authentication') reject(new AuthenticationError(`${where} refused our key: ${error.message}`));
      else if (error.level === 'client-timeout') reject(new ConnectionError(`${where}: no SSH login within ${options.readyTimeoutMs} ms`));
      else reject(new ConnectionError(`cannot connect to ${where}: ${error.message}`, { cause: error }));
    };
    client.once('ready', () => {
      client.removeListener('error', fail);
      resolve();
    });
    client.once('error', fail);
    client.connect({
      host: target.host,
      port: target.port,
      username: target.user,
      privateKey: identity.privateKey,
      readyTimeout: options.readyTimeoutMs,
      keepaliveInterval: options.keepaliveIntervalMs ?? 15_000,
      keepaliveCountMax: options.keepaliveCountMax ?? 3,
      hostVerifier: verify,
      ...(algorithms ? { algorithms } : {}),
    });
  });
  return new SshSession(client, where);
}

/** An open SSH connection to one node. */
export class SshSession {
  private closedReason: string | null = null;

  constructor(private readonly client: ssh2.Client, readonly where: string) {
    client.on('error', (error) => {
      this.closedReason = error.message;
    });
    client.on('close', () => {
      this.closedReason ??= 'connection closed';
    });
  }

  /**
   * Given a shell command, run it on the node without a pty and with stdin
   * closed. Throw ConnectionError when the channel cannot be opened.
   */
  async exec(command: string): Promise<RemoteCommand> {
    if (this.closedReason !== null) throw new ConnectionError(`${this.where}: ${this.closedReason}`);
    const channel = await new Promise<ssh2.ClientChannel>((resolve, reject) => {
      this.client.exec(command, (error, opened) => {
        if (error) reject(new ConnectionError(`${this.where}: cannot start a command: ${error.message}`, { cause: error }));
        else resolve(opened);
      });
    });
    // The commands are dumps: give them an empty stdin so nothing waits on it.
    channel.end();

    let tail = Buffer.alloc(0);
    channel.stderr.on('data', (chunk: Buffer) => {
      tail = Buffer.concat([tail, chunk]);
      if (tail.length > STDERR_TAIL_BYTES) tail = tail.subarray(tail.length - STDERR_TAIL_BYTES);
    });

    let status: ExitStatus = { code: null, signal: null };
    channel.on('exit', (code: number | null, signal?: string) => {
      status = { code: typeof code === 'number' ? code : null, signal: signal ?? null };
    });
    const exit = new Promise<ExitStatus>((resolve) => {
      channel.once('close', (code?: number | null, signal?: string) => {
        if (status.code === null && status.signal === null && (typeof code === 'number' || typeof signal === 'string')) {
          status = { code: typeof code === 'number' ? code : null, signal: signal ?? null };
        }
        resolve(status);
      });
    });

    return {
      stdout: channel,
      exit,
      stderrTail: () => tail.toString('utf8').replace(/^[\s\S]*?\uFFFD/, ''),
      close: () => channel.close(),
    };
  }

  /** Close the connection. */
  close(): void {
    this.client.end();
  }
}

/** Host key algorithms keyscan asks for, one connection each. */
const KEYSCAN_ALGORITHMS = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512'] as const;

export interface ScannedKey {
  type: string;
  fingerprint: string;
  /** The line to append to known_hosts. */
  knownHostsLine: string;
}

/**
 * Given a host and port, return the host keys its SSH server offers, one per
 * type. Throw ConnectionError when nothing answers.
 */
export async function scanHostKeys(host: string, port: number, timeoutMs: number): Promise<ScannedKey[]> {
  const keys: ScannedKey[] = [];
  let lastError: Error | null = null;
  for (const algorithm of KEYSCAN_ALGORITHMS) {
    const blob = await new Promise<Buffer | null>((resolve) => {
      let seen: Buffer | null = null;
      const client = new Client();
      const done = () => {
        client.end();
        resolve(seen);
      };
      client.on('error', (error) => {
        if (seen === null) lastError = error;
        done();
      });
      client.on('ready', done);
      client.connect({
        host,
        port,
        username: 'bysu-keyscan',
        readyTimeout: timeoutMs,
        algorithms: { serverHostKey: [algorithm] },
        hostVerifier: (key: Buffer) => {
          seen = key;
          return false;
        },
      });
    });
    if (blob !== null && !keys.some((key) => key.fingerprint === fingerprint(blob))) {
      const type = keyTypeOf(blob);
      keys.push({ type, fingerprint: fingerprint(blob), knownHostsLine: `${knownHostsName(host, port)} ${type} ${blob.toString('base64')}` });
    }
  }
  if (keys.length === 0) {
    throw new ConnectionError(`no SSH host key from ${host}:${port}: ${(lastError as Error | null)?.message ?? 'no answer'}`);
  }
  return keys;
}
