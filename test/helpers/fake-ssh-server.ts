/**
 * A fake SSH server (ssh2's Server) for the protocol corners a real sshd will
 * not show on demand: a node that accepts the connection and then never
 * answers one of the requests of a login and a command. It counts the
 * connections it sees open and closed, so a test can tell that BYSU left no
 * socket behind. Only for such corners; everything else runs against a real
 * OpenSSH sshd (test/helpers/sshd.ts).
 */
import { createHash } from 'node:crypto';
import type net from 'node:net';
import ssh2 from 'ssh2';

/**
 * Where the fake node goes silent:
 * - `auth`: never answers the userauth request (a login stuck in keyboard-interactive or a hung PAM);
 * - `session`: accepts the login, never answers the request to open a session channel;
 * - `exec`: opens the session, never answers the exec request on it;
 * - `output`: grants the command, which then never writes a byte nor exits.
 */
export type SilentAt = 'auth' | 'session' | 'exec' | 'output';

export interface FakeSshServer {
  port: number;
  /** The host key's `SHA256:` fingerprint, to pin as the node's hostKey. */
  hostKey: string;
  /** Connections accepted so far, and those of them now closed. */
  connections(): { opened: number; closed: number };
  /** Session channels and exec requests the fake node was asked for. */
  requests(): { sessions: number; execs: number };
  /** Resolve once the node has been asked for what it leaves unanswered (the session or the exec); reject after timeoutMs. */
  silentRequestSeen(timeoutMs: number): Promise<void>;
  /** Resolve once every accepted connection is closed; reject after timeoutMs. */
  allClosed(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * A fresh ed25519 key pair. ssh2 1.17's generateKeyPairSync makes about one
 * ed25519 key in 250 that its own parseKey rejects ("Malformed OpenSSH public
 * key"): draw again until both halves parse.
 */
function ed25519Keys(): { private: string; public: ssh2.ParsedKey } {
  for (;;) {
    const keys = ssh2.utils.generateKeyPairSync('ed25519');
    const parsed = ssh2.utils.parseKey(keys.public);
    if (!(parsed instanceof Error) && !(ssh2.utils.parseKey(keys.private) instanceof Error)) return { private: keys.private, public: parsed };
  }
}

/** Given where to go silent, start a fake node on a random loopback port. */
export async function startFakeSshServer(silentAt: SilentAt): Promise<FakeSshServer> {
  const keys = ed25519Keys();
  const parsed = keys.public;
  const hostKey = `SHA256:${createHash('sha256').update(parsed.getPublicSSH()).digest('base64').replace(/=+$/, '')}`;
  let opened = 0;
  let closed = 0;
  const requests = { sessions: 0, execs: 0 };
  const clients = new Set<ssh2.Connection>();

  const server = new ssh2.Server({ hostKeys: [keys.private] }, (client) => {
    opened += 1;
    clients.add(client);
    client.on('error', () => undefined);
    client.on('close', () => {
      closed += 1;
      clients.delete(client);
    });
    client.on('authentication', (context) => {
      if (silentAt !== 'auth') context.accept();
    });
    client.on('ready', () => {
      // A listener that never calls accept or reject leaves the request unanswered (no listener would refuse it).
      client.on('session', (accept) => {
        requests.sessions += 1;
        if (silentAt === 'session') return;
        accept().on('exec', (acceptExec) => {
          requests.execs += 1;
          if (silentAt === 'output') acceptExec();
        });
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;

  return {
    port,
    hostKey,
    connections: () => ({ opened, closed }),
    requests: () => ({ ...requests }),
    async silentRequestSeen(timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      const seen = () => (silentAt === 'session' ? requests.sessions > 0 : silentAt === 'exec' ? requests.execs > 0 : opened > 0);
      while (!seen()) {
        if (Date.now() > deadline) throw new Error(`the fake node saw no ${silentAt} request within ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    async allClosed(timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (opened === 0 || closed < opened) {
        if (Date.now() > deadline) throw new Error(`the fake node still has ${opened - closed} of ${opened} connections open after ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async close() {
      for (const client of clients) client.end();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A fresh client identity for logging in to a fake node (which accepts any key). */
export function fakeNodeIdentity(): { privateKey: Buffer; knownHostsFile: string } {
  return { privateKey: Buffer.from(ed25519Keys().private), knownHostsFile: '/nonexistent/known_hosts' };
}

/** Given a promise, settle as it does, or reject after ms: a hang becomes a clean test failure. */
export async function within<T>(ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => (timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
