/**
 * A real SMTP server per test on a random loopback port (aiosmtpd, driven by
 * smtp-server.py beside this file): it receives each message over the wire,
 * parses it with Python's email package and keeps it as JSON, so tests read
 * the headers and body a mail client would show. STARTTLS (with a
 * certificate made by `makeCertificate`) and a required login are options.
 * Stop and start it again on the same port to play a server that is down.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, run, spawnTracked, stopProcess, waitForPort, withTempDir } from './processes.ts';

/** Debian's interpreter: python3-aiosmtpd installs for it (a python3 earlier on the PATH, pyenv's, may not see it). */
const PYTHON = '/usr/bin/python3';
const SERVER_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'smtp-server.py');
export const AIOSMTPD_INSTALL = 'sudo apt-get install -y python3-aiosmtpd';

/** One message as the server received and parsed it. */
export interface ReceivedMail {
  mailFrom: string;
  rcptTos: string[];
  headers: Record<string, string>;
  contentType: string;
  text: string | null;
  /** Whether the session was encrypted (STARTTLS) when the message was sent. */
  encrypted: boolean;
  /** The user that logged in, if any. */
  login: string | null;
}

export interface TestSmtpServer {
  host: '127.0.0.1';
  port: number;
  /** Messages received so far, in order. */
  messages(): Promise<ReceivedMail[]>;
  /** Resolve with the messages once `match` holds for them (or throw after timeoutMs). */
  waitFor(match: (messages: ReceivedMail[]) => boolean, timeoutMs?: number): Promise<ReceivedMail[]>;
  /** Stop the server: connections to its port are refused. */
  stop(): Promise<void>;
  /** Start it again on the same port (the messages received before stay). */
  start(): Promise<void>;
}

export interface SmtpServerOptions {
  /** Offer STARTTLS with this certificate and key, and require it before any message. */
  starttls?: { cert: string; key: string };
  /** Require this login. */
  login?: { user: string; password: string };
  /** Do not start it (start() does). */
  down?: boolean;
}

/**
 * Return false when aiosmtpd can run, else why not (a test's skip message).
 * Installs python3-aiosmtpd with apt-get when it is missing and this runs as root.
 */
export function smtpServerUnavailable(): string | false {
  const importable = () => {
    try {
      execFileSync(PYTHON, ['-c', 'import aiosmtpd'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  if (existsSync(PYTHON) && importable()) return false;
  if (process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) {
    try {
      const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
      execFileSync('/bin/sh', ['-c', 'apt-get install -y -qq --no-install-recommends python3-aiosmtpd || { apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-aiosmtpd; }'],
        { stdio: 'ignore', env });
    } catch {
      // said below
    }
    if (existsSync(PYTHON) && importable()) return false;
  }
  return `the test SMTP server needs aiosmtpd for ${PYTHON}: ${AIOSMTPD_INSTALL} (npm run setup installs it)`;
}

/** Start an SMTP server with these options, run fn with it, stop it. */
export async function withSmtpServer<T>(options: SmtpServerOptions, fn: (server: TestSmtpServer) => Promise<T>): Promise<T> {
  return withTempDir(async (dir) => {
    const inbox = path.join(dir, 'inbox');
    await mkdir(inbox);
    const port = await freePort();
    const args = [SERVER_SCRIPT, '--port', String(port), '--dir', inbox];
    if (options.starttls) args.push('--starttls-cert', options.starttls.cert, '--starttls-key', options.starttls.key);
    if (options.login) args.push('--user', options.login.user);
    const env = { ...process.env, ...(options.login ? { SMTP_TEST_PASSWORD: options.login.password } : {}) };
    let child: ChildProcess | null = null;
    const messages = async () => {
      const names = (await readdir(inbox)).filter((name) => name.endsWith('.json')).sort();
      return Promise.all(names.map(async (name) => JSON.parse(await readFile(path.join(inbox, name), 'utf8')) as ReceivedMail));
    };
    const server: TestSmtpServer = {
      host: '127.0.0.1',
      port,
      messages,
      async waitFor(match, timeoutMs = 30_000) {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const received = await messages();
          if (match(received)) return received;
          if (Date.now() > deadline) throw new Error(`the SMTP server did not receive the expected messages within ${timeoutMs} ms; got ${JSON.stringify(received.map((mail) => mail.headers.Subject))}`);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      },
      async stop() {
        if (child) await stopProcess(child);
        child = null;
      },
      async start() {
        const started = spawnTracked(PYTHON, args, { env });
        child = started;
        let output = '';
        started.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
        started.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
        await waitForPort(port).catch((error: Error) => {
          throw new Error(`${error.message}; the SMTP server said: ${output}`);
        });
      },
    };
    if (!options.down) await server.start();
    try {
      return await fn(server);
    } finally {
      await server.stop();
    }
  });
}

/**
 * Make a CA and a server certificate it signs, for 127.0.0.1 and localhost,
 * in `dir`: a server with a certificate no public CA knows, as a small
 * team's own mail relay has.
 */
export async function makeCertificate(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const file = (name: string) => path.join(dir, name);
  const openssl = async (args: string[]) => {
    const result = await run('openssl', args);
    if (result.code !== 0) throw new Error(`openssl ${args[0]} failed: ${result.stderr}`);
  };
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=BYSU test CA', '-keyout', file('ca.key'), '-out', file('ca.pem')]);
  await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', file('server.key'), '-out', file('server.csr')]);
  await writeFile(file('san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await openssl(['x509', '-req', '-in', file('server.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-CAcreateserial', '-days', '2',
    '-extfile', file('san.ext'), '-out', file('server.pem')]);
  return { ca: file('ca.pem'), cert: file('server.pem'), key: file('server.key') };
}
