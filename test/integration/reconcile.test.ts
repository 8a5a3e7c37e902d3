/**
 * Reconciling job schedulers against a real Redis: unchanged apps are left
 * alone (upserting would drop a run that is due but not started), a changed
 * schedule or payload is applied, a removed app loses its scheduler, and the
 * first time BYSU saw each app, and each app's drill as configured, is recorded.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { parseConfig } from '../../src/config/load.ts';
import { redisKeys, RETENTION_QUEUE, SNAPSHOT_QUEUE, type RetentionJobData, type SnapshotJobData } from '../../src/queue/jobs.ts';
import { reconcileSchedulers, recordDrillSince } from '../../src/scheduler/scheduler.ts';
import { withRedis } from '../helpers/redis.ts';

function config(url: string, apps: string) {
  return parseConfig(`
redis: { url: "${url}", prefix: rc }
repository: /tmp/bysu-reconcile-test
nodes: [{ name: db1, host: 127.0.0.1 }]
apps:
${apps}`, 'test.yaml', {});
}

test('reconcile leaves unchanged schedulers alone, applies changes, removes what left', async () => {
  await withRedis(async (redis) => {
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    const snapshots = new Queue<SnapshotJobData>(SNAPSHOT_QUEUE, { connection, prefix: 'rc' });
    const retention = new Queue<RetentionJobData>(RETENTION_QUEUE, { connection, prefix: 'rc' });
    try {
      const first = config(redis.url, `
  - { name: shop, node: db1, schedule: "* * * * * *", parts: [{ file: a.sql, run: "echo a" }] }
  - { name: wiki, node: db1, schedule: "0 3 * * *", parts: [{ file: w.sql, run: "echo w" }] }`);
      const created = await reconcileSchedulers({ snapshot: snapshots, retention }, first, connection);
      assert.deepEqual(created.upserted.sort(), ['app-shop', 'app-wiki']);
      assert.deepEqual(Object.keys(await connection.hgetall(redisKeys.appFirstSeen('rc'))).sort(), ['shop', 'wiki']);

      // No worker runs: shop's every-second job becomes due and is not taken.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const due = (await snapshots.getJobs(['delayed', 'waiting'])).filter((job) => job.data.app === 'shop' && job.timestamp + (job.delay ?? 0) <= Date.now());
      assert.equal(due.length, 1, 'one due run of shop');
      const waiting = due.map((job) => job.id);
      const again = await reconcileSchedulers({ snapshot: snapshots, retention }, first, connection);
      assert.deepEqual(again.upserted, [], 'nothing changed, nothing upserted');
      assert.deepEqual(again.unchanged.sort(), ['app-shop', 'app-wiki']);
      assert.ok((await snapshots.getJobs(['delayed', 'waiting'])).some((job) => job.id === waiting[0]), 'the due run survives a restart of the scheduler');

      const changed = config(redis.url, `
  - { name: shop, node: db1, schedule: "* * * * * *", parts: [{ file: a.sql, run: "echo changed" }] }`);
      const applied = await reconcileSchedulers({ snapshot: snapshots, retention }, changed, connection);
      assert.deepEqual(applied.upserted, ['app-shop'], 'a changed command reaches the template');
      assert.deepEqual(applied.removed, ['app-wiki']);
      const scheduler = await snapshots.getJobScheduler('app-shop');
      assert.equal(scheduler?.template?.data?.parts[0]?.run, 'echo changed');
      const sweep = await retention.getJobScheduler('retention-sweep');
      assert.deepEqual(sweep?.template?.data?.targets.map((target) => target.app), ['shop']);
    } finally {
      await snapshots.close();
      await retention.close();
      connection.disconnect();
    }
  });
});

test('the time a drill was first seen stays while its schedule does, restarts when it changes, and goes with the drill', async () => {
  await withRedis(async (redis) => {
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    try {
      const app = (drill: string) => `
  - { name: shop, node: db1, parts: [{ file: a.sql, run: "echo a" }]${drill} }
  - { name: wiki, node: db1, parts: [{ file: w.sql, run: "echo w" }] }`;
      const weekly = ', drill: { node: db1, schedule: "0 6 * * 0", steps: [{ run: "cat", stdin: a.sql }] }';
      const daily = ', drill: { node: db1, schedule: "0 6 * * *", steps: [{ run: "cat", stdin: a.sql }] }';
      const since = async () => (JSON.parse((await connection.hget(redisKeys.drillSince('rc'), 'shop')) ?? 'null') as { since: string; schedule: string } | null);
      const t = (day: number) => new Date(Date.UTC(2026, 10, day));

      await recordDrillSince(connection, config(redis.url, app(weekly)), t(1));
      assert.deepEqual(await since(), { since: t(1).toISOString(), schedule: '0 6 * * 0', timezone: 'UTC' });
      assert.deepEqual(await connection.hkeys(redisKeys.drillSince('rc')), ['shop'], 'wiki has no drill: no record');
      await recordDrillSince(connection, config(redis.url, app(weekly)), t(5));
      assert.equal((await since())?.since, t(1).toISOString(), 'a reload with the same drill keeps the time');
      await recordDrillSince(connection, config(redis.url, app(daily)), t(6));
      assert.deepEqual(await since(), { since: t(6).toISOString(), schedule: '0 6 * * *', timezone: 'UTC' }, 'a new schedule starts the clock again');
      await recordDrillSince(connection, config(redis.url, app('')), t(7));
      assert.equal(await since(), null, 'the drill removed: its record goes');
      await connection.hset(redisKeys.drillSince('rc'), 'shop', 'not json');
      await recordDrillSince(connection, config(redis.url, app(daily)), t(8));
      assert.equal((await since())?.since, t(8).toISOString(), 'a malformed record is replaced');
    } finally {
      connection.disconnect();
    }
  });
});
