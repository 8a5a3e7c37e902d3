import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isRetryable, RemoteCommandError } from '../../src/errors.ts';

test('a command the node refused (126) or cannot find (127) is not retried; other failures are', () => {
  assert.equal(isRetryable(new RemoteCommandError('refused', { exitCode: 126 })), false);
  assert.equal(isRetryable(new RemoteCommandError('not found', { exitCode: 127 })), false);
  assert.equal(isRetryable(new RemoteCommandError('failed', { exitCode: 1 })), true);
  assert.equal(isRetryable(new RemoteCommandError('killed')), true);
  assert.equal(new RemoteCommandError('refused', { exitCode: 126 }).exitCode, 126);
});
