/**
 * Protocol corners of the SSH client that a real sshd will not show on
 * demand, against a fake TCP server: a server that closes right after its
 * banner, and one that sends its banner and then says nothing. Neither may
 * leave a login (or a keyscan) pending for ever. Then, against a fake SSH
 * server, a node that accepts the connection and never answers the login,
 * the channel open or the exec request: each wait must end with the timeout
 * or the abort, and close the socket.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { ConnectionError, LimitExceededError } from '../../../src/errors.ts';
import { openSession, scanHostKeys, type SshIdentity } from '../../../src/ssh/session.ts';
import { fakeNodeIdentity, startFakeSshServer, within } from '../../helpers/fake-ssh-server.ts';

let closing: net.Server;
let silent: net.Server;
const sockets = new Set<net.Socket>();

async function listen(server: net.Server): Promise<number> {
  if (!server.listening) await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

before(() => {
  closing = net.createServer((socket) => socket.end('SSH-2.0-OpenSSH_9.2p1 fake\r\n'));
  silent = net.createServer((socket) => {
    sockets.add(socket);
    socket.write('SSH-2.0-OpenSSH_9.2p1 fake\r\n');
  });
});

after(() => {
  for (const socket of sockets) socket.destroy();
  closing.close();
  silent.close();
});

function identity(): SshIdentity {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bysu-key-'));
  try {
    const result = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'id')]);
    assert.equal(result.status, 0, String(result.stderr));
    return { privateKey: readFileSync(path.join(dir, 'id')), knownHostsFile: '/nonexistent/known_hosts' };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a server that closes after its banner fails the login at once', async () => {
  const port = await listen(closing);
  const target = { name: 'n', host: '127.0.0.1', port, user: 'u', hostKey: `SHA256:${'A'.repeat(43)}` };
  await assert.rejects(within(5000, openSession(target, identity(), { readyTimeoutMs: 2000 })), (error: unknown) => {
    assert.ok(error instanceof ConnectionError, String(error));
    assert.match((error as Error).message, /closed the connection before login/);
    return true;
  });
  await assert.rejects(within(5000, scanHostKeys('127.0.0.1', port, 2000)), /no SSH host key from 127\.0\.0\.1/);
});

test('a silent server: the abort signal ends the login with its own reason', async () => {
  const port = await listen(silent);
  const target = { name: 'n', host: '127.0.0.1', port, user: 'u', hostKey: `SHA256:${'A'.repeat(43)}` };
  const controller = new AbortController();
  setTimeout(() => controller.abort(new LimitExceededError('snapshot exceeded its timeout')), 300);
  const started = Date.now();
  await assert.rejects(within(5000, openSession(target, identity(), { readyTimeoutMs: 60_000, signal: controller.signal })), LimitExceededError);
  assert.ok(Date.now() - started < 3000, 'aborted promptly, not after the ready timeout');
});

test('a silent server: the ready timeout ends the login', async () => {
  const port = await listen(silent);
  const target = { name: 'n', host: '127.0.0.1', port, user: 'u', hostKey: `SHA256:${'A'.repeat(43)}` };
  await assert.rejects(within(8000, openSession(target, identity(), { readyTimeoutMs: 1000 })), /no SSH login within 1000 ms/);
});

// The corners below need a node that logs in and then goes silent: a fake ssh2 Server (test/helpers/fake-ssh-server.ts).

test('a node that never answers the userauth request: the ready timeout and the abort both end the login, and the socket', async () => {
  const node = await startFakeSshServer('auth');
  try {
    const target = { name: 'n', host: '127.0.0.1', port: node.port, user: 'u', hostKey: node.hostKey };
    await assert.rejects(within(8000, openSession(target, fakeNodeIdentity(), { readyTimeoutMs: 1000 })), /no SSH login within 1000 ms/);
    const controller = new AbortController();
    setTimeout(() => controller.abort(new LimitExceededError('snapshot exceeded its timeout')), 300);
    const started = Date.now();
    await assert.rejects(within(5000, openSession(target, fakeNodeIdentity(), { readyTimeoutMs: 60_000, signal: controller.signal })), LimitExceededError);
    assert.ok(Date.now() - started < 3000, 'aborted promptly, not after the ready timeout');
    await node.allClosed(3000);
    assert.equal(node.connections().opened, 2);
  } finally {
    await node.close();
  }
});

for (const silentAt of ['session', 'exec'] as const) {
  // Fails before the fix: exec took no signal and waited for the node's answer for ever ("still pending after 5000 ms").
  test(`a node that never answers the ${silentAt === 'session' ? 'channel open' : 'exec request'}: exec rejects with the abort's reason and drops the connection`, async () => {
    const node = await startFakeSshServer(silentAt);
    try {
      const session = await openSession({ name: 'n', host: '127.0.0.1', port: node.port, user: 'u', hostKey: node.hostKey }, fakeNodeIdentity(), { readyTimeoutMs: 5000 });
      const controller = new AbortController();
      setTimeout(() => controller.abort(new LimitExceededError('snapshot exceeded its timeout')), 300);
      const started = Date.now();
      await assert.rejects(within(5000, session.exec('sleep 1000', { signal: controller.signal })), (error: unknown) => {
        assert.ok(error instanceof LimitExceededError, String(error));
        return true;
      });
      assert.ok(Date.now() - started < 2000, `rejected ${Date.now() - started} ms after the start, the abort came at 300 ms`);
      assert.deepEqual(node.requests(), silentAt === 'session' ? { sessions: 1, execs: 0 } : { sessions: 1, execs: 1 });
      await node.allClosed(3000);
      // The session is unusable now, and says so instead of hanging again.
      await assert.rejects(within(2000, session.exec('true', { signal: new AbortController().signal })), ConnectionError);
      session.close();
    } finally {
      await node.close();
    }
  });
}

test('exec with a signal already aborted starts nothing on the node', async () => {
  const node = await startFakeSshServer('exec');
  try {
    const session = await openSession({ name: 'n', host: '127.0.0.1', port: node.port, user: 'u', hostKey: node.hostKey }, fakeNodeIdentity(), { readyTimeoutMs: 5000 });
    await assert.rejects(within(3000, session.exec('true', { signal: AbortSignal.abort(new LimitExceededError('too late')) })), /too late/);
    session.close();
    await node.allClosed(3000);
    assert.deepEqual(node.requests(), { sessions: 0, execs: 0 });
  } finally {
    await node.close();
  }
});

// Fails before the fix: close() only sent the disconnect and a FIN, and the socket stayed half-open for as long
// as the node kept its side open ("the node's side saw 0 of 1 connections closed").
test('a node that ignores the disconnect: close() destroys the socket after its grace', async () => {
  const node = await startFakeSshServer('exec');
  // Between BYSU and the fake node: passes bytes both ways, but never passes on or answers an end of stream.
  // Once BYSU has sent its end, it keeps writing a byte now and then: only a socket that BYSU really closed
  // answers that with a reset, which is how this side can tell a closed socket from a half-closed one.
  const clientSides = new Set<net.Socket>();
  const nodeSides = new Set<net.Socket>();
  let clientSidesClosed = 0;
  const proxy = net.createServer({ allowHalfOpen: true }, (socket) => {
    clientSides.add(socket);
    socket.on('close', () => (clientSidesClosed += 1));
    socket.on('error', () => undefined);
    socket.on('end', () => {
      const poke = setInterval(() => (socket.destroyed ? clearInterval(poke) : socket.write('x')), 200);
      socket.on('close', () => clearInterval(poke));
    });
    const upstream = net.connect({ host: '127.0.0.1', port: node.port, allowHalfOpen: true });
    upstream.on('error', () => undefined);
    nodeSides.add(upstream);
    socket.pipe(upstream, { end: false });
    upstream.pipe(socket, { end: false });
  });
  const port = await listen(proxy);
  try {
    const session = await within(8000, openSession({ name: 'n', host: '127.0.0.1', port, user: 'u', hostKey: node.hostKey }, fakeNodeIdentity(), { readyTimeoutMs: 5000 }));
    session.close();
    const deadline = Date.now() + 6000;
    while (clientSidesClosed < clientSides.size && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(clientSidesClosed, 1, `the node's side saw ${clientSidesClosed} of ${clientSides.size} connections closed`);
  } finally {
    for (const socket of [...clientSides, ...nodeSides]) socket.destroy();
    proxy.close();
    await node.close();
  }
});

/** An SSH_MSG_DISCONNECT packet (unencrypted, before key exchange) with the given description. */
function disconnectPacket(description: Buffer): Buffer {
  const u32 = (value: number) => {
    const bytes = Buffer.alloc(4);
    bytes.writeUInt32BE(value);
    return bytes;
  };
  const payload = Buffer.concat([Buffer.from([1]), u32(2), u32(description.length), description, u32(0)]);
  let padding = 8 - ((5 + payload.length) % 8);
  if (padding < 4) padding += 8;
  return Buffer.concat([u32(1 + payload.length + padding), Buffer.from([padding]), payload, Buffer.alloc(padding)]);
}

