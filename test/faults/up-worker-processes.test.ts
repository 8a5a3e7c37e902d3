/**
 * `bysu up` runs its snapshot worker in processes of its own
 * (up.snapshotWorkers), and supervises them: with a real redis-server, real
 * sshd nodes and the real CLI. Two worker processes run and take jobs; a
 * SIGHUP to `bysu up` reaches them (each reloads, and a webhook added by the
 * reload receives the failure of a job one of them ran); one killed with -9
 * mid-snapshot is started again and its job still commits exactly once;
 * SIGTERM stops everything promptly; and `kill -9` of `bysu up` leaves no
 * worker process behind.
 *
 * Fails on the code before: `bysu up` ran the snapshot worker in its own
 * process, so there were no worker processes to find (and
 * `up.snapshotWorkers` was an unknown key).
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { waitForLog, withCluster, type TestCluster } from '../helpers/cluster.ts';
import { recordFault } from '../helpers/fault-report.ts';
import { startHttpRecorder } from '../helpers/http-recorder.ts';
import { exitWithin, waitUntil } from '../helpers/processes.ts';
import { descendants, processState } from '../helpers/signals.ts';

const NEVER = '0 0 1 1 *';
const RUNNING = 'bysu up: scheduler, workers and dashboard running';
/** Quick stalled-job recovery, as in the other kill -9 tests. */
const FAST_FAILOVER = { lockDuration: '3s', stalledInterval: '1s', perNode: 4, busyNodeDelay: '300ms' };

type Up = ReturnType<TestCluster['startProcess']>;

/** The pids of `bysu up`'s snapshot worker processes (its descendants running `worker snapshot`). */
async function workerPids(up: Up): Promise<number[]> {
  const pids: number[] = [];
  for (const pid of descendants(up.pid!)) {
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (cmdline.includes('worker') && cmdline.includes('snapshot') && processState(pid) !== 'Z') pids.push(pid);
  }
  return pids.sort((a, b) => a - b);
}

/** Whether a process is gone (or a zombie nobody reaped yet: it no longer runs). */
function gone(pid: number): boolean {
  const state = processState(pid);
  return state === null || state === 'Z';
}

