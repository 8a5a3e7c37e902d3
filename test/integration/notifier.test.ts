/**
 * The webhook's once-per-change rule against a real Redis and a local HTTP
 * receiver: one alert per change of state, none for a repeat, recovery only
 * after trouble, and an alert that could not be delivered is sent again on
 * the next report instead of being lost.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { Notifier } from '../../src/notify/notifier.ts';
import { withRedis } from '../helpers/redis.ts';

test('alerts once per change of state, and again after a failed delivery', async () => {
  const received: { path: string; body: { event: string; app: string } }[] = [];
  let failing = false;
  const server = http.createServer((request, response) => {
    let text = '';
    request.on('data', (chunk: Buffer) => (text += chunk.toString()));
    request.on('end', () => {
      if (failing) {
        response.writeHead(503).end();
        return;
      }
      received.push({ path: request.url ?? '', body: text ? JSON.parse(text) : null });
      response.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    await withRedis(async (redis) => {
      const connection = new Redis(redis.url);
      const logger = pino({ level: 'silent' });
      const notifier = new Notifier(connection, 'n', { webhook: `${url}/hook`, timeoutMs: 2000, retryDelaysMs: [50, 50] }, logger);
      const event = (kind: 'failed' | 'stale' | 'recovered') => ({ event: kind, app: 'shop', at: new Date().toISOString() });
      try {
        assert.equal(await notifier.report(event('recovered')), false, 'no recovery without trouble before');
        assert.equal(await notifier.report(event('failed')), true);
        assert.equal(await notifier.report(event('failed')), false, 'the same state again: no alert');
        await notifier.flush();
        assert.deepEqual(received.map((request) => request.body.event), ['failed']);

        assert.equal(await notifier.report(event('recovered')), true);
        await notifier.flush();
        assert.deepEqual(received.map((request) => request.body.event), ['failed', 'recovered']);

        // The receiver is down: the stale alert cannot be delivered, so it is not counted as sent.
        failing = true;
        assert.equal(await notifier.report(event('stale')), true);
        await notifier.flush();
        failing = false;
        assert.equal(await notifier.report(event('stale')), true, 'sent again: the first one never arrived');
        await notifier.flush();
        assert.deepEqual(received.map((request) => request.body.event), ['failed', 'recovered', 'stale']);

        notifier.ping('shop', `${url}/ping/abc?src=bysu`, false);
        notifier.ping('shop', `${url}/ping/abc`, true);
        await notifier.flush();
        assert.deepEqual(received.slice(3).map((request) => request.path).sort(), ['/ping/abc', '/ping/abc/fail?src=bysu']);
      } finally {
        connection.disconnect();
      }
    });
  } finally {
    server.close();
  }
});
