/**
 * Redis comes back without the job schedulers (no persistence, a new
 * instance, a FLUSHALL): a running `bysu scheduler` re-creates them by itself,
 * on reconnect (checked alone: the periodic check is a minute apart then)
 * and on its periodic check (a FLUSHALL, no reconnect), says so in its log, and `bysu
 * status` is healthy again within seconds. Real processes: a redis-server
 * without persistence, a scheduler with two apps (one with a drill).
 *
 * Fails before the fix: after the fresh Redis, status kept exiting 1 with
 * "no job scheduler: is a scheduler running with this config (reload it with
 * SIGHUP)?" for both apps until the 20 s bound, and the log said nothing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { waitForLog, withCluster, type TestCluster } from '../helpers/cluster.ts';
import { recordFault } from '../helpers/fault-report.ts';

/** Status must be healthy again within this after Redis came back empty (the periodic check runs every 1 s for the FLUSHALL). */
const BOUND_MS = 20_000;

const apps = [
  { name: 'shop', node: 'db1', schedule: '0 3 * * *', parts: [{ file: 'shop.sql', run: 'echo shop' }],
    drill: { node: 'db1', schedule: '0 6 * * 0', steps: [{ run: 'cat', stdin: 'shop.sql' }] } },
  { name: 'blog', node: 'db1', schedule: '0 4 * * *', parts: [{ file: 'blog.sql', run: 'echo blog' }] },
];

interface Healthy {
  ms: number | null;
  last: { code: number | null; stdout: string; stderr: string };
}

/** Poll `bysu status --json` until it exits 0 with no problem listed, or the bound passes. */
async function untilHealthy(cluster: TestCluster, since: number): Promise<Healthy> {
  let last = { code: null as number | null, stdout: '', stderr: '' };
  while (Date.now() - since < BOUND_MS) {
    last = await cluster.bysu(['status', '--json']);
    const report = JSON.parse(last.stdout || '{"apps":[]}') as { apps: { problems: string[] }[] };
    if (last.code === 0 && report.apps.length === 2 && report.apps.every((app) => app.problems.length === 0)) return { ms: Date.now() - since, last };
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  return { ms: null, last };
}

test('Redis back empty: the scheduler re-creates the missing job schedulers on reconnect and on its periodic check', async () => {
  await withCluster(['db1'], async (cluster) => {
    // A check a minute at first: the restart below must be caught by the reconnect alone.
    await cluster.writeConfig(apps, { notify: { staleCheckInterval: '1m' } });
    const scheduler = cluster.startProcess(['scheduler']);
    await waitForLog(scheduler, 'scheduler started', 60_000);
    const first = await cluster.bysu(['status', '--json']);
    assert.equal(first.code, 0, `healthy before the fault:\n${first.stdout}${first.stderr}`);

    // (1) redis-server killed and a fresh, empty one started on the same port.
    let offset = scheduler.output().length;
    await cluster.redis.restart();
    const restarted = Date.now();
    const afterRestart = await untilHealthy(cluster, restarted);
    const restartLog = scheduler.output().slice(offset);
    recordFault({
      kind: 'fault',
      fault: 'Redis restarted empty (no persistence) under a running scheduler',
      expected: `job schedulers re-created by the scheduler itself; status healthy within ${BOUND_MS / 1000} s`,
      observed: afterRestart.ms === null ? `status still unhealthy after ${BOUND_MS / 1000} s: ${afterRestart.last.stdout.slice(0, 300)}` : `status healthy after ${(afterRestart.ms / 1000).toFixed(1)} s`,
      pass: afterRestart.ms !== null && /redis had lost 6 job schedulers/.test(restartLog),
    });
    assert.notEqual(afterRestart.ms, null, `status healthy again within ${BOUND_MS} ms:\n${afterRestart.last.stdout}\n${restartLog}`);
    assert.match(restartLog, /"msg":"redis had lost 6 job schedulers \(app-shop, app-blog, drill-shop, verify-shop, verify-blog, retention-sweep\): re-created \(redis reconnected\)"/);

    // A check every second from here (SIGHUP restarts the timer; its reconcile finds nothing to change).
    await cluster.writeConfig(apps, { notify: { staleCheckInterval: '1s' } });
    offset = scheduler.output().length;
    scheduler.kill('SIGHUP');
    await waitForLog({ output: () => scheduler.output().slice(offset) }, 'job schedulers reconciled');

    // (2) FLUSHALL on a live Redis: no reconnect, the periodic check must catch it.
    offset = scheduler.output().length;
    const client = new Redis(cluster.redis.url);
    try {
      await client.flushall();
    } finally {
      client.disconnect();
    }
    const flushed = Date.now();
    const afterFlush = await untilHealthy(cluster, flushed);
    const flushLog = scheduler.output().slice(offset);
    recordFault({
      kind: 'fault',
      fault: 'FLUSHALL on a live Redis under a running scheduler',
      expected: `the periodic check re-creates the job schedulers; status healthy within ${BOUND_MS / 1000} s`,
      observed: afterFlush.ms === null ? `status still unhealthy after ${BOUND_MS / 1000} s: ${afterFlush.last.stdout.slice(0, 300)}` : `status healthy after ${(afterFlush.ms / 1000).toFixed(1)} s`,
      pass: afterFlush.ms !== null && /re-created \(periodic check\)/.test(flushLog),
    });
    assert.notEqual(afterFlush.ms, null, `status healthy again within ${BOUND_MS} ms:\n${afterFlush.last.stdout}\n${flushLog}`);
    assert.match(flushLog, /"msg":"redis had lost 6 job schedulers \(app-shop, app-blog, drill-shop, verify-shop, verify-blog, retention-sweep\): re-created \(periodic check\)"/);
    // Existing schedulers are never upserted again: one line per loss, not one per check.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assert.equal(scheduler.output().split('\n').filter((line) => line.includes('re-created (')).length, 2, scheduler.output());
  });
});
