/**
 * Attack on "Jobs keep no JavaScript stack trace, only their reason" (README
 * "Dashboard, metrics and API"; stackTraceLimit 0 in src/queue/enqueue.ts),
 * on the paths bounded-output.test.ts does not take: an attempt that failed
 * and is retried (read while the job waits for its retry), a final failure
 * after retries, a job failed by a configuration problem (a node whose pinned
 * host key is wrong), a job whose workers were killed until it stalled out,
 * and a job made by the job scheduler (its options come from the scheduler's
 * template, not from queue.add). Real redis-server, sshd node, workers and
 * scheduler; every job hash of the snapshot queue is read from Redis.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { SNAPSHOT_QUEUE } from '../../src/queue/jobs.ts';
import { waitForLog, withCluster, withSnapshotQueue } from '../helpers/cluster.ts';
import { stopProcess, waitUntil } from '../helpers/processes.ts';

/** Every job hash of the snapshot queue with its stack trace and reason. */
async function storedJobs(url: string, prefix: string): Promise<{ key: string; stacktrace: string | undefined; failedReason: string | undefined }[]> {
  const redis = new Redis(url, { maxRetriesPerRequest: null });
  try {
    const found = [];
    for (const key of await redis.keys(`${prefix}:${SNAPSHOT_QUEUE}:*`)) {
      if ((await redis.type(key)) !== 'hash') continue;
      const hash = await redis.hgetall(key);
      if (!('data' in hash)) continue;
      found.push({ key, stacktrace: hash.stacktrace, failedReason: hash.failedReason });
    }
    return found;
  } finally {
    redis.disconnect();
  }
}

test('no stack trace is kept by a retried attempt, a final failure, a config problem, a stalled-out job or a scheduled job', async () => {
  await withCluster(['db1'], async (cluster) => {
    const [db1] = cluster.nodes;
    const fail = { file: 'x.sql', run: 'echo "dump failed" >&2; exit 1' };
    await cluster.writeConfig([
      { name: 'retried', node: 'db1', attempts: 2, backoff: '20s', parts: [fail] },
      { name: 'wrongkey', node: 'pinned', attempts: 1, parts: [{ file: 'w.sql', run: 'echo w' }] },
      { name: 'stalled', node: 'db1', attempts: 1, parts: [{ file: 's.sql', run: 'sleep 120' }] },
      { name: 'scheduled', node: 'db1', attempts: 1, schedule: '*/3 * * * * *', parts: [fail] },
    ], {
      nodes: [
        { name: 'db1', host: db1!.host, port: db1!.port },
        { name: 'pinned', host: db1!.host, port: db1!.port, hostKey: `SHA256:${'A'.repeat(43)}` },
      ],
      concurrency: { global: 8, perNode: 8, perWorker: 8, lockDuration: '3s', stalledInterval: '1s', busyNodeDelay: '300ms' },
    });
    let worker = cluster.startWorker();
    await waitForLog(worker, 'worker started');

    // A retried attempt, read while its job waits 20 s for the retry.
    assert.equal((await cluster.bysu(['snapshot', 'retried'])).code, 0);
    await withSnapshotQueue(cluster, (queue) => waitUntil('the first attempt to fail', async () => (await queue.getDelayed()).some((job) => job.data.app === 'retried' && job.attemptsMade === 1), 60_000));
    const afterRetry = (await storedJobs(cluster.redis.url, cluster.prefix)).filter((job) => job.key.includes('manual-retried'));

    assert.equal((await cluster.bysu(['snapshot', 'wrongkey', '--wait'])).code, 1);

    // Killed three times while running it: the fourth worker fails it as stalled out.
    assert.equal((await cluster.bysu(['snapshot', 'stalled'])).code, 0);
    await withSnapshotQueue(cluster, async (queue) => {
      for (let kill = 0; kill < 3; kill += 1) {
        await waitUntil(`the stalled app running (kill ${kill + 1})`, async () => (await queue.getActive()).some((job) => job.data.app === 'stalled' && job.stalledCounter === kill), 60_000);
        await new Promise((resolve) => setTimeout(resolve, 1000)); // its part running on the node
        worker.kill('SIGKILL');
        await stopProcess(worker);
        await new Promise((resolve) => setTimeout(resolve, 4000));
        worker = cluster.startWorker();
        await waitForLog(worker, 'worker started');
      }
      await waitUntil('the stalled app failed', async () => (await queue.getFailed()).some((job) => job.data.app === 'stalled'), 120_000);
    });

    // The scheduler's jobs, every 3 s.
    const scheduler = cluster.startProcess(['scheduler']);
    await withSnapshotQueue(cluster, (queue) => waitUntil('two scheduled jobs failed', async () => (await queue.getFailed()).filter((job) => job.data.app === 'scheduled').length >= 2, 90_000));
    await stopProcess(scheduler, 15_000);
    await withSnapshotQueue(cluster, (queue) => waitUntil('the retried job failed for good', async () => (await queue.getFailed()).some((job) => job.data.app === 'retried'), 90_000));

    const stored = [...afterRetry, ...await storedJobs(cluster.redis.url, cluster.prefix)];
    const apps = new Set(stored.filter((job) => job.failedReason).map((job) => /:(manual-|repeat:app-)([a-z]+)/.exec(job.key)?.[2]));
    assert.deepEqual([...apps].sort(), ['retried', 'scheduled', 'stalled', 'wrongkey'], `every path was taken: ${stored.map((job) => job.key).join(', ')}`);
    const withTrace = stored.filter((job) => job.stacktrace !== undefined && job.stacktrace !== '[]');
    const framesInReason = stored.filter((job) => /\n\s+at .*(\(|file:)/.test(job.failedReason ?? ''));
    assert.deepEqual([...withTrace, ...framesInReason], [], 'no stack trace in any job');
  });
});
