/** What `--wait` prints while it waits: pure functions of what it read. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { colourFor, describeRunning, describeWaiting, formatClock, formatRate, waitingOf } from '../../../src/cli/progress.ts';

const MiB = 1024 * 1024;

describe('describeRunning', () => {
  const base = { app: 'shop', part: 'shop.sql', partIndex: 1, parts: 2, startedAt: 0 };
  test('elapsed time, rate and what is left from the previous snapshot\'s size', () => {
    assert.equal(describeRunning({ ...base, bytes: 20 * MiB, now: 4000, previousBytes: 100 * MiB }),
      'shop: part 1/2 shop.sql, 20.0 MiB in 0:04 (5.0 MiB/s), about 0:16 left of 100.0 MiB last time');
  });
  test('past the previous size, it says so instead of a negative estimate', () => {
    assert.equal(describeRunning({ ...base, bytes: 120 * MiB, now: 10_000, previousBytes: 100 * MiB }),
      'shop: part 1/2 shop.sql, 120.0 MiB in 0:10 (12.0 MiB/s), past the 100.0 MiB of last time');
  });
  test('no previous snapshot, or no time yet: no estimate, no rate', () => {
    assert.equal(describeRunning({ ...base, bytes: 5, now: 50, previousBytes: null }), 'shop: part 1/2 shop.sql, 5 B in 0:00');
    assert.equal(describeRunning({ ...base, bytes: 0, now: 50, previousBytes: 10 }), 'shop: part 1/2 shop.sql, 0 B in 0:00');
  });
});

test('formatClock and formatRate', () => {
  assert.deepEqual([formatClock(0), formatClock(7_400), formatClock(723_000), formatClock(3_723_000)], ['0:00', '0:07', '12:03', '1:02:03']);
  assert.equal(formatRate(MiB, 500), '2.0 MiB/s');
  assert.equal(formatRate(MiB, 50), null);
});

test('a delayed job\'s reason, read from its progress', () => {
  const waiting = waitingOf({ waitingFor: 'node db1: 1 of 1 slot(s) in use', until: 12_000 });
  assert.deepEqual(waiting, { waitingFor: 'node db1: 1 of 1 slot(s) in use', until: 12_000 });
  assert.equal(describeWaiting('shop', waiting!, 5000), 'shop: waiting for node db1: 1 of 1 slot(s) in use; next try in 7s');
  assert.equal(waitingOf({ part: 'x.sql', bytes: 3 }), null);
  assert.equal(waitingOf(42), null);
});

test('colour only on a terminal, and never under NO_COLOR or TERM=dumb', () => {
  assert.equal(colourFor({ isTTY: true }, {})('red', 'FAILED'), '\u001b[31mFAILED\u001b[39m');
  assert.equal(colourFor({ isTTY: true }, { NO_COLOR: '1' })('red', 'FAILED'), 'FAILED');
  assert.equal(colourFor({ isTTY: true }, { TERM: 'dumb' })('red', 'FAILED'), 'FAILED');
  assert.equal(colourFor({ isTTY: false }, {})('red', 'FAILED'), 'FAILED');
  assert.equal(colourFor({}, {})('green', 'ok'), 'ok');
});
