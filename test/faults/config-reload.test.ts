/**
 * SIGHUP reloads the config in every long-running process, and each job,
 * request and check then runs with the new one: with real processes, a real
 * redis-server and a real sshd node, the cases an operator ran into when
 * SIGHUP reached only the scheduler.
 *
 * Each test fails on the code before the reload reached the workers and the
 * dashboard: there `bysu up`'s retention worker logged "app is not in this
 * worker's config" for an app added by the reload and kept all its snapshots,
 * kept 3 snapshots after `keep` went from 3 to 1, its snapshot worker never
 * sent a failure to a webhook added by the reload, and `bysu dashboard`
 * ignored SIGHUP (a new API token was refused until a restart).
 */
import assert from 'node:assert/strict';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { waitForLog, withCluster, type TestCluster } from '../helpers/cluster.ts';
import { recordFault } from '../helpers/fault-report.ts';
import { startHttpRecorder } from '../helpers/http-recorder.ts';
import { freePort, waitUntil } from '../helpers/processes.ts';

/** Never due while the test runs: snapshots are taken with `bysu snapshot`. */
const NEVER = '0 0 1 1 *';

const app = (name: string, extra: Record<string, unknown> = {}) => ({ name, node: 'db1', schedule: NEVER, parts: [{ file: `${name}.txt`, run: `echo ${name}` }], ...extra });

async function snapshotsOf(cluster: TestCluster, name: string): Promise<string[]> {
  return (await readdir(path.join(cluster.repository, name)).catch(() => [] as string[])).filter((entry) => /^\d{8}T\d{6}Z/.test(entry)).sort();
}

/** Send SIGHUP and wait for the process to say how the reload went (the n-th such line since it started). */
async function hup(child: { pid?: number; output: () => string }, outcome: string, count: number): Promise<void> {
  process.kill(child.pid!, 'SIGHUP');
  await waitUntil(`reload #${count} ("${outcome}")`, async () => child.output().split(outcome).length - 1 >= count, 20_000).catch((error: Error) => {
    throw new Error(`${error.message}; the process said:\n${child.output()}`);
  });
}

async function snapshot(cluster: TestCluster, name: string): Promise<void> {
  const result = await cluster.bysu(['snapshot', name, '--wait']);
  assert.equal(result.code, 0, result.stdout + result.stderr);
}

test('bysu up: an app added and a keep lowered by SIGHUP are pruned by the new config; a broken file is refused and the old one kept', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig([app('shop', { keep: 3 })]);
    const up = cluster.startProcess(['up']);
    await waitForLog(up, 'bysu up: scheduler, workers and dashboard running');
    for (let round = 0; round < 3; round += 1) await snapshot(cluster, 'shop');
    assert.equal((await snapshotsOf(cluster, 'shop')).length, 3);

    // A file that no longer validates: refused with its errors, the process keeps the config it has.
    await writeFile(cluster.configFile, 'apps: [ {name: shop\n');
    await hup(up, 'config reload refused', 1);
    const refusedLine = up.output().split('\n').find((line) => line.includes('config reload refused')) ?? '';
    await cluster.writeConfig([app('shop', { keep: 3 })]);
    await snapshot(cluster, 'shop');
    await waitUntil('retention with the old keep 3', async () => (await snapshotsOf(cluster, 'shop')).length === 3, 20_000);

    // Lower shop's keep and add an app, as an operator would, then SIGHUP.
    await cluster.writeConfig([app('shop', { keep: 1 }), app('blog', { keep: 1 })]);
    await hup(up, '"msg":"config reloaded"', 1);
    await snapshot(cluster, 'shop');
    await snapshot(cluster, 'blog');
    await snapshot(cluster, 'blog');
    let shop: string[] = [];
    let blog: string[] = [];
    const settled = await waitUntil('retention with the reloaded config', async () => {
      shop = await snapshotsOf(cluster, 'shop');
      blog = await snapshotsOf(cluster, 'blog');
      return shop.length === 1 && blog.length === 1;
    }, 20_000).then(() => true, () => false);
    const notInConfig = up.output().includes('is not in this worker');
    recordFault({
      kind: 'fault',
      fault: 'bysu up reloaded by SIGHUP: keep 3 → 1 for one app, a new app with keep 1; before that a file with broken YAML',
      expected: 'broken file refused, old config kept; afterwards both apps pruned to 1 snapshot',
      observed: `broken file: ${refusedLine ? 'refused' : 'not refused'}; shop ${shop.length}, blog ${blog.length} snapshot(s)${notInConfig ? '; retention said the app is not in its config' : ''}`,
      pass: settled && refusedLine !== '' && !notInConfig,
      lost: 0,
      partialVisible: 0,
    });
    assert.match(refusedLine, /not valid YAML/, 'the refusal names what is wrong');
    assert.ok(settled, `shop ${shop.join(', ')}; blog ${blog.join(', ')}\n${up.output()}`);
    assert.ok(!notInConfig, up.output());
    assert.equal(up.exitCode, null, 'bysu up kept running through both reloads');
  });
});

