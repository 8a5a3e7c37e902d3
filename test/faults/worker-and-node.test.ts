/**
 * Faults of workers and nodes, with real processes: a worker killed with -9
 * mid-transfer, a worker frozen past its lock while another takes the job
 * (during the transfer, and right before its commit's rename), a node's sshd
 * killed mid-stream, and a node cut off without a FIN (sshd
 * stopped). In each case exactly one complete snapshot must result, `latest`
 * must never point at a partial one, and nothing may hang.
 */
import assert from 'node:assert/strict';
import { readdir, readlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { PROJECT_ROOT, waitForLog, withCluster, type TestCluster } from '../helpers/cluster.ts';
import { recordFault } from '../helpers/fault-report.ts';
import { run, waitUntil } from '../helpers/processes.ts';
import { processState, signalTree } from '../helpers/signals.ts';
import { redisKeys } from '../../src/queue/jobs.ts';
import { STALE_COMMIT_MARKER_MS } from '../../src/repository/attempt.ts';
import { listSnapshots } from '../../src/repository/read.ts';

const STOP_BEFORE_PUBLISH = path.join(PROJECT_ROOT, 'test/helpers/stop-before-publish.mjs');

/** A part that streams ~12 MB over about 3 seconds. */
const SLOW_PART = 'for i in $(seq 1 30); do head -c 400000 /dev/urandom; sleep 0.1; done';
const FAST_FAILOVER = { lockDuration: '3s', stalledInterval: '1s', perNode: 4, busyNodeDelay: '300ms' };

async function snapshotsOf(cluster: TestCluster, app: string): Promise<string[]> {
  return (await readdir(path.join(cluster.repository, app)).catch(() => [] as string[])).filter((name) => /^\d{8}T\d{6}Z/.test(name));
}

/** Check the one snapshot of app with sha256sum -c; return its id. */
async function oneVerifiedSnapshot(cluster: TestCluster, app: string): Promise<string> {
  const ids = await snapshotsOf(cluster, app);
  assert.equal(ids.length, 1, `exactly one snapshot of ${app}: ${ids.join(', ')}`);
  assert.equal(await readlink(path.join(cluster.repository, app, 'latest')), ids[0]);
  const sums = await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: path.join(cluster.repository, app, ids[0]!) });
  assert.equal(sums.code, 0, sums.stdout + sums.stderr);
  return ids[0]!;
}

test('kill -9 of a worker mid-transfer: another worker commits exactly once; the leftover is cleaned', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig([{ name: 'big', node: 'db1', attempts: 2, timeout: '8s', parts: [{ file: 'big.bin', run: SLOW_PART }] }], {
      concurrency: FAST_FAILOVER,
      retention: { incomingMargin: '1s' },
    });
    const first = cluster.startWorker();
    await waitForLog(first, 'worker started');
    await cluster.bysu(['snapshot', 'big']);
    await waitForLog(first, '"msg":"part started"');
    await new Promise((resolve) => setTimeout(resolve, 800));
    const killedAt = Date.now();
    first.kill('SIGKILL');
    const leftovers = await readdir(path.join(cluster.repository, 'big', '.incoming'));
    assert.equal(leftovers.length, 1, 'the dead attempt left its directory');

    const second = cluster.startWorker();
    await waitForLog(second, '"msg":"snapshot committed"', 60_000);
    const recoveredMs = Date.now() - killedAt;
    const id = await oneVerifiedSnapshot(cluster, 'big');
    assert.equal((await readdir(path.join(cluster.repository, 'big', '.commits'))).length, 1);

    // The dead attempt's files go once older than the app's timeout plus the margin.
    const old = (Date.now() - 60_000) / 1000;
    await utimes(path.join(cluster.repository, 'big', '.incoming', leftovers[0]!), old, old);
    const prune = await cluster.bysu(['prune', 'big']);
    assert.equal(prune.code, 0, prune.stdout + prune.stderr);
    assert.deepEqual(await readdir(path.join(cluster.repository, 'big', '.incoming')), []);
    recordFault({
      kind: 'fault', fault: 'kill -9 of a worker mid-transfer', expected: 'another worker commits once; checksums hold; leftover cleaned',
      observed: `committed ${id} ${(recoveredMs / 1000).toFixed(1)} s after the kill; 1 snapshot; sha256sum OK; leftover removed`, pass: true, lost: 0, partialVisible: 0,
    });
  });
});

