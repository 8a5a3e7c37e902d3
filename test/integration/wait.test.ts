/**
 * `bysu snapshot --wait` and `bysu drill --wait` learn of a job's end from the
 * queue's events, not by reading the job every so often: with a real
 * redis-server, real sshd nodes and the real CLI.
 *
 * Proved by mechanism, not by a stopwatch: while the job waits for a worker,
 * MONITOR shows the CLI sending Redis nothing but its blocking XREAD of the
 * event stream (the polling CLI read the job's state and hash every 500 ms),
 * and once a worker runs the job the CLI ends with the usual lines. A watch
 * opened after a job's events were written still sees them (the race of a
 * job that ends before the subscription reads), and a Redis lost while
 * waiting ends the wait with exit 1 and one line naming Redis.
 *
 * Each fails on the code before: the first two saw the polling reads
 * (EVALSHA and HGETALL of the job every 500 ms), the watch did not exist, and
 * the lost Redis was reported as "bysu: Connection is closed.".
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Queue, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { DRILL_QUEUE, SNAPSHOT_QUEUE } from '../../src/queue/jobs.ts';
import { JobWatch, readJobWithState, RECHECK_MS } from '../../src/queue/job-watch.ts';
import { openQueue } from '../../src/queue/open-queue.ts';
import { connectProducer } from '../../src/queue/connection.ts';
import { withCluster, type TestCluster } from '../helpers/cluster.ts';
import { stopProcess, waitUntil } from '../helpers/processes.ts';
import { withRedis } from '../helpers/redis.ts';

/** One app with a drill: every test here waits on both kinds of job. */
const SHOP = {
  name: 'shop',
  node: 'db1',
  attempts: 1,
  parts: [{ file: 'shop.txt', run: 'echo shop' }],
  drill: { node: 'staging1', steps: [{ run: 'cat', stdin: 'shop.txt', expect: '^shop$' }] },
};

/** How long the CLI is watched while its job waits for a worker. */
const IDLE_MS = 3000;

/**
 * Given a cluster with no worker running and a `bysu … --wait` started, wait
 * until its job is queued, then return the Redis commands (name and first
 * key) that anyone sent during IDLE_MS.
 */
async function commandsWhileIdle(cluster: TestCluster, queueName: string): Promise<string[]> {
  const redis = new Redis(cluster.redis.url, { maxRetriesPerRequest: null });
  const queue = new Queue(queueName, { connection: redis, prefix: cluster.prefix });
  try {
    await waitUntil(`a ${queueName} job waiting`, async () => (await queue.getWaitingCount()) > 0, 60_000);
    // Its event subscription is up once an XREAD blocks on the stream.
    await waitUntil('the CLI blocking on the event stream', async () => String(await redis.client('LIST')).includes('cmd=xread'), 30_000);
    const monitor = await redis.monitor();
    const seen: { at: number; command: string }[] = [];
    monitor.on('monitor', (_time: string, args: string[]) => seen.push({ at: Date.now(), command: `${args[0]?.toLowerCase()} ${args[1] ?? ''}` }));
    // The CLI blocks on XREAD from before it enqueues, so its first round of reads (state, job, workers) may still
    // be under way (fresh-clone CI at 82ebef4 caught that round once). The window starts once the CLI has sent
    // nothing but XREAD for a second: a CLI that polled would never get there, or would be caught in the window.
    await waitUntil('the CLI quiet after its first reads', async () => {
      const last = seen.filter((entry) => !entry.command.startsWith('xread')).at(-1);
      return last === undefined || Date.now() - last.at >= 1000;
    }, 20_000);
    const from = seen.length;
    await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
    monitor.disconnect();
    return seen.slice(from).map((entry) => entry.command);
  } finally {
    await queue.close();
    redis.disconnect();
  }
}

test('--wait reads nothing while its job waits, and ends on the job\'s events (snapshot, then drill)', async () => {
  await withCluster(['db1', 'staging1'], async (cluster) => {
    await cluster.writeConfig([SHOP]);

    const snapshot = cluster.bysu(['snapshot', 'shop', '--wait']);
    const snapshotIdle = await commandsWhileIdle(cluster, SNAPSHOT_QUEUE);
    const worker = cluster.startWorker();
    const snapshotResult = await snapshot;
    assert.equal(snapshotResult.code, 0, snapshotResult.stdout + snapshotResult.stderr);
    assert.match(snapshotResult.stdout, /shop: committed \d{8}T\d{6}Z \(\d+ B\) at /);
    assert.deepEqual(snapshotIdle.filter((command) => !command.startsWith('xread')), [], `the waiting CLI sent only XREAD; it sent:\n${snapshotIdle.join('\n')}`);
    // The worker is stopped so that, below, only the waiting CLI talks to Redis.
    await stopProcess(worker, 15_000);

    const drill = cluster.bysu(['drill', 'shop', '--wait']);
    const drillIdle = await commandsWhileIdle(cluster, DRILL_QUEUE);
    cluster.startProcess(['worker', 'drill']);
    const drillResult = await drill;
    assert.equal(drillResult.code, 0, drillResult.stdout + drillResult.stderr);
    assert.match(drillResult.stdout, /shop: drill passed: snapshot \d{8}T\d{6}Z restored and checked on staging1/);
    assert.deepEqual(drillIdle.filter((command) => !command.startsWith('xread')), [], `the waiting CLI sent only XREAD; it sent:\n${drillIdle.join('\n')}`);
  });
});

