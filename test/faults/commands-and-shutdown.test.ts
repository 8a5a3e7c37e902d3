/**
 * Faults of the dump commands and of the nightly rhythm: a command that exits
 * non-zero half-way or is killed by a signal, a run of failed nights with
 * retention running after each, and SIGTERM to a worker with several
 * snapshots running.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdir, readlink } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { SNAPSHOT_QUEUE } from '../../src/queue/jobs.ts';
import { waitForLog, withCluster, type TestCluster } from '../helpers/cluster.ts';
import { recordFault } from '../helpers/fault-report.ts';

async function snapshotsOf(cluster: TestCluster, app: string): Promise<string[]> {
  return (await readdir(path.join(cluster.repository, app)).catch(() => [] as string[])).filter((name) => /^\d{8}T\d{6}Z/.test(name)).sort();
}

test('a command failing half-way or killed by a signal commits nothing; the reason carries stderr', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig([
      { name: 'halfway', node: 'db1', attempts: 1, parts: [{ file: 'a.sql', run: 'head -c 300000 /dev/urandom; echo "pg_dump: error: query failed: out of memory" >&2; exit 1' }] },
      { name: 'signalled', node: 'db1', attempts: 1, parts: [{ file: 'a.sql', run: 'head -c 300000 /dev/urandom; echo "about to die" >&2; kill -SEGV $$' }] },
    ]);
    const worker = cluster.startWorker();
    await waitForLog(worker, 'worker started');
    const result = await cluster.bysu(['snapshot', 'halfway', 'signalled', '--wait']);
    assert.equal(result.code, 1);
    assert.match(result.stdout, /halfway: FAILED .*exited with code 1[\s\S]*pg_dump: error: query failed: out of memory/);
    assert.match(result.stdout, /signalled: FAILED .*killed by signal (SIG)?SEGV[\s\S]*about to die/);
    const left = [...(await snapshotsOf(cluster, 'halfway')), ...(await snapshotsOf(cluster, 'signalled'))];
    assert.deepEqual(left, []);
    recordFault({ kind: 'fault', fault: 'command exits 1 half-way / killed by SEGV', expected: 'no commit; reason carries the stderr tail', observed: 'both FAILED with their stderr in the reason; 0 snapshots', pass: true, lost: 0, partialVisible: 0 });
  });
});

test('a run of failed nights leaves the kept snapshots untouched', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig([{ name: 'shop', node: 'db1', keep: 2, attempts: 1, parts: [{ file: 'a.sql', run: 'test -f "$NODE_DIR/broken" && exit 3; echo dump' }] }]);
    const worker = cluster.startWorker();
    const retention = cluster.startProcess(['worker', 'retention']);
    await waitForLog(worker, 'worker started');
    await waitForLog(retention, 'worker started');
    for (let night = 0; night < 3; night += 1) assert.equal((await cluster.bysu(['snapshot', 'shop', '--wait'])).code, 0);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const good = await snapshotsOf(cluster, 'shop');
    assert.equal(good.length, 2);
    const latest = await readlink(path.join(cluster.repository, 'shop', 'latest'));
    await (await import('node:fs/promises')).writeFile(path.join(cluster.nodes[0]!.dir, 'broken'), '');
    for (let night = 0; night < 5; night += 1) assert.equal((await cluster.bysu(['snapshot', 'shop', '--wait'])).code, 1);
    assert.equal((await cluster.bysu(['prune', 'shop'])).code, 0);
    assert.deepEqual(await snapshotsOf(cluster, 'shop'), good);
    assert.equal(await readlink(path.join(cluster.repository, 'shop', 'latest')), latest);
    recordFault({ kind: 'fault', fault: '5 failed nights in a row (keep 2)', expected: 'the 2 kept snapshots and latest untouched', observed: `still ${good.join(', ')}; latest ${latest}`, pass: true, lost: 0, partialVisible: 0 });
  });
});

test('SIGTERM to a worker with 4 snapshots running: handed back without using an attempt, then committed', async () => {
  await withCluster(['n1', 'n2', 'n3', 'n4'], async (cluster) => {
    await cluster.writeConfig(
      ['n1', 'n2', 'n3', 'n4'].map((node) => ({ name: `app-${node}`, node, attempts: 1, parts: [{ file: 'a.sql', run: 'test -f "$NODE_DIR/slow" && sleep 60; echo dump' }] })),
      { shutdownGrace: '1s', concurrency: { perWorker: 4 } },
    );
    const fs = await import('node:fs/promises');
    for (const node of cluster.nodes) await fs.writeFile(path.join(node.dir, 'slow'), '');
    const first = cluster.startWorker();
    await waitForLog(first, 'worker started');
    await cluster.bysu(['snapshot', '--all']);
    const deadline = Date.now() + 20_000;
    while ((first.output().match(/"msg":"part started"/g) ?? []).length < 4 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    const exited = once(first, 'exit');
    first.kill('SIGTERM');
    const [code] = await exited;
    assert.equal(code, 0);
    const connection = new Redis(cluster.redis.url, { maxRetriesPerRequest: null });
    const queue = new Queue(SNAPSHOT_QUEUE, { connection, prefix: cluster.prefix });
    const jobs = await queue.getJobs(['waiting', 'delayed', 'prioritized', 'active']);
    await queue.close();
    connection.disconnect();
    assert.equal(jobs.length, 4, 'all four are back in the queue');
    assert.ok(jobs.every((job) => job.attemptsMade === 0), 'no attempt used');
    for (const node of cluster.nodes) await fs.rm(path.join(node.dir, 'slow'));
    const second = cluster.startWorker();
    const committed = async () => (await Promise.all(cluster.nodes.map((node) => snapshotsOf(cluster, `app-${node.name}`)))).every((ids) => ids.length === 1);
    const until = Date.now() + 30_000;
    while (!(await committed()) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 200));
    assert.ok(await committed(), second.output().slice(-2000));
    recordFault({ kind: 'fault', fault: 'SIGTERM to a worker with 4 running snapshots', expected: 'handed back without using an attempt (attempts: 1); another worker commits', observed: '4 jobs back with attemptsMade 0; all 4 committed by the next worker', pass: true, lost: 0, partialVisible: 0 });
  });
});