/** The JSON log lines of the output, parsed. */
function logLines(up: Up): Record<string, unknown>[] {
  return up.output().split('\n').flatMap((line) => {
    try {
      return [JSON.parse(line) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}

async function snapshotsOf(cluster: TestCluster, app: string): Promise<string[]> {
  return (await readdir(path.join(cluster.repository, app)).catch(() => [] as string[])).filter((name) => /^\d{8}T\d{6}Z/.test(name));
}

test('bysu up with up.snapshotWorkers 2: two worker processes take the jobs, and SIGHUP reaches them', async () => {
  const hook = await startHttpRecorder();
  try {
    await withCluster(['db1'], async (cluster) => {
      const apps = [
        { name: 'shop', node: 'db1', schedule: NEVER, parts: [{ file: 'shop.txt', run: 'echo shop' }] },
        { name: 'broken', node: 'db1', schedule: NEVER, attempts: 1, parts: [{ file: 'b.sql', run: 'echo "cannot dump" >&2; exit 3' }] },
      ];
      const settings = { up: { snapshotWorkers: 2 }, dashboard: { host: '127.0.0.1', port: 0 } };
      await cluster.writeConfig(apps, settings);
      const up = cluster.startProcess(['up']);
      await waitForLog(up, RUNNING, 120_000);
      const pids = await workerPids(up);
      assert.equal(pids.length, 2, `two worker processes under bysu up (pid ${up.pid}):\n${up.output()}`);
      const started = logLines(up).filter((line) => line.msg === 'snapshot worker started');
      assert.deepEqual(started.map((line) => line.worker).sort(), [1, 2], 'each worker process tags its lines with its index');
      assert.deepEqual([...new Set(started.map((line) => line.pid))].sort(), pids, 'the lines come from those processes');

      const result = await cluster.bysu(['snapshot', 'shop', '--wait']);
      assert.equal(result.code, 0, result.stdout + result.stderr);
      const committedBy = logLines(up).find((line) => line.msg === 'snapshot committed');
      assert.ok(committedBy && pids.includes(committedBy.pid as number), 'a worker process committed it, not bysu up itself');

      // SIGHUP to bysu up alone: each worker process reloads, and one of them alerts the webhook added.
      await cluster.writeConfig(apps, { ...settings, notify: { webhook: hook.url } });
      process.kill(up.pid!, 'SIGHUP');
      await waitUntil('every worker process reloaded', async () => {
        const reloaded = logLines(up).filter((line) => line.msg === 'config reloaded' && pids.includes(line.pid as number));
        return new Set(reloaded.map((line) => line.pid)).size === 2;
      }, 30_000).catch((error: Error) => {
        throw new Error(`${error.message}:\n${up.output()}`);
      });
      const failed = await cluster.bysu(['snapshot', 'broken', '--wait']);
      assert.equal(failed.code, 1, failed.stdout + failed.stderr);
      const alert = await hook.waitFor((request) => (request.body as { event?: string } | null)?.event === 'failed', 20_000).catch(() => null);
      const failedBy = logLines(up).find((line) => line.msg === 'snapshot failed for good');
      assert.ok(failedBy && pids.includes(failedBy.pid as number), 'a worker process ran the failing job');
      assert.ok(alert, `the webhook added by SIGHUP received "failed":\n${up.output()}`);

      // SIGTERM: everything stops promptly, the worker processes too.
      const stoppedAt = Date.now();
      up.kill('SIGTERM');
      const code = await exitWithin(up, 30_000);
      const stopMs = Date.now() - stoppedAt;
      assert.equal(code, 0, up.output().slice(-3000));
      assert.ok(pids.every(gone), 'no worker process is left');
      assert.ok(stopMs < 15_000, `stopped in ${stopMs} ms`);
      assert.equal(logLines(up).filter((line) => /^snapshot worker \d \(pid \d+\) stopped/.test(String(line.msg))).length, 2, up.output().slice(-3000));
    });
  } finally {
    await hook.close();
  }
});

test('bysu up: a worker process killed with -9 mid-snapshot is started again, and the job commits once', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig([
      { name: 'slow', node: 'db1', schedule: NEVER, attempts: 2, parts: [{ file: 'slow.bin', run: 'for i in $(seq 1 20); do head -c 100000 /dev/urandom; sleep 0.2; done' }] },
    ], { up: { snapshotWorkers: 2 }, dashboard: { host: '127.0.0.1', port: 0 }, concurrency: FAST_FAILOVER });
    const up = cluster.startProcess(['up']);
    await waitForLog(up, RUNNING, 120_000);
    const before = await workerPids(up);
    assert.equal(before.length, 2);

    const waiting = cluster.bysu(['snapshot', 'slow', '--wait'], { timeoutMs: 120_000 });
    await waitForLog(up, '"msg":"part started"', 60_000);
    const runner = logLines(up).find((line) => line.msg === 'part started')!;
    const victim = runner.pid as number;
    assert.ok(before.includes(victim), 'a worker process runs the job');
    process.kill(victim, 'SIGKILL');
    const result = await waiting;
    await waitUntil('the killed worker process started again', async () => (await workerPids(up)).length === 2 && !(await workerPids(up)).includes(victim), 60_000);
    const after = await workerPids(up);
    const died = logLines(up).find((line) => typeof line.msg === 'string' && line.msg.startsWith(`snapshot worker ${runner.worker as number} (pid ${victim}) died (killed by SIGKILL)`));
    const snapshots = await snapshotsOf(cluster, 'slow');
    recordFault({
      kind: 'fault',
      fault: 'bysu up: one of its 2 snapshot worker processes killed (-9) mid-snapshot',
      expected: 'the death logged as an error, the process started again; the job commits exactly once',
      observed: `${died ? 'logged' : 'not logged'} (level ${String(died?.level)}); worker processes ${before.join(', ')} → ${after.join(', ')}; --wait exit ${result.code}; ${snapshots.length} snapshot(s)`,
      pass: died !== undefined && result.code === 0 && snapshots.length === 1 && after.length === 2,
      lost: result.code === 0 ? 0 : 1,
      partialVisible: 0,
    });
    assert.ok(died, `the death is logged:\n${up.output()}`);
    assert.equal(died.level, 50, 'as an error');
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.equal(snapshots.length, 1, `exactly one snapshot: ${snapshots.join(', ')}`);
    assert.equal(after.length, 2);
    await waitForLog(up, `"msg":"snapshot worker ${runner.worker as number} running again`, 30_000);
  });
});

test('kill -9 of bysu up: its worker processes stop by themselves within seconds', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig([{ name: 'shop', node: 'db1', schedule: NEVER, parts: [{ file: 'shop.txt', run: 'echo shop' }] }], {
      up: { snapshotWorkers: 2 },
      dashboard: { host: '127.0.0.1', port: 0 },
    });
    const up = cluster.startProcess(['up']);
    await waitForLog(up, RUNNING, 120_000);
    const pids = await workerPids(up);
    assert.equal(pids.length, 2);
    up.kill('SIGKILL');
    const killedAt = Date.now();
    const stopped = await waitUntil('the worker processes gone', async () => pids.every(gone), 15_000).then(() => true, () => false);
    const ms = Date.now() - killedAt;
    recordFault({
      kind: 'fault',
      fault: 'bysu up killed (-9) with 2 idle snapshot worker processes',
      expected: 'the worker processes notice the closed channel and stop within seconds (no orphan taking jobs)',
      observed: stopped ? `both gone ${(ms / 1000).toFixed(1)} s after the kill` : `still running after 15 s: ${pids.filter((pid) => !gone(pid)).join(', ')}`,
      pass: stopped,
    });
    if (!stopped) for (const pid of pids) if (!gone(pid)) process.kill(pid, 'SIGKILL');
    assert.ok(stopped, 'no worker process outlives bysu up');
    assert.match(up.output(), /the parent process \(bysu up\) is gone: stopping/);
  });
});