test('a watch opened after its job ended still sees the job\'s events: nothing written after its starting point is missed', async () => {
  await withRedis(async (redis) => {
    const producer = await connectProducer(redis.url);
    const queue = openQueue(SNAPSHOT_QUEUE, producer, 'watch');
    const workerConnection = new Redis(redis.url, { maxRetriesPerRequest: null });
    // A job that ends at once, before the watch subscribes: what the CLI meets when a worker is idle and fast.
    const worker = new Worker(SNAPSHOT_QUEUE, async () => ({ done: true }), { connection: workerConnection, prefix: 'watch' });
    let watch: JobWatch | null = null;
    try {
      const since = await JobWatch.newestEventId(queue, producer);
      const job = await queue.add('snapshot', { app: 'shop' } as never, { jobId: 'fast' });
      await waitUntil('the job completed', async () => (await queue.getJobState('fast')) === 'completed', 20_000);
      watch = await JobWatch.open(queue, producer, redis.url, since);
      watch.follow(String(job.id));
      // Subscribed from "now" (BullMQ's default), the watch would see nothing and answer 'all' only after recheckMs.
      const changed = await watch.next(10_000);
      assert.notEqual(changed, 'all', 'the events written before the subscription were read');
      assert.ok(changed !== 'all' && changed.has('fast'));
    } finally {
      await watch?.close();
      await worker.close();
      await queue.close();
      workerConnection.disconnect();
      producer.disconnect();
    }
  });
});

test('Redis lost while waiting: exit 1 within seconds, one line that names Redis', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig([{ name: 'shop', node: 'db1', parts: [{ file: 'a.txt', run: 'echo a' }] }]);
    const waiting = cluster.bysu(['snapshot', 'shop', '--wait']);
    const redis = new Redis(cluster.redis.url, { maxRetriesPerRequest: null });
    await waitUntil('the CLI blocking on the event stream', async () => String(await redis.client('LIST')).includes('cmd=xread'), 60_000);
    redis.disconnect();
    const stoppedAt = Date.now();
    await cluster.redis.stop();
    const result = await waiting;
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.ok(Date.now() - stoppedAt < 10_000, `exited ${Date.now() - stoppedAt} ms after Redis stopped`);
    assert.match(result.stderr, /^bysu: Redis unreachable at redis:\/\/127\.0\.0\.1:\d+\/0: the connection was lost while waiting for the outcome/);
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
  });
});

/**
 * From the attack on `--wait`: a job taken off its queue by hand (its id removed from the wait list, its hash
 * left behind: BullMQ then reports its state as 'unknown') must end the wait; `drill --wait` re-read it for ever.
 */
test('a job taken off the wait list by hand ends snapshot --wait and drill --wait alike', async () => {
  await withCluster(['db1', 'staging1'], async (cluster) => {
    await cluster.writeConfig([SHOP]);
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

/**
 * Seen once in CI: a job that failed for good between the follower's read of its state and its read of the job
 * showed its final data (one attempt made) under its old state, "active", and `snapshot --wait` printed
 * "attempt 1 of 3 failed, will retry" for a job that was not retried. Here the job fails for good, through a real
 * worker, exactly between those two reads. Fails on the old order of reads (the state once, then the job):
 * state 'active' with attemptsMade 1.
 */
test('a job that fails for good between the reads of its state and of its data is read as failed, never as a retry', async () => {
  await withRedis(async (redis) => {
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    const queue = openQueue(SNAPSHOT_QUEUE, connection, 'race');
    const workerConnection = new Redis(redis.url, { maxRetriesPerRequest: null });
    let release: (error: Error) => void = () => undefined;
    const worker = new Worker(SNAPSHOT_QUEUE, () => new Promise((_resolve, reject) => { release = reject; }), { connection: workerConnection, prefix: 'race' });
    try {
      const job = await queue.add(SNAPSHOT_QUEUE, {} as never, { attempts: 3 });
      await waitUntil('the job active', async () => (await queue.getJobState(job.id!)) === 'active', 30_000);
      const getJobState = queue.getJobState.bind(queue);
      let reads = 0;
      queue.getJobState = async (id: string) => {
        const state = await getJobState(id);
        if (++reads === 1) { // the job fails for good right after its first state was read
          release(new UnrecoverableError('repository has no BYSU marker'));
          await waitUntil('the job failed', async () => (await getJobState(id)) === 'failed', 30_000);
        }
        return state;
      };
      const read = await readJobWithState(queue, job.id!);
      assert.equal(read.job?.attemptsMade, 1);
      assert.equal(read.state, 'failed', 'its data and its state are of the same moment');
    } finally {
      await worker.close();
      await queue.close();
      workerConnection.disconnect();
      connection.disconnect();
    }
  });
});
