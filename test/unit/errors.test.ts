import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AbortedError, CancelledError, isRetryable, RemoteCommandError, WorkerShutdownError } from '../../src/errors.ts';

test('a command the node refused (126) or cannot find (127) is not retried; other failures are', () => {
  assert.equal(isRetryable(new RemoteCommandError('refused', { exitCode: 126 })), false);
  assert.equal(isRetryable(new RemoteCommandError('not found', { exitCode: 127 })), false);
  assert.equal(isRetryable(new RemoteCommandError('failed', { exitCode: 1 })), true);
  assert.equal(isRetryable(new RemoteCommandError('killed')), true);
  assert.equal(new RemoteCommandError('refused', { exitCode: 126 }).exitCode, 126);
});

// Fails before: neither class was in src/errors.ts (the workers declared their own, and a cancelled job was
// made final by the worker passing `final`, not by the error saying a retry cannot help).
test('a job cancelled is not retried; a job cut short by shutdown is, and both are aborts', () => {
  const cancelled = new CancelledError('job cancelled: by hand');
  const shutdown = new WorkerShutdownError('worker is shutting down');
  assert.equal(isRetryable(cancelled), false);
  assert.equal(isRetryable(shutdown), true);
  assert.equal(isRetryable(new AbortedError('timeout')), true);
  assert.ok(cancelled instanceof AbortedError && shutdown instanceof AbortedError);
  assert.equal(cancelled.name, 'CancelledError');
  assert.equal(shutdown.name, 'WorkerShutdownError');
});
