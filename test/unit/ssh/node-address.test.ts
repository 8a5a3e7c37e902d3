import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nodeAddressOf } from '../../../src/ssh/node-address.ts';

test('a node address keeps name, host, port, user and a pinned hostKey, and nothing else', () => {
  const node = { name: 'db', host: '10.0.0.5', port: 2222, user: 'bysu', hostKey: 'SHA256:abc', extra: 'dropped' };
  assert.deepEqual(nodeAddressOf(node), { name: 'db', host: '10.0.0.5', port: 2222, user: 'bysu', hostKey: 'SHA256:abc' });
});

test('a node address has no hostKey key when none is pinned, so the job payload carries none', () => {
  assert.deepEqual(Object.keys(nodeAddressOf({ name: 'db', host: 'h', port: 22, user: 'u' })), ['name', 'host', 'port', 'user']);
  assert.equal('hostKey' in nodeAddressOf({ name: 'db', host: 'h', port: 22, user: 'u', hostKey: '' }), false);
});
