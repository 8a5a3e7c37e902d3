/**
 * SSH sessions to cluster nodes: the only place that imports ssh2. A session
 * is opened with the node's host key checked (pinned fingerprint or
 * known_hosts), keepalive on and a ready timeout; commands run without a pty,
 * their stderr is drained with a bounded tail kept, and their exit status
 * (code or signal) is reported, or its absence as a failure.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import type { Readable, Writable } from 'node:stream';
import ssh2 from 'ssh2';
import { cutToBytes, escapeControls } from '../printable.ts';
import { AbortedError, AuthenticationError, ConfigError, ConnectionError, HostKeyError, toError } from '../errors.ts';
import {
  fingerprint,
  hostKeyAlgorithmsFor,
  keyTypeOf,
  knownHostsName,
  lookupHostKeys,
  parseKnownHosts,
  type KnownHostEntry,
} from './known-hosts.ts';
import { nodeAddressOf, type NodeAddress } from './node-address.ts';

const { Client } = ssh2;

/** What BYSU logs in with and where it looks up what it trusts. */
export interface SshIdentity {
  privateKey: Buffer;
  /** Path of the known_hosts file, read afresh at each openSession: a key added or fixed there needs no restart or signal. */
  knownHostsFile: string;
}

export interface ConnectOptions {
  /** TCP connect + handshake + login. */
  readyTimeoutMs: number;
  /** @defaultValue 15000 */
  keepaliveIntervalMs?: number;
  /** Unanswered keepalives before the connection counts as dead. @defaultValue 3 */
  keepaliveCountMax?: number;
  /** Aborts the login; its reason is what openSession throws. */
  signal?: AbortSignal;
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
  /** The command's stdin (already ended unless exec was asked for one). */
  stdin: Writable;
  /** Settles after stdout has been consumed and the channel closed. Never rejects. */
  exit: Promise<ExitStatus>;
  /** The last STDERR_TAIL_BYTES of the command's stderr, as text. */
  stderrTail(): string;
  /** Close the channel (on abort). */
  close(): void;
  /** Kill the remote command (SIGKILL through SSH, which OpenSSH honours), then close the channel without an EOF. */
  kill(): void;
}

export const STDERR_TAIL_BYTES = 4096;

/** The most of an ssh2 error's text kept in a reason: a node's DISCONNECT or channel-failure description is its own words. */
export const PEER_TEXT_BYTES = 512;

/** Given the message of an ssh2 error (which may carry the node's own text), return it escaped and cut to PEER_TEXT_BYTES. */
function peerText(message: string): string {
  return cutToBytes(escapeControls(message), PEER_TEXT_BYTES);
}

/** The last private key parsed, by its bytes: ssh2 would parse it again at every connection (each job), and a reload reads it anew. */
let lastParsed: { bytes: Buffer; key: ReturnType<typeof ssh2.utils.parseKey> } | null = null;

/** Given a private key's bytes, return it parsed (or the Error ssh2 gives), once per distinct key. */
function parsedKey(bytes: Buffer): ReturnType<typeof ssh2.utils.parseKey> {
  if (lastParsed === null || !lastParsed.bytes.equals(bytes)) lastParsed = { bytes: Buffer.from(bytes), key: ssh2.utils.parseKey(bytes) };
  return lastParsed.key;
}

/**
 * Given file paths, read the private key once and note where known_hosts is
 * (read at each connection, see readKnownHosts). Throw ConfigError when the
 * key cannot be parsed (garbage, or protected by a passphrase).
 */
export function readIdentity(identityFile: string, knownHostsFile: string): SshIdentity {
  const privateKey = readFileSync(identityFile);
  const parsed = parsedKey(privateKey);
  if (parsed instanceof Error) {
    throw new ConfigError([`ssh.identityFile: cannot use ${identityFile} as an SSH private key: ${parsed.message} (BYSU needs an unencrypted key, mode 0600)`]);
  }
  return { privateKey, knownHostsFile };
}

