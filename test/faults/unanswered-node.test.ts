/**
 * A node that logs BYSU in and opens the session, then never answers the exec
 * request (a hung sshd child, a wedged PAM session module), against a real
 * worker and a real redis-server. The node is a fake ssh2 server: a real sshd
 * cannot be made to go silent at exactly that step. The job must fail at its
 * timeout and give its node slot back, so that the next job on the node runs;
 * a SIGTERM must hand the job back within the grace period; and no connection
 * may be left open on the node.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { SNAPSHOT_QUEUE } from '../../src/queue/jobs.ts';
import { waitForLog, withCluster, type TestCluster } from '../helpers/cluster.ts';
import { startFakeSshServer, type FakeSshServer } from '../helpers/fake-ssh-server.ts';
import { recordFault } from '../helpers/fault-report.ts';
import { waitUntil } from '../helpers/processes.ts';

const MUTE_NODE = (node: FakeSshServer) => [{ name: 'mute', host: '127.0.0.1', port: node.port, hostKey: node.hostKey }];
const PART = [{ file: 'dump.sql', run: 'pg_dump shop' }];

async function withMuteCluster(fn: (cluster: TestCluster, node: FakeSshServer) => Promise<void>): Promise<void> {
  const node = await startFakeSshServer('exec');
  try {
    await withCluster([], (cluster) => fn(cluster, node));
  } finally {
    await node.close();
  }
}

// Fails before the fix: the first job waited for the exec answer for ever and kept the node's only slot,
// so `bysu snapshot --wait` was killed at its 45 s limit with neither job failed.
test('a node that never answers the exec request: each job fails at its timeout and frees the node slot for the next', { timeout: 120_000 }, async () => {
  await withMuteCluster(async (cluster, node) => {
    await cluster.writeConfig(
      ['first', 'second'].map((name) => ({ name, node: 'mute', attempts: 1, timeout: '3s', parts: PART })),
      { nodes: MUTE_NODE(node), concurrency: { perNode: 1, busyNodeDelay: '300ms' } },
    );
    const worker = cluster.startWorker();
    await waitForLog(worker, 'worker started', 60_000);
    const result = await cluster.bysu(['snapshot', 'first', 'second', '--wait'], { timeoutMs: 45_000 });
    const failed = result.stdout.split('\n').filter((line) => /FAILED after 1 attempt\(s\): snapshot of \w+ exceeded its timeout of 3000 ms/.test(line));
    // How long each job held the worker (and its node slot), from BullMQ's own timestamps: the CLI's start-up is not in it.
    const connection = new Redis(cluster.redis.url, { maxRetriesPerRequest: null });
    const queue = new Queue(SNAPSHOT_QUEUE, { connection, prefix: cluster.prefix });
    const runMs = (await queue.getJobs(['failed'])).map((job) => (job.finishedOn ?? 0) - (job.processedOn ?? 0)).sort((a, b) => a - b);
    await queue.close();
    connection.disconnect();
    await node.allClosed(5000).catch(() => undefined);
    const { opened, closed } = node.connections();
    const execs = node.requests().execs;
    const bounded = runMs.length === 2 && runMs.every((ms) => ms >= 3000 && ms < 3000 + 2000);
    const pass = result.code === 1 && failed.length === 2 && execs === 2 && bounded && opened === 2 && closed === 2;
    recordFault({
      kind: 'fault', fault: 'node never answers the exec request (2 jobs, perNode 1, timeout 3 s)',
      expected: 'each job fails at its timeout; the slot is freed for the next; no connection left open',
      observed: `exit ${result.code}; ${failed.length} of 2 failed with the timeout message after ${runMs.map((ms) => (ms / 1000).toFixed(1)).join(' and ')} s; ` +
        `${execs} exec requests reached the node (the second job got the slot); connections ${closed} of ${opened} closed`,
      pass, lost: 0, partialVisible: 0,
    });
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.equal(failed.length, 2, result.stdout);
    assert.equal(execs, 2, 'the second job ran: the first freed the slot');
    assert.ok(bounded, `each job ran for ${runMs.join(' and ')} ms; the timeout is 3000 ms`);
    assert.deepEqual({ opened, closed }, { opened: 2, closed: 2 });
  });
});

// Fails before the fix: the abort did not reach the exec wait; the worker waited the grace period, then
// connectTimeout + 10 s more, and logged "running snapshots did not stop".
test('SIGTERM while a job waits for an unanswered exec: handed back within the grace period, no attempt used', { timeout: 120_000 }, async () => {
  await withMuteCluster(async (cluster, node) => {
    await cluster.writeConfig([{ name: 'stuck', node: 'mute', attempts: 1, timeout: '10m', parts: PART }], { nodes: MUTE_NODE(node), shutdownGrace: '1s' });
    const worker = cluster.startWorker();
    await waitForLog(worker, 'worker started', 60_000);
    await cluster.bysu(['snapshot', 'stuck']);
    await waitUntil('the exec request to reach the node', async () => node.requests().execs === 1, 20_000);
    const exited = once(worker, 'exit');
    const signalledAt = Date.now();
    worker.kill('SIGTERM');
    const [code] = await exited;
    const stopMs = Date.now() - signalledAt;
    const connection = new Redis(cluster.redis.url, { maxRetriesPerRequest: null });
    const queue = new Queue(SNAPSHOT_QUEUE, { connection, prefix: cluster.prefix });
    const jobs = await queue.getJobs(['waiting', 'delayed', 'prioritized', 'active']);
    await queue.close();
    connection.disconnect();
    await node.allClosed(5000).catch(() => undefined);
    const { opened, closed } = node.connections();
    const stuckLogged = worker.output().includes('did not stop');
    const pass = code === 0 && stopMs < 8000 && jobs.length === 1 && jobs[0]!.attemptsMade === 0 && !stuckLogged && closed === opened;
    recordFault({
      kind: 'fault', fault: 'SIGTERM while the node leaves the exec request unanswered (grace 1 s)',
      expected: 'the worker stops within a few seconds; the job is back with no attempt used; no connection left open',
      observed: `exit ${code} ${(stopMs / 1000).toFixed(1)} s after SIGTERM; ${jobs.length} job back, attemptsMade ${jobs[0]?.attemptsMade}; ` +
        `${stuckLogged ? '"did not stop" logged' : 'nothing left running'}; connections ${closed} of ${opened} closed`,
      pass, lost: 0, partialVisible: 0,
    });
    assert.equal(code, 0, worker.output().slice(-2000));
    assert.ok(stopMs < 8000, `stopped ${stopMs} ms after SIGTERM`);
    assert.equal(jobs.length, 1);
    assert.equal(jobs[0]!.attemptsMade, 0);
    assert.ok(!stuckLogged, worker.output().slice(-2000));
    assert.equal(closed, opened);
  });
});
