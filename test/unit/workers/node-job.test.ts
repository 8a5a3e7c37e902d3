/**
 * What a failed job hands to BullMQ is bounded and printable, whatever the
 * node or an ssh2 peer put into the error's message.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConnectionError, HostKeyError } from '../../../src/errors.ts';
import { jobFailure, MAX_FAILURE_REASON_BYTES } from '../../../src/workers/node-job.ts';

test('a huge reason with escape codes is cut and escaped; line breaks stay', () => {
  const hostile = `connection lost: \u001b]0;pwned\u0007\u001b[2J\n${'x'.repeat(1_000_000)}`;
  const failure = jobFailure(new ConnectionError(hostile), false);
  assert.ok(failure instanceof ConnectionError, 'a retryable error stays retryable');
  assert.ok(Buffer.byteLength(failure.message) <= MAX_FAILURE_REASON_BYTES, `message of ${Buffer.byteLength(failure.message)} bytes`);
  assert.ok(!/[\u0000-\u0009\u000b-\u001f]/.test(failure.message), 'no raw control character but the line break');
  assert.match(failure.message, /^connection lost: \\u001b\]0;pwned\\u0007\\u001b\[2J\nxxx/);
  assert.match(failure.message, /… \(\d+ bytes\)$/);
  assert.ok(Buffer.byteLength(failure.stack ?? '') < MAX_FAILURE_REASON_BYTES + 2048, 'the stack trace is bounded too');
});

test('an error a retry cannot help, or a final one, becomes UnrecoverableError with the bounded reason', () => {
  const refused = jobFailure(new HostKeyError(`bad key ${'y'.repeat(20_000)}`), false);
  assert.equal(refused.name, 'UnrecoverableError');
  assert.ok(Buffer.byteLength(refused.message) <= MAX_FAILURE_REASON_BYTES);
  const cancelled = jobFailure(new ConnectionError('cancelled'), true);
  assert.equal(cancelled.name, 'UnrecoverableError');
  assert.equal(cancelled.message, 'cancelled');
});

test('a short, clean reason is handed over as it is', () => {
  const error = new ConnectionError('node db1 refused the connection');
  assert.equal(jobFailure(error, false), error);
  assert.equal(error.message, 'node db1 refused the connection');
});