/** The entries of a known_hosts file as read just now. */
export interface KnownHostsFile {
  entries: KnownHostEntry[];
  /** The file does not exist (no entries: pins may suffice). */
  missing: boolean;
}

/**
 * Given the path of a known_hosts file, read and parse it now: it is small,
 * and reading it at each connection is what lets an operator add or fix a key
 * without a restart or a signal. A missing file has no entries. Throw
 * ConfigError naming the file when it exists but cannot be read (EACCES, EISDIR).
 */
export function readKnownHosts(file: string): KnownHostsFile {
  try {
    return { entries: parseKnownHosts(readFileSync(file, 'utf8')), missing: false };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { entries: [], missing: true };
    throw new ConfigError([
      `ssh.knownHosts: cannot read ${file} (${code ?? toError(error).message}): BYSU checks host keys against it at each connection; ` +
        `make it readable by the user BYSU runs as`,
    ]);
  }
}

/**
 * Given the host and port looked up, the known_hosts file and what the node
 * offered, return the message for a node whose key is neither known nor pinned:
 * where BYSU looked, under which name, and how to add the key.
 */
export function unknownHostMessage(where: string, host: string, port: number, file: string, missing: boolean, offered: string): string {
  return (
    `host key of ${where} is unknown: no known_hosts entry for ${knownHostsName(host, port)} in ${file}${missing ? ' (the file does not exist)' : ''} ` +
    `and no hostKey is pinned; it offered ${offered}. Check it out of band, then add the line that \`bysu keyscan ${host} --port ${port}\` prints ` +
    `to ${file} (read at each connection: no restart or reload needed), or pin its fingerprint as the node's hostKey`
  );
}

/**
 * Given the node, the identity and limits, open an SSH session, with the
 * known_hosts file read afresh. Throw ConfigError when that file cannot be
 * read, HostKeyError when the host key is unknown (naming the file and the
 * name looked up) or does not match (naming both fingerprints),
 * AuthenticationError when the key is refused, and
 * ConnectionError for anything else (refused, timeout, reset).
 */