// Fails before the fix: ssh2 makes the node's DISCONNECT description the error's message, and the session put it
// into the ConnectionError whole and raw (30 KB of escape sequences reached the failure reason, Redis and the log).
test('a node\'s DISCONNECT text is escaped and cut before it becomes a failure reason', async () => {
  const description = Buffer.from('\u001b]0;pwned\u0007\u001b[2J\u001b[31mEVIL\r\n\u009b31m'.repeat(1500).slice(0, 30_000));
  const server = net.createServer((socket) => {
    socket.on('error', () => undefined);
    socket.write('SSH-2.0-OpenSSH_9.6\r\n');
    socket.once('data', () => setTimeout(() => socket.end(disconnectPacket(description)), 50));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const port = (server.address() as net.AddressInfo).port;
    await assert.rejects(within(10_000, openSession({ name: 'evil', host: '127.0.0.1', port, user: 'bysu' }, fakeNodeIdentity(), { readyTimeoutMs: 5000 })), (error: unknown) => {
      assert.ok(error instanceof ConnectionError, String(error));
      assert.ok(Buffer.byteLength(error.message) < 1024, `a reason of ${Buffer.byteLength(error.message)} bytes`);
      assert.doesNotMatch(error.message, /[\u0000-\u001f\u007f-\u009f]/, 'no raw control character');
      assert.match(error.message, /\\u001b\]0;pwned\\u0007/);
      return true;
    });
  } finally {
    server.close();
  }
});
