/**
 * Two scheduler processes at once make one job per tick, not two; removing an
 * app from the config and sending SIGHUP removes its job scheduler but never
 * its snapshots, which `bysu status` then lists as orphaned.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { waitForLog, withCluster } from '../helpers/cluster.ts';
import { SNAPSHOT_QUEUE } from '../../src/queue/jobs.ts';

const apps = (names: string[]) => names.map((name) => ({ name, node: 'db1', schedule: '* * * * * *', keep: 50, parts: [{ file: `${name}.sql`, run: `echo ${name}` }] }));

test('two schedulers make no duplicate jobs; SIGHUP removes an app\'s scheduler, not its snapshots', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig(apps(['dup', 'stay']), { concurrency: { perNode: 4 } });
    const schedulers = [cluster.startProcess(['scheduler']), cluster.startProcess(['scheduler'])];
    for (const scheduler of schedulers) await waitForLog(scheduler, 'scheduler started');
    const worker = cluster.startWorker();
    await waitForLog(worker, 'worker started');
    await new Promise((resolve) => setTimeout(resolve, 6000));

    const connection = new Redis(cluster.redis.url, { maxRetriesPerRequest: null });
    const queue = new Queue(SNAPSHOT_QUEUE, { connection, prefix: cluster.prefix });
    try {
      const jobs = await queue.getJobs(['completed', 'active', 'waiting', 'delayed', 'failed']);
      const dupJobs = jobs.filter((job) => job.data.app === 'dup');
      assert.ok(dupJobs.length >= 4, `the schedule ran (${dupJobs.length} jobs)`);
      const ticks = dupJobs.map((job) => job.opts.prevMillis ?? job.timestamp);
      assert.equal(new Set(dupJobs.map((job) => job.id)).size, dupJobs.length);
      const sorted = [...ticks].sort((a, b) => a - b);
      for (let index = 1; index < sorted.length; index += 1) {
        assert.ok(sorted[index]! - sorted[index - 1]! >= 900, `no two jobs for one tick: ${sorted.join(', ')}`);
      }
      assert.deepEqual((await queue.getJobSchedulers()).map((scheduler) => scheduler.id ?? scheduler.key).sort(), ['app-dup', 'app-stay']);

      // dup leaves the config; both schedulers reload on SIGHUP.
      await cluster.writeConfig(apps(['stay']), { concurrency: { perNode: 4 } });
      for (const scheduler of schedulers) scheduler.kill('SIGHUP');
      for (const scheduler of schedulers) await waitForLog(scheduler, '"removed":["app-dup"]', 10_000).catch(() => waitForLog(scheduler, '"apps":1', 10_000));
      assert.deepEqual((await queue.getJobSchedulers()).map((scheduler) => scheduler.id ?? scheduler.key), ['app-stay']);
    } finally {
      await queue.close();
      connection.disconnect();
    }
    const kept = (await readdir(path.join(cluster.repository, 'dup'))).filter((name) => /^\d{8}T/.test(name));
    assert.ok(kept.length >= 4, 'the removed app keeps its snapshots');
    const status = await cluster.bysu(['status', '--json']);
    const report = JSON.parse(status.stdout) as { apps: { app: string; state: string }[] };
    assert.equal(report.apps.find((app) => app.app === 'dup')?.state, 'orphaned');
    assert.equal(report.apps.find((app) => app.app === 'stay')?.state, 'ok');
  });
});