test('bysu up: a worker process started again keeps the running Redis prefix, though the file now names another (a restart-only key)', async () => {
  await withCluster(['db1'], async (cluster) => {
    const apps = [{ name: 'shop', node: 'db1', schedule: NEVER, parts: [{ file: 'shop.txt', run: 'echo shop' }] }];
    const settings = { up: { snapshotWorkers: 2 }, dashboard: { host: '127.0.0.1', port: 0 }, concurrency: FAST_FAILOVER };
    await cluster.writeConfig(apps, settings);
    const up = cluster.startProcess(['up']);
    await waitForLog(up, RUNNING, 120_000);
    const before = await workerPids(up);
    assert.equal(before.length, 2);
    // Edited on disk, not applied: `bysu up` keeps serving its prefix until it is restarted.
    await cluster.writeConfig(apps, { ...settings, redis: { url: cluster.redis.url, prefix: `${cluster.prefix}-next` } });
    for (const pid of before) process.kill(pid, 'SIGKILL');
    await waitUntil('both worker processes started again', async () => {
      const now = await workerPids(up);
      return now.length === 2 && now.every((pid) => !before.includes(pid));
    }, 60_000);
    await waitUntil('both running again', async () => up.output().split('running again').length - 1 >= 2, 30_000);
    const result = await cluster.bysu(['snapshot', 'shop', '--wait'], { env: { BYSU_REDIS_PREFIX: cluster.prefix }, timeoutMs: 60_000 });
    assert.equal(result.code, 0, `a job on the running prefix is still taken: ${result.stdout}${result.stderr}\n${up.output().slice(-3000)}`);
    up.kill('SIGTERM');
    assert.equal(await exitWithin(up, 60_000), 0);
  });
});

// Fails before the fix: a SIGTERM while bysu up was still starting its components (the dashboard already answering,
// the worker processes loading) killed it by Node's default action (signal SIGTERM, no "stopped" line), and the
// workers it had forked were left to notice the lost parent on their own. Found by the attack on the demo's Ctrl-C.
test('a SIGTERM while bysu up starts is served once it has started: it stops cleanly, exit 0', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig([{ name: 'shop', node: 'db1', parts: [{ file: 'shop.sql', run: 'echo shop' }] }], { up: { snapshotWorkers: 2 } });
    const up = cluster.startProcess(['up']);
    await waitForLog(up, 'dashboard started');
    up.kill('SIGTERM');
    assert.equal(await exitWithin(up, 60_000), 0, up.output());
    assert.equal(up.signalCode, null, 'it exited, it was not killed by the signal');
    assert.match(up.output(), /stopping \(asked while starting\)/);
    assert.match(up.output(), /"msg":"stopped"/);
    assert.deepEqual(descendants(up.pid!), [], 'no worker process left behind');
  });
});