test('a worker frozen past its lock: the job runs twice, exactly one commit', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig([{ name: 'twice', node: 'db1', attempts: 3, parts: [{ file: 'big.bin', run: SLOW_PART }] }], { concurrency: FAST_FAILOVER });
    const frozen = cluster.startWorker();
    await waitForLog(frozen, 'worker started');
    await cluster.bysu(['snapshot', 'twice']);
    await waitForLog(frozen, '"msg":"part started"');
    frozen.kill('SIGSTOP');
    const other = cluster.startWorker();
    try {
      await waitForLog(other, '"msg":"snapshot committed"', 60_000);
    } finally {
      frozen.kill('SIGCONT');
    }
    // The frozen worker wakes up, finishes its stream and must not commit a second snapshot.
    await waitUntil('the frozen worker to give up', async () => /lost the lock|being committed by another worker|Missing lock|already|snapshot committed/.test(frozen.output()), 60_000);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const id = await oneVerifiedSnapshot(cluster, 'twice');
    assert.equal((await readdir(path.join(cluster.repository, 'twice', '.commits'))).length, 1);
    const frozenCommitted = /"msg":"snapshot committed".*"alreadyCommitted":false/.test(frozen.output());
    assert.equal(frozenCommitted, false, 'the frozen worker did not commit a new snapshot');
    recordFault({
      kind: 'fault', fault: 'two workers run one job (lock lost)', expected: 'exactly one commit',
      observed: `1 snapshot (${id}); the frozen worker's run was fenced off`, pass: true, lost: 0, partialVisible: 0,
    });
  });
});

/**
 * The fault above freezes the worker during the transfer: when it wakes up its first step is the
 * fence (job.extendLock), which fails, so it never reaches the commit. That is why it never saw
 * this one: a worker paused after every check of its commit, right before the rename(2) that
 * publishes the snapshot, while another worker takes the job and its commit over. The pause is
 * made by test/helpers/stop-before-publish.mjs (the worker SIGSTOPs itself at that rename); the
 * minutes it would last are stood in for by running out the app lock's lease in Redis and ageing
 * the commit claim past STALE_COMMIT_MARKER_MS, as the clock would have.
 * Fails before the fix: 2 snapshots with the job's id (the paused worker's rename publishes its own).
 */
test('a worker paused right before its commit\'s rename, the job taken over meanwhile: exactly one snapshot', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig([{ name: 'paused', node: 'db1', attempts: 3, parts: [{ file: 'db.sql', run: "printf 'SELECT 1;\\n'" }] }], { concurrency: FAST_FAILOVER });
    const paused = cluster.startWorker({ NODE_OPTIONS: `--import ${pathToFileURL(STOP_BEFORE_PUBLISH).href}`, BYSU_TEST_STOP_BEFORE_PUBLISH: '1' });
    await waitForLog(paused, 'worker started');
    await cluster.bysu(['snapshot', 'paused']);
    await waitForLog(paused, 'test: stopping before publishing', 60_000);
    await waitUntil('the worker to be stopped', async () => processState(paused.pid!) === 'T');
    const redis = new Redis(cluster.redis.url);
    try {
      await redis.pexpire(redisKeys.appLock(cluster.prefix, 'paused'), 1);
    } finally {
      redis.disconnect();
    }
    const commits = path.join(cluster.repository, 'paused', '.commits');
    const old = (Date.now() - STALE_COMMIT_MARKER_MS - 60_000) / 1000;
    for (const name of await readdir(commits)) await utimes(path.join(commits, name), old, old);

    const other = cluster.startWorker();
    try {
      await waitForLog(other, '"msg":"snapshot committed"', 60_000);
    } finally {
      paused.kill('SIGCONT');
    }
    await waitUntil('the paused worker to finish its commit', async () => /snapshot committed|snapshot failed/.test(paused.output().split('test: stopping before publishing')[1] ?? ''), 30_000);
    const ofJob = (await listSnapshots(cluster.repository, 'paused')).filter((snapshot) => snapshot.manifest !== null);
    const jobIds = new Set(ofJob.map((snapshot) => snapshot.manifest!.jobId));
    const pausedCommitted = /"msg":"snapshot committed".*"alreadyCommitted":false/.test(paused.output());
    const reason = /"err":"([^"]*)"[^\n]*"msg":"snapshot failed"/.exec(paused.output())?.[1] ?? '';
    const pass = ofJob.length === 1 && jobIds.size === 1 && !pausedCommitted;
    recordFault({
      kind: 'fault', fault: 'worker paused between commit checks and rename, job taken over', expected: 'exactly one snapshot per job id; the paused worker publishes nothing',
      observed: `${ofJob.length} snapshot(s) of ${jobIds.size} job id(s) (${ofJob.map((snapshot) => snapshot.id).join(', ')}); paused worker: ${pausedCommitted ? 'committed a second one' : reason.slice(0, 70)}`,
      pass, lost: 0, partialVisible: 0,
    });
    assert.equal(ofJob.length, 1, `exactly one snapshot of the job: ${ofJob.map((snapshot) => snapshot.id).join(', ')}`);
    assert.equal(pausedCommitted, false, 'the paused worker did not publish its snapshot');
    assert.match(reason, /taken over/);
    await oneVerifiedSnapshot(cluster, 'paused');
  });
});