test('bysu up: a webhook added by SIGHUP receives the next failure; a key that needs a restart says so', async () => {
  const hook = await startHttpRecorder();
  try {
    await withCluster(['db1'], async (cluster) => {
      const broken = app('broken', { attempts: 1, parts: [{ file: 'b.sql', run: 'echo "cannot dump" >&2; exit 3' }] });
      const port = await freePort();
      await cluster.writeConfig([broken], { dashboard: { host: '127.0.0.1', port } });
      const up = cluster.startProcess(['up']);
      await waitForLog(up, 'bysu up: scheduler, workers and dashboard running');
      await cluster.writeConfig([broken], { dashboard: { host: '127.0.0.1', port: port + 1 }, notify: { webhook: hook.url } });
      await hup(up, '"msg":"config reloaded"', 1);
      const failed = await cluster.bysu(['snapshot', 'broken', '--wait']);
      const alert = await hook.waitFor((request) => (request.body as { event?: string } | null)?.event === 'failed', 20_000).catch(() => null);
      const restartLine = up.output().split('\n').find((line) => line.includes('at the next restart')) ?? '';
      recordFault({
        kind: 'fault',
        fault: 'bysu up reloaded by SIGHUP with a webhook added (and dashboard.port changed); then a snapshot fails',
        expected: 'the new webhook receives "failed"; the port change is named as needing a restart',
        observed: `webhook ${alert ? `received ${JSON.stringify((alert.body as { event: string }).event)}` : 'received nothing'}; ${restartLine ? 'port change named' : 'port change not mentioned'}`,
        pass: alert !== null && restartLine.includes('dashboard.port'),
        lost: 0,
        partialVisible: 0,
      });
      assert.equal(failed.code, 1, failed.stdout);
      assert.ok(alert, `no failure reached the webhook added by the reload:\n${up.output()}`);
      assert.equal((alert.body as { app: string }).app, 'broken');
      assert.match(restartLine, /dashboard\.port/);
      // The dashboard still listens where it started.
      assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
    });
  } finally {
    await hook.close();
  }
});

test('bysu dashboard: an API token set by SIGHUP is accepted at once; an exposure the start would refuse is refused', async () => {
  await withCluster(['db1'], async (cluster) => {
    const port = await freePort();
    await cluster.writeConfig([app('shop')], { dashboard: { host: '127.0.0.1', port, user: 'admin', password: 'first-password' } });
    const dashboard = cluster.startProcess(['dashboard']);
    await waitForLog(dashboard, 'dashboard started');
    const api = (token: string) => fetch(`http://127.0.0.1:${port}/api/apps`, { headers: { authorization: `Bearer ${token}` } });
    const before = (await api('new-token-0123456789')).status;

    await cluster.writeConfig([app('shop'), app('blog')], { dashboard: { host: '127.0.0.1', port, user: 'admin', password: 'first-password', apiToken: 'new-token-0123456789' } });
    await hup(dashboard, '"msg":"config reloaded"', 1);
    const after = await api('new-token-0123456789');
    const apps = after.status === 200 ? ((await after.json()) as { apps: { app: string }[] }).apps.map((entry) => entry.app) : [];

    // A reload that would leave it open beyond loopback without a password is refused: it keeps its password.
    await cluster.writeConfig([app('shop')], { dashboard: { host: '0.0.0.0', port, user: 'admin', password: '' } });
    await hup(dashboard, 'config reload refused', 1);
    const board = await fetch(`http://127.0.0.1:${port}/board/`);
    assert.equal(before, 403, 'the API was off before the reload');
    assert.equal(after.status, 200, dashboard.output());
    assert.deepEqual(apps.sort(), ['blog', 'shop'], 'the API reads the reloaded apps');
    assert.equal(board.status, 401, 'the password is still required');
    assert.match(dashboard.output(), /dashboard\.password: required when dashboard\.host is not a loopback address/);
  });
});
