/**
 * The known_hosts file as openSession reads it, at each connection: what an
 * unknown host's failure says (the file read and the name looked up in it, and
 * how to add the key), a missing file (no entries), and a file that exists but
 * cannot be read (a clear ConfigError, not a raw errno). Against a fake SSH
 * server: the host key check happens before any login.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ConfigError, HostKeyError } from '../../../src/errors.ts';
import { openSession, readKnownHosts } from '../../../src/ssh/session.ts';
import { fakeNodeIdentity, startFakeSshServer, within, type FakeSshServer } from '../../helpers/fake-ssh-server.ts';

let node: FakeSshServer;
let dir: string;
// An entry for another host only: the file is there and readable, but does not know the node.
const OTHER_HOST = 'other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsHl0W7qX3wOS3dXQsYlY0lxMvqWn0L0b+Xn4kQk2Tb\n';

before(async () => {
  node = await startFakeSshServer('auth');
  dir = mkdtempSync(path.join(os.tmpdir(), 'bysu-known-hosts-'));
});

after(async () => {
  await node.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Given a known_hosts path, try to log in to the fake node (no pin) and return what openSession threw. */
async function failureWith(knownHostsFile: string): Promise<Error> {
  const target = { name: 'db1', host: '127.0.0.1', port: node.port, user: 'root' };
  const identity = { ...fakeNodeIdentity(), knownHostsFile };
  const error = await within(8000, openSession(target, identity, { readyTimeoutMs: 3000 })).then(() => null, (thrown: Error) => thrown);
  assert.ok(error !== null, 'openSession must not log in to a node whose key is unknown');
  return error;
}

// Fails before the fix: the message read "is unknown: [127.0.0.1]:<port> is not in <file> … then pin it (bysu keyscan …)".
test('an unknown host: the failure names the [host]:port looked up, the file read, and how to add the key', async () => {
  const file = path.join(dir, 'known_hosts');
  writeFileSync(file, OTHER_HOST);
  const error = await failureWith(file);
  assert.ok(error instanceof HostKeyError, String(error));
  assert.equal(
    error.message,
    `host key of node "db1" (root@127.0.0.1:${node.port}) is unknown: no known_hosts entry for [127.0.0.1]:${node.port} in ${file} ` +
      `and no hostKey is pinned; it offered ssh-ed25519 ${node.hostKey}. Check it out of band, then add the line that ` +
      `\`bysu keyscan 127.0.0.1 --port ${node.port}\` prints to ${file} (read at each connection: no restart or reload needed), ` +
      `or pin its fingerprint as the node's hostKey`,
  );
});

test('a missing known_hosts file has no entries, and the failure says the file does not exist', async () => {
  const file = path.join(dir, 'absent', 'known_hosts');
  assert.deepEqual(readKnownHosts(file), { entries: [], missing: true });
  const error = await failureWith(file);
  assert.ok(error instanceof HostKeyError, String(error));
  assert.ok(error.message.includes(`no known_hosts entry for [127.0.0.1]:${node.port} in ${file} (the file does not exist)`), error.message);
});

// Fails before the fix: readIdentity threw a raw "EISDIR: illegal operation on a directory, read" at start, and never again.
test('a known_hosts path that cannot be read is a ConfigError naming the file and the errno', async () => {
  const file = path.join(dir, 'a-directory');
  mkdirSync(file);
  const error = await failureWith(file);
  assert.ok(error instanceof ConfigError, String(error));
  assert.match(error.message, new RegExp(`^ssh\\.knownHosts: cannot read ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} \\(EISDIR\\): BYSU checks host keys against it at each connection`));
});

test('a known_hosts file without read permission is a ConfigError naming EACCES', { skip: process.getuid?.() === 0 ? 'root reads a file whatever its mode: EACCES cannot be provoked' : false }, () => {
  const file = path.join(dir, 'unreadable');
  writeFileSync(file, OTHER_HOST);
  chmodSync(file, 0o000);
  assert.throws(() => readKnownHosts(file), (error: unknown) => error instanceof ConfigError && /cannot read .* \(EACCES\)/.test(error.message));
});
