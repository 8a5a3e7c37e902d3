/**
 * An attack on `--wait` (issue 13): a job taken off its queue by hand (its id
 * removed from the wait list, its hash left behind: BullMQ then reports its
 * state as 'unknown') must end the wait, as `snapshot --wait` does ("job …
 * disappeared from the queue"); `drill --wait` kept re-reading it every
 * RECHECK_MS for ever.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { DRILL_QUEUE, SNAPSHOT_QUEUE } from '../../src/queue/jobs.ts';
import { RECHECK_MS } from '../../src/queue/job-watch.ts';
import { withCluster } from '../helpers/cluster.ts';
import { waitUntil } from '../helpers/processes.ts';

test('a job taken off the wait list by hand ends snapshot --wait and drill --wait alike', async () => {
  await withCluster(['db1', 'staging1'], async (cluster) => {
    await cluster.writeConfig([{
      name: 'shop',
      node: 'db1',
      attempts: 1,
      parts: [{ file: 'shop.txt', run: 'echo shop' }],
      drill: { node: 'staging1', steps: [{ run: 'cat', stdin: 'shop.txt', expect: '^shop$' }] },
    }]);
    const redis = new Redis(cluster.redis.url, { maxRetriesPerRequest: null });
    try {
      for (const [command, queue] of [['snapshot', SNAPSHOT_QUEUE], ['drill', DRILL_QUEUE]] as const) {
        // No worker runs: the job waits.
        const waiting = cluster.bysu([command, 'shop', '--wait'], { timeoutMs: RECHECK_MS * 3 });
        const wait = `${cluster.prefix}:${queue}:wait`;
        const [jobId] = await waitUntil(`a ${queue} job waiting`, async () => {
          const ids = await redis.lrange(wait, 0, -1);
          return ids.length > 0 && String(await redis.client('LIST')).includes('cmd=xread') ? ids : null;
        }, 60_000);
        await redis.lrem(wait, 0, jobId!); // taken off the queue by hand; its hash stays
        const result = await waiting;
        assert.notEqual(result.code, null, `${command} --wait still waiting ${RECHECK_MS * 3} ms after its job left the queue:\n${result.stdout}${result.stderr}`);
        assert.equal(result.code, 1, result.stdout + result.stderr);
      }
    } finally {
      redis.disconnect();
    }
  });
});
