/**
 * The one Redis logger of a process (src/queue/redis-health.ts) against a
 * real redis-server that goes away and comes back: the loss once, then one
 * line per interval with the count it suppressed, then "reachable again"
 * once; the URL's password never appears. The interval is an option, so this
 * runs in seconds where production uses a minute.
 *
 * Fails before the fix: there was no such logger; each client, queue and
 * worker logged every failed reconnect (65 to 238 lines in 20 s, see
 * test/faults/redis-down.test.ts).
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { createWorkerConnection } from '../../src/queue/connection.ts';
import { isConnectionError, RedisHealth } from '../../src/queue/redis-health.ts';
import { freePort, waitUntil } from '../helpers/processes.ts';
import { withRedis } from '../helpers/redis.ts';

/** A real pino logger whose lines are kept for the test to read. */
function capturingLogger(): { logger: pino.Logger; messages: () => string[]; lines: () => Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), messages: () => lines.map((line) => String(line.msg)), lines: () => lines };
}

test('an outage is one line, then one per interval with a count, then one when Redis is back', async () => {
  await withRedis(async (redis) => {
    const { logger, messages, lines } = capturingLogger();
    const health = new RedisHealth(logger, redis.url, { intervalMs: 1000 });
    const client = createWorkerConnection(redis.url);
    health.watch(client, 'test connection');
    try {
      await waitUntil('the client is ready', async () => client.status === 'ready');
      await redis.stop();
      await new Promise((resolve) => setTimeout(resolve, 4500));
      const during = messages();
      assert.match(during[0] ?? '', /^redis unreachable at redis:\/\/127\.0\.0\.1:\d+\/0: .*ECONNREFUSED/);
      const summaries = during.filter((message) => message.startsWith('redis still unreachable; '));
      assert.ok(summaries.length >= 1 && summaries.length <= 5, `one summary per second at most, got: ${during.join(' | ')}`);
      assert.equal(during.length, 1 + summaries.length, `nothing else is logged: ${during.join(' | ')}`);
      for (const summary of summaries) assert.match(summary, /^redis still unreachable; [1-9]\d* errors suppressed$/);
      assert.ok(health.unreachable);

      await redis.start();
      await waitUntil('"reachable again"', async () => messages().some((message) => message.startsWith('redis reachable again after ')), 20_000);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      assert.equal(messages().filter((message) => message.startsWith('redis reachable again after ')).length, 1);
      assert.equal(health.unreachable, false);
      const back = lines().find((line) => String(line.msg).startsWith('redis reachable again'))!;
      assert.ok(Number(back.downMs) >= 4000, `downMs ${String(back.downMs)}`);
    } finally {
      client.disconnect();
    }
  });
});

test('the password of the Redis URL never reaches the log', async () => {
  const port = await freePort(); // nothing listens there
  const url = `redis://:hunter2secret@127.0.0.1:${port}/0`;
  const { logger, lines } = capturingLogger();
  const health = new RedisHealth(logger, url);
  const client = createWorkerConnection(url);
  health.watch(client, 'test connection');
  try {
    await waitUntil('the loss to be logged', async () => lines().length > 0, 10_000);
    const text = JSON.stringify(lines());
    assert.doesNotMatch(text, /hunter2secret/);
    assert.match(String(lines()[0]!.msg), new RegExp(`^redis unreachable at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${port}/0: connect ECONNREFUSED`));
  } finally {
    client.disconnect();
  }
});

test('an error that is not a lost connection is logged, and its repeats counted, once per interval', () => {
  const { logger, messages, lines } = capturingLogger();
  const health = new RedisHealth(logger, 'redis://127.0.0.1:1/0', { intervalMs: 60_000 });
  for (let i = 0; i < 5; i += 1) health.error(new Error('NOSCRIPT No matching script'), 'snapshot queue');
  health.error(new Error('READONLY You can\'t write against a read only replica.'), 'snapshot queue');
  assert.deepEqual(messages(), ['snapshot queue error: NOSCRIPT No matching script', 'snapshot queue error: READONLY You can\'t write against a read only replica.']);
  assert.equal(health.unreachable, false, 'a refused command is not a lost connection');
  assert.equal(lines()[0]!.level, 50);
  assert.throws(() => new RedisHealth(logger, 'redis://x', { intervalMs: 0 }), /intervalMs must be greater than 0, got 0/);
});

test('which errors mean the connection is lost', () => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6390'), { code: 'ECONNREFUSED' });
  for (const error of [refused, new Error('Connection is closed.'), Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), new Error('Reached the max retries per request limit (which is 1). Refer to "maxRetriesPerRequest" option for details.')]) {
    assert.ok(isConnectionError(error), error.message);
  }
  for (const error of [new Error('NOSCRIPT No matching script'), new Error('WRONGPASS invalid username-password pair'), new Error('Missing lock for job 12. moveToFinished')]) {
    assert.equal(isConnectionError(error), false, error.message);
  }
});
