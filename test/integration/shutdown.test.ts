/**
 * Graceful shutdown of a real worker process: on SIGTERM it stops taking
 * jobs, lets a running snapshot finish within the grace period, and hands a
 * snapshot that cannot finish in time back to the queue without using up an
 * attempt; another worker then commits it.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { waitForLog, withCluster, withSnapshotQueue } from '../helpers/cluster.ts';


async function jobIdOf(enqueued: { stdout: string }): Promise<string> {
  const match = /\(job ([^)]+)\)/.exec(enqueued.stdout);
  assert.ok(match, enqueued.stdout);
  return match[1]!;
}

test('SIGTERM lets a running snapshot finish within the grace period', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig([{ name: 'slow', node: 'db1', parts: [{ file: 'a.sql', run: 'sleep 2; echo done' }] }], { shutdownGrace: '30s' });
    const worker = cluster.startWorker();
    await waitForLog(worker, 'snapshot worker started');
    const jobId = await jobIdOf(await cluster.bysu(['snapshot', 'slow']));
    await waitForLog(worker, '"msg":"part started"');
    const exited = once(worker, 'exit');
    worker.kill('SIGTERM');
    const [code] = await exited;
    assert.equal(code, 0, worker.output());
    assert.match(worker.output(), /"msg":"snapshot committed"/);
    // It says which job it waited for and what became of it (before the fix it said neither).
    assert.ok(worker.output().includes(`"msg":"waiting for 1 running snapshot job(s) to finish: ${jobId}"`), worker.output());
    assert.ok(worker.output().includes(`"msg":"snapshot job ${jobId}: finished"`), worker.output());
    await withSnapshotQueue(cluster, async (queue) => {
      assert.equal(await (await queue.getJob(jobId))!.getState(), 'completed');
    });
    assert.equal((await readdir(path.join(cluster.repository, 'slow'))).filter((name) => /^\d{8}T/.test(name)).length, 1);
  });
});

test('past the grace period a running snapshot is handed back without using an attempt', async () => {
  await withCluster(['db1'], async (cluster) => {
    const flag = path.join(cluster.nodes[0]!.dir, 'slow');
    await writeFile(flag, '');
    await cluster.writeConfig(
      [{ name: 'stuck', node: 'db1', attempts: 1, parts: [{ file: 'a.sql', run: 'if [ -f "$NODE_DIR/slow" ]; then sleep 60; fi; echo done' }] }],
      { shutdownGrace: '1s' },
    );
    const first = cluster.startWorker();
    await waitForLog(first, 'snapshot worker started');
    const jobId = await jobIdOf(await cluster.bysu(['snapshot', 'stuck']));
    await waitForLog(first, '"msg":"part started"');
    const started = Date.now();
    const exited = once(first, 'exit');
    first.kill('SIGTERM');
    const [code] = await exited;
    assert.equal(code, 0, first.output());
    assert.ok(Date.now() - started < 15_000, 'the worker did not wait for the 60 s command');
    assert.match(first.output(), /handing the job back without using an attempt/);
    assert.ok(first.output().includes(`"msg":"grace period over; interrupting snapshot job(s) ${jobId} to hand them back to the queue"`), first.output());
    assert.ok(first.output().includes(`"msg":"snapshot job ${jobId}: handed back to the queue"`), first.output());
    assert.doesNotMatch(first.output(), /did not stop/);

    await withSnapshotQueue(cluster, async (queue) => {
      const job = (await queue.getJob(jobId))!;
      assert.ok(['waiting', 'delayed', 'prioritized'].includes(await job.getState()), await job.getState());
      assert.equal(job.attemptsMade, 0, 'no attempt used');
    });
    assert.deepEqual(await readdir(path.join(cluster.repository, 'stuck', '.incoming')), [], 'the interrupted attempt left nothing');

    await rm(flag);
    const second = cluster.startWorker();
    await waitForLog(second, '"msg":"snapshot committed"');
    const manifest = JSON.parse(await readFile(path.join(cluster.repository, 'stuck', 'latest', 'manifest.json'), 'utf8'));
    assert.equal(manifest.jobId, jobId);
    assert.equal(manifest.attempt, 1, 'committed on its first counted attempt (attempts: 1 would otherwise have failed it)');
  });
});
