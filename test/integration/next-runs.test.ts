/**
 * `bysu status` reads the apps' next runs from BullMQ's sorted set of job
 * schedulers itself (one ZRANGE, and BullMQ not loaded), not through
 * `queue.getJobSchedulers()`. This holds the two equal on a real Redis, so
 * that a BullMQ that moved its keys fails here and not in an operator's
 * status.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { drillSchedulerId, SNAPSHOT_QUEUE, SNAPSHOT_SCHEDULER_PREFIX, snapshotSchedulerId } from '../../src/queue/jobs.ts';
import { openQueue } from '../../src/queue/open-queue.ts';
import { readNextRuns } from '../../src/status/app-status.ts';
import { withRedis } from '../helpers/redis.ts';

test("status's own read of the next runs equals BullMQ's job schedulers", async () => {
  await withRedis(async (redis) => {
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    const queue = openQueue(SNAPSHOT_QUEUE, connection, 'bysu-next');
    try {
      const template = { name: 'snapshot', data: {} as never };
      await queue.upsertJobScheduler(snapshotSchedulerId('shop'), { pattern: '0 3 * * *', tz: 'UTC' }, template);
      await queue.upsertJobScheduler(snapshotSchedulerId('blog'), { pattern: '*/5 * * * *', tz: 'Europe/Berlin' }, template);
      await queue.upsertJobScheduler(drillSchedulerId('shop'), { pattern: '0 5 * * 0', tz: 'UTC' }, template); // not an app's snapshot
      const expected = new Map((await queue.getJobSchedulers(0, -1))
        .filter((scheduler) => scheduler.key.startsWith(SNAPSHOT_SCHEDULER_PREFIX))
        .map((scheduler) => [scheduler.key.slice(SNAPSHOT_SCHEDULER_PREFIX.length), scheduler.next]));
      assert.equal(expected.size, 2);
      assert.deepEqual(await readNextRuns(connection, 'bysu-next'), expected);
      // Another prefix sees none of them.
      assert.deepEqual(await readNextRuns(connection, 'other'), new Map());
      await queue.removeJobScheduler(snapshotSchedulerId('blog'));
      assert.deepEqual([...(await readNextRuns(connection, 'bysu-next')).keys()], ['shop']);
    } finally {
      await queue.close();
      connection.disconnect();
    }
  });
});