export async function openSession(target: NodeAddress, identity: SshIdentity, options: ConnectOptions): Promise<SshSession> {
  const where = `node "${target.name}" (${target.user}@${target.host}:${target.port})`;
  // Read now, not when the worker started: a key added or fixed since then counts at once.
  const knownHosts = readKnownHosts(identity.knownHostsFile);
  const { trusted, revoked } = lookupHostKeys(knownHosts.entries, target.host, target.port);
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
      hostKeyProblem = unknownHostMessage(where, target.host, target.port, identity.knownHostsFile, knownHosts.missing, offered);
      return false;
    }
    if (trusted.some((key) => key.blob.equals(blob))) return true;
    const expected = trusted.map((key) => `${key.type} ${fingerprint(key.blob)}`).join(' or ');
    hostKeyProblem = `host key of ${where} does not match ${identity.knownHostsFile}: expected ${expected}, got ${offered}. It may have been reinstalled, or someone is in the middle`;
    return false;
  };

  const key = parsedKey(identity.privateKey);
  if (key instanceof Error) throw new ConfigError([`ssh.identityFile: cannot use the key as an SSH private key: ${key.message}`]);
  const publicKeyAuth: ssh2.PublicKeyAuthMethod = { type: 'publickey', username: target.user, key };
  const client = new Client();
  // Our own socket, so that it can be destroyed even after client.end(), which makes ssh2's destroy() a no-op.
  let socket: net.Socket | null = null;
  const algorithms = target.hostKey === undefined && trusted.length > 0
    ? { serverHostKey: hostKeyAlgorithmsFor(trusted.map((key) => key.type)) as ssh2.ServerHostKeyAlgorithm[] }
    : undefined;

  await new Promise<void>((resolve, reject) => {
    let settled = false;
    // ssh2 emits neither `error` nor `ready` when the server closes the connection after its
    // banner, and clears its readyTimeout then: `close`, our own timer and the signal settle it.
    const timer = setTimeout(() => fail(Object.assign(new Error('timeout'), { level: 'client-timeout' })), options.readyTimeoutMs + 1000);
    const onAbort = () => fail(options.signal?.reason instanceof Error ? options.signal.reason : new AbortedError(`connecting to ${where} was aborted`), true);
    const onClose = () => fail(new Error('the server closed the connection before login'));
    const settle = () => {
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      client.removeListener('close', onClose);
      client.removeListener('error', fail);
    };
    /** Reject with what went wrong; an abort's own reason is passed through unchanged. */
    function fail(error: Error & { level?: string }, aborted = false) {
      if (settled) return;
      settle();
      client.removeAllListeners('ready');
      client.destroy();
      socket?.destroy();
      if (aborted) reject(error);
      else if (hostKeyProblem !== null) reject(new HostKeyError(hostKeyProblem));
      else if (error.level === 'client-authentication') reject(new AuthenticationError(`${where} refused our key: ${peerText(error.message)}`));
      else if (error.level === 'client-timeout') reject(new ConnectionError(`${where}: no SSH login within ${options.readyTimeoutMs} ms`));
      else reject(new ConnectionError(`cannot connect to ${where}: ${peerText(error.message)}`, { cause: error }));
    }
    client.once('ready', () => {
      if (settled) return;
      settle();
      resolve();
    });
    client.once('error', fail);
    client.once('close', onClose);
    if (options.signal?.aborted) {
      onAbort();
      return;
    }
    options.signal?.addEventListener('abort', onAbort, { once: true });
    // ssh2 starts its readyTimeout before waiting for a socket that is still connecting, as for its own.
    socket = net.connect({ host: target.host, port: target.port });
    client.connect({
      sock: socket,
      host: target.host,
      port: target.port,
      username: target.user,
      // The key already parsed (ssh2 would parse privateKey again at every connection).
      authHandler: [publicKeyAuth],
      readyTimeout: options.readyTimeoutMs,
      keepaliveInterval: options.keepaliveIntervalMs ?? 15_000,
      keepaliveCountMax: options.keepaliveCountMax ?? 3,
      hostVerifier: verify,
      ...(algorithms ? { algorithms } : {}),
    });
  });
  return new SshSession(client, socket!, where);
}

/** How a worker logs in to nodes: its identity, the login timeout and the keepalive. */
export interface NodeConnectSettings {
  identity: SshIdentity;
  connectTimeoutMs: number;
  /** A peer that answers none of countMax keepalives counts as dead. */
  keepalive?: { intervalMs: number; countMax: number };
}

/** Given a node as a job carries it, the worker's settings and an abort signal, open a session (see openSession). */
export async function openNodeSession(
  node: NodeAddress,
  settings: NodeConnectSettings,
  signal: AbortSignal,
): Promise<SshSession> {
  return openSession(
    nodeAddressOf(node),
    settings.identity,
    {
      readyTimeoutMs: settings.connectTimeoutMs,
      signal,
      ...(settings.keepalive ? { keepaliveIntervalMs: settings.keepalive.intervalMs, keepaliveCountMax: settings.keepalive.countMax } : {}),
    },
  );
}

export interface ExecOptions {
  /**
   * Aborts the wait for the node to grant the command (the job's timeout,
   * shutdown, cancellation); exec then rejects with the signal's reason.
   * Required: ssh2 puts no deadline of its own on a channel open or an exec request.
   */
  signal: AbortSignal;
  /** Leave the command's stdin open for the caller to write and end. @defaultValue false */
  stdin?: boolean;
}

/** How long close() lets the node answer the disconnect before the socket is destroyed. */
const CLOSE_GRACE_MS = 2000;

/** An open SSH connection to one node. */
export class SshSession {
  private closedReason: string | null = null;
  private closed = false;

  constructor(private readonly client: ssh2.Client, private readonly socket: net.Socket, readonly where: string) {
    client.on('error', (error) => {
      this.closedReason = peerText(error.message);
    });
    client.on('close', () => {
      this.closed = true;
      this.closedReason ??= 'connection closed';
    });
  }

