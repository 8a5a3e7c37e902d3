/**
 * BYSU on its own, with real processes: the scheduler makes snapshots on a
 * 2-second schedule, retention keeps 2, a node that starts failing leaves the
 * kept snapshots untouched and turns status to failing (exit 1), the webhook
 * and ping URLs hear about the failure once and about the recovery, and an app
 * whose snapshot is older than staleAfter is reported stale once.
 */
import assert from 'node:assert/strict';
import { readdir, readlink, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { waitForLog, withCluster, type TestCluster } from '../helpers/cluster.ts';
import { startHttpRecorder, type HttpRecorder } from '../helpers/http-recorder.ts';
import { waitUntil } from '../helpers/processes.ts';

async function snapshotIds(cluster: TestCluster, app: string): Promise<string[]> {
  const names = await readdir(path.join(cluster.repository, app)).catch(() => [] as string[]);
  return names.filter((name) => /^\d{8}T\d{6}Z/.test(name)).sort();
}

async function commits(cluster: TestCluster, app: string): Promise<number> {
  return (await readdir(path.join(cluster.repository, app, '.commits')).catch(() => [] as string[])).length;
}

async function statusOf(cluster: TestCluster): Promise<{ code: number | null; report: { apps: { app: string; state: string; lastFailure: { reason: string } | null; problems: string[] }[]; scheduler: unknown } }> {
  const result = await cluster.bysu(['status', '--json']);
  return { code: result.code, report: JSON.parse(result.stdout) };
}

const hookEvents = (recorder: HttpRecorder, app: string, event: string) =>
  recorder.requests.filter((request) => request.method === 'POST' && request.path === '/hook' && (request.body as { app?: string; event?: string }).app === app && (request.body as { event?: string }).event === event);

test('scheduled snapshots, keep 2, a failing node, alerts once, recovery', async () => {
  const recorder = await startHttpRecorder();
  try {
    await withCluster(['db1'], async (cluster) => {
      const node = cluster.nodes[0]!;
      await cluster.writeConfig(
        [{
          name: 'tick',
          node: 'db1',
          schedule: '*/2 * * * * *',
          keep: 2,
          attempts: 1,
          ping: `${recorder.url}/ping/tick`,
          parts: [{ file: 'tick.sql', run: 'if [ -f "$NODE_DIR/broken" ]; then echo "node is broken" >&2; exit 1; fi; echo "-- dump $(date +%s%N)"' }],
        }],
        { notify: { webhook: `${recorder.url}/hook`, staleCheckInterval: '1s' } },
      );
      for (const child of [cluster.startWorker(), cluster.startProcess(['worker', 'retention'])]) await waitForLog(child, 'worker started');
      const before = await statusOf(cluster);
      assert.equal(before.code, 1, 'no scheduler yet: status fails');
      assert.equal(before.report.scheduler, null);
      assert.match(before.report.apps[0]!.problems[0]!, /no job scheduler/);

      const scheduler = cluster.startProcess(['scheduler']);
      await waitForLog(scheduler, 'scheduler started');

      // At least four scheduled snapshots, and retention has cut them to two.
      await waitUntil('4 scheduled commits', async () => (await commits(cluster, 'tick')) >= 4);
      const kept = await waitUntil('retention to keep 2', async () => {
        const ids = await snapshotIds(cluster, 'tick');
        return ids.length === 2 ? ids : null;
      });
      assert.equal(await readlink(path.join(cluster.repository, 'tick', 'latest')), kept[1]);
      const healthy = await statusOf(cluster);
      assert.equal(healthy.code, 0, JSON.stringify(healthy.report));
      assert.equal(healthy.report.apps[0]!.state, 'ok');
      await recorder.waitFor((request) => request.path === '/ping/tick');

      // The node breaks: several failed nights (ticks) in a row.
      await writeFile(path.join(node.dir, 'broken'), '');
      const failed = await recorder.waitFor((request) => request.path === '/hook' && (request.body as { event?: string }).event === 'failed');
      assert.equal((failed.body as { app: string }).app, 'tick');
      assert.match((failed.body as { reason: string }).reason, /exited with code 1[\s\S]*node is broken/);
      await recorder.waitFor((request) => request.path === '/ping/tick/fail');
      const frozen = await snapshotIds(cluster, 'tick');
      await new Promise((resolve) => setTimeout(resolve, 6000)); // three more failed ticks
      assert.deepEqual(await snapshotIds(cluster, 'tick'), frozen, 'failed runs delete nothing: the kept snapshots stay');
      assert.equal(frozen.length, 2);
      assert.equal(await readlink(path.join(cluster.repository, 'tick', 'latest')), frozen[1]);
      assert.equal(hookEvents(recorder, 'tick', 'failed').length, 1, 'one alert for the change of state, not one per failure');
      const failing = await statusOf(cluster);
      assert.equal(failing.code, 1);
      assert.equal(failing.report.apps[0]!.state, 'failing');
      assert.match(failing.report.apps[0]!.lastFailure!.reason, /node is broken/);
      const table = await cluster.bysu(['status']);
      assert.equal(table.code, 1);
      assert.match(table.stdout, /^tick\s+FAILING\s+\d{8}T\d{6}Z/m);

      // It recovers.
      await rm(path.join(node.dir, 'broken'));
      await recorder.waitFor((request) => request.path === '/hook' && (request.body as { event?: string }).event === 'recovered');
      const recovered = await waitUntil('status ok again', async () => {
        const current = await statusOf(cluster);
        return current.code === 0 ? current : null;
      });
      assert.equal(recovered.report.apps[0]!.state, 'ok');
      assert.equal(hookEvents(recorder, 'tick', 'recovered').length, 1);
    });
  } finally {
    await recorder.close();
  }
});

test('an app whose newest snapshot is older than staleAfter is stale: status exit 1, one alert', async () => {
  const recorder = await startHttpRecorder();
  try {
    await withCluster(['db1'], async (cluster) => {
      await cluster.writeConfig(
        // 8 s: room for `bysu status` to start on a loaded 2-core machine (with 3 s it once ran 4.3 s after the commit).
        [{ name: 'lazy', node: 'db1', schedule: '0 3 * * *', staleAfter: '8s', parts: [{ file: 'a.sql', run: 'echo dump' }] }],
        { notify: { webhook: `${recorder.url}/hook`, staleCheckInterval: '1s' } },
      );
      const worker = cluster.startWorker();
      const scheduler = cluster.startProcess(['scheduler']);
      await waitForLog(worker, 'worker started');
      await waitForLog(scheduler, 'scheduler started');
      assert.equal((await cluster.bysu(['snapshot', 'lazy', '--wait'])).code, 0);
      const fresh = await statusOf(cluster);
      assert.equal(fresh.code, 0, JSON.stringify(fresh.report));
      assert.equal(fresh.report.apps[0]!.state, 'ok');

      // The snapshot's staleness (not one announced before it, when the worker started late: see below).
      const alert = await recorder.waitFor((request) => request.path === '/hook' && (request.body as { event?: string }).event === 'stale' && (request.body as { lastSnapshot?: unknown }).lastSnapshot != null, 25_000);
      assert.equal((alert.body as { app: string }).app, 'lazy');
      const stale = await statusOf(cluster);
      assert.equal(stale.code, 1);
      assert.equal(stale.report.apps[0]!.state, 'stale');
      await new Promise((resolve) => setTimeout(resolve, 2500));
      // Counted from the snapshot on: on a loaded machine the worker can start more than staleAfter after the
      // scheduler first saw the app, which is rightly announced as stale (nothing since configured) and then
      // recovered by the snapshot; that change of state is not a repeat.
      const sinceSnapshot = hookEvents(recorder, 'lazy', 'stale').filter((request) => (request.body as { lastSnapshot?: unknown }).lastSnapshot != null);
      assert.equal(sinceSnapshot.length, 1, 'stale is announced once');
    });
  } finally {
    await recorder.close();
  }
});
