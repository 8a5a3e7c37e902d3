/**
 * The dashboard's shared computation: concurrent callers share one run, a
 * result is kept for maxAgeMs and then computed again, another key (a
 * reloaded config) never gets the old key's result and waits for the running
 * one instead of running beside it, a failure is not kept. And the bound of
 * /metrics taken from a scraper's timeout header. The clock is a variable.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { METRICS_BOUND_MS, metricsBoundMs } from '../../../src/dashboard/metrics.ts';
import { SharedComputation } from '../../../src/dashboard/shared-computation.ts';

/** A computation whose runs the test finishes by hand, counting them and how many ran at once. */
function handRun() {
  const pending: { key: object; finish: (value: string) => void; fail: (error: Error) => void }[] = [];
  let clock = 1_000_000;
  let active = 0;
  const counts = { started: 0, mostAtOnce: 0 };
  const shared = new SharedComputation<object, string>(
    (key) => {
      counts.started += 1;
      active += 1;
      counts.mostAtOnce = Math.max(counts.mostAtOnce, active);
      return new Promise((resolve, reject) => pending.push({
        key,
        finish: (value) => {
          active -= 1;
          resolve({ value, at: clock });
        },
        fail: (error) => {
          active -= 1;
          reject(error);
        },
      }));
    },
    { maxAgeMs: 5000, now: () => clock },
  );
  /** Let the chained promises run. */
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  return { shared, pending, counts, settle, advance: (ms: number) => (clock += ms) };
}

describe('SharedComputation', () => {
  test('callers that arrive together share one computation; the result is kept for maxAgeMs, then computed again', async () => {
    const { shared, pending, counts, settle, advance } = handRun();
    const config = {};
    const callers = Array.from({ length: 10 }, () => shared.get(config));
    await settle();
    assert.equal(counts.started, 1);
    pending.shift()!.finish('first');
    assert.deepEqual((await Promise.all(callers)).map((result) => result.value), Array(10).fill('first'));
    advance(4999);
    assert.equal((await shared.get(config)).value, 'first', 'kept');
    assert.equal(counts.started, 1);
    advance(1);
    const again = shared.get(config);
    await settle();
    assert.equal(counts.started, 2, 'computed again once maxAgeMs has passed');
    pending.shift()!.finish('second');
    assert.equal((await again).value, 'second');
  });

  test('a new key is never served the old key\'s result, and its computation waits for the running one', async () => {
    const { shared, pending, counts, settle } = handRun();
    const before = {};
    const reloaded = {};
    const old = shared.get(before);
    const fresh = shared.get(reloaded);
    await settle();
    assert.equal(counts.started, 1, 'the reloaded key waits for the running computation');
    pending.shift()!.finish('old config');
    await settle();
    assert.equal(counts.started, 2);
    assert.equal(pending[0]!.key, reloaded);
    pending.shift()!.finish('new config');
    assert.equal((await old).value, 'old config');
    assert.equal((await fresh).value, 'new config');
    assert.equal(counts.mostAtOnce, 1, 'never two at once');
    assert.equal(shared.latest((key) => key === before), null, 'only the newest result is kept');
    assert.equal(shared.latest((key) => key === reloaded)?.value, 'new config');
  });

  test('a failed computation rejects its callers and is not kept; the last good result stays available', async () => {
    const { shared, pending, settle, advance } = handRun();
    const config = {};
    const first = shared.get(config);
    await settle();
    pending.shift()!.finish('good');
    await first;
    advance(6000);
    const failing = shared.get(config);
    await settle();
    pending.shift()!.fail(new Error('redis went away'));
    await assert.rejects(failing, /redis went away/);
    assert.equal(shared.latest((key) => key === config)?.value, 'good');
    const retried = shared.get(config);
    await settle();
    assert.equal(pending.length, 1, 'the next caller computes again');
    pending.shift()!.finish('good again');
    assert.equal((await retried).value, 'good again');
  });
});

describe('metricsBoundMs', () => {
  test('our own bound, or the scraper\'s timeout less a margin when shorter', () => {
    assert.equal(metricsBoundMs(undefined), METRICS_BOUND_MS);
    assert.equal(metricsBoundMs('10'), METRICS_BOUND_MS);
    assert.equal(metricsBoundMs('3'), 2500);
    assert.equal(metricsBoundMs('0.1'), 250, 'never below 250 ms');
    for (const nonsense of ['', 'abc', '-1', '0', 'Infinity']) assert.equal(metricsBoundMs(nonsense), METRICS_BOUND_MS, nonsense);
  });
});