  /**
   * Given a shell command, run it on the node without a pty, with stdin closed
   * unless `stdin` is asked for (the caller then writes and ends it). Throw
   * ConnectionError when the channel cannot be opened, and the signal's reason
   * when it aborts before the node granted the command: the connection is then
   * dropped (ssh2 hands out no channel before the grant, so dropping the
   * connection is the only way to end it on the node), and a channel granted
   * in the same breath is killed at once, so nothing is left running.
   */
  async exec(command: string, options: ExecOptions): Promise<RemoteCommand> {
    const { signal } = options;
    const reasonOf = () => (signal.reason instanceof Error ? signal.reason : new AbortedError(`starting a command on ${this.where} was aborted`));
    if (signal.aborted) throw reasonOf();
    if (this.closedReason !== null) throw new ConnectionError(`${this.where}: ${this.closedReason}`);
    const channel = await new Promise<ssh2.ClientChannel>((resolve, reject) => {
      let abandoned = false;
      const onAbort = () => {
        abandoned = true;
        reject(reasonOf());
        this.destroy();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      try {
        this.client.exec(command, (error, opened) => {
          signal.removeEventListener('abort', onAbort);
          if (abandoned) {
            if (!error) endChannel(opened);
            return;
          }
          if (error) reject(new ConnectionError(`${this.where}: cannot start a command: ${peerText(error.message)}`, { cause: error }));
          else resolve(opened);
        });
      } catch (error) {
        // ssh2 throws "Not connected" at once when the socket is gone.
        signal.removeEventListener('abort', onAbort);
        reject(new ConnectionError(`${this.where}: cannot start a command: ${peerText((error as Error).message)}`, { cause: error }));
      }
    });
    // Dumps get an empty stdin so nothing waits on it; a drill step may be given one to write to.
    if (!options.stdin) channel.end();

    let tail = Buffer.alloc(0);
    let truncated = false;
    channel.stderr.on('data', (chunk: Buffer) => {
      tail = Buffer.concat([tail, chunk]);
      if (tail.length > STDERR_TAIL_BYTES) {
        tail = tail.subarray(tail.length - STDERR_TAIL_BYTES);
        truncated = true;
      }
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
      stdin: channel,
      exit,
      stderrTail: () => {
        // A cut tail may start inside a UTF-8 sequence: drop its continuation bytes, nothing else.
        let start = 0;
        while (truncated && start < tail.length && start < 3 && (tail[start]! & 0xc0) === 0x80) start += 1;
        return tail.subarray(start).toString('utf8');
      },
      close: () => channel.close(),
      kill: () => endChannel(channel),
    };
  }

  /**
   * Close the connection: say goodbye, and destroy the socket if the node has
   * not closed its side within CLOSE_GRACE_MS (a node that stopped answering
   * must not keep a socket of ours open).
   */
  close(): void {
    if (this.closed) return;
    this.client.end();
    const timer = setTimeout(() => this.destroy(), CLOSE_GRACE_MS);
    timer.unref();
    this.client.once('close', () => clearTimeout(timer));
  }

  /** Drop the connection at once, ending every channel on it. */
  destroy(): void {
    this.socket.destroy();
  }
}

/** Kill a channel's command (SIGKILL through SSH, which OpenSSH honours), then close the channel without an EOF. */
function endChannel(channel: ssh2.ClientChannel): void {
  try {
    channel.signal('KILL');
  } catch {
    // the channel is gone already
  }
  channel.close();
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
      let finished = false;
      const done = () => {
        if (finished) return;
        finished = true;
        client.destroy();
        resolve(seen);
      };
      client.on('error', (error) => {
        if (seen === null) lastError = error;
        done();
      });
      client.on('ready', done);
      client.on('close', () => {
        if (seen === null) lastError ??= new Error('the server closed the connection before sending a host key');
        done();
      });
      // ssh2 clears its own readyTimeout when the server closes early; do not rely on it alone.
      setTimeout(done, timeoutMs + 1000).unref();
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