test('the node\'s sshd killed mid-stream: the attempt fails, a retry commits once sshd is back', async () => {
  await withCluster(['db1'], async (cluster) => {
    const node = cluster.nodes[0]!;
    await cluster.writeConfig([{ name: 'cut', node: 'db1', attempts: 6, backoff: '1s', parts: [{ file: 'big.bin', run: SLOW_PART }] }], { concurrency: FAST_FAILOVER });
    const worker = cluster.startWorker();
    await waitForLog(worker, 'worker started');
    const waiting = cluster.bysu(['snapshot', 'cut', '--wait']);
    await waitForLog(worker, '"msg":"part started"');
    await new Promise((resolve) => setTimeout(resolve, 700));
    signalTree(node.process.pid!, 'SIGKILL');
    await waitForLog(worker, '"msg":"snapshot failed"', 30_000);
    assert.deepEqual(await snapshotsOf(cluster, 'cut'), [], 'nothing committed from the cut stream');
    await node.start();
    const result = await waiting;
    assert.equal(result.code, 0, result.stdout);
    const reason = /cut: attempt \d+ of 6 failed, will retry: (.*)/.exec(result.stdout)?.[1] ?? '';
    const id = await oneVerifiedSnapshot(cluster, 'cut');
    recordFault({
      kind: 'fault', fault: 'node sshd killed mid-stream', expected: 'attempt fails; retry commits after sshd is back; latest never partial',
      observed: `first failure: ${reason.slice(0, 60)}; then committed ${id}`, pass: true, lost: 0, partialVisible: 0,
    });
  });
});

test('a node cut off without a FIN (sshd stopped): the attempt fails within the keepalive bound', async () => {
  await withCluster(['db1'], async (cluster) => {
    const node = cluster.nodes[0]!;
    await cluster.writeConfig([{ name: 'silent', node: 'db1', attempts: 4, backoff: '1s', stallTimeout: '5m', parts: [{ file: 'big.bin', run: SLOW_PART }] }], {
      concurrency: FAST_FAILOVER,
      ssh: { user: node.user, identityFile: cluster.keys.identityFile, knownHosts: cluster.keys.knownHostsFile, connectTimeout: '5s', keepaliveInterval: '1s', keepaliveCountMax: 3 },
    });
    const worker = cluster.startWorker();
    await waitForLog(worker, 'worker started');
    const waiting = cluster.bysu(['snapshot', 'silent', '--wait']);
    await waitForLog(worker, '"msg":"part started"');
    await new Promise((resolve) => setTimeout(resolve, 700));
    const stoppedAt = Date.now();
    signalTree(node.process.pid!, 'SIGSTOP');
    let failedAfterMs = 0;
    try {
      await waitForLog(worker, '"msg":"snapshot failed"', 30_000);
      failedAfterMs = Date.now() - stoppedAt;
    } finally {
      signalTree(node.process.pid!, 'SIGCONT');
    }
    assert.ok(failedAfterMs < 15_000, `failed ${failedAfterMs} ms after the node went silent (keepalive 1 s × 3)`);
    const result = await waiting;
    assert.equal(result.code, 0, result.stdout);
    const id = await oneVerifiedSnapshot(cluster, 'silent');
    recordFault({
      kind: 'fault', fault: 'node cut off without FIN (SIGSTOP sshd)', expected: 'fails within the keepalive bound, not stallTimeout (5m); retry commits',
      observed: `failed after ${(failedAfterMs / 1000).toFixed(1)} s; then committed ${id}`, pass: true, lost: 0, partialVisible: 0,
    });
  });
});
