/**
 * The app lock on a real redis-server: a holder can confirm, right before an
 * irreversible step, that it still holds the lock (which extends the lease),
 * and learns that it lost it when the lease ran out (a pause) and another
 * process took it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { CommitConflictError } from '../../src/errors.ts';
import { withAppLock } from '../../src/queue/app-lock.ts';
import { redisKeys } from '../../src/queue/jobs.ts';
import { withRedis } from '../helpers/redis.ts';

// Fails before the fix: the function under the lock was given no lease to confirm (TypeError on lease.confirm).
test('a holder confirms the app lock (extending it) and is refused once another process took it', async () => {
  await withRedis(async (server) => {
    const redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
    try {
      const key = redisKeys.appLock('t', 'shop');
      await withAppLock(redis, 't', 'shop', async (lease) => {
        await redis.pexpire(key, 500);
        await lease.confirm();
        assert.ok(await redis.pttl(key) > 10_000, 'confirm extended the lease');
        // As after a pause past the lease: it expired and another process holds the lock now.
        await redis.set(key, 'another-holder', 'PX', 60_000);
        await assert.rejects(lease.confirm(), (error: Error) => error instanceof CommitConflictError && /lost the lock of app shop/.test(error.message));
        assert.equal(await redis.get(key), 'another-holder', 'confirm did not touch the other holder\'s lock');
      }, { leaseMs: 30_000 });
      assert.equal(await redis.get(key), 'another-holder', 'release left the other holder\'s lock alone');
    } finally {
      redis.disconnect();
    }
  });
});
