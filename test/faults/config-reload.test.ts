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
import { mkdir, open, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { parse, stringify } from 'yaml';
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

/** Whether the process has a handler for SIGHUP (bit 1 of SigCgt in /proc/<pid>/status). */
async function catchesSighup(pid: number): Promise<boolean> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const caught = /^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  return caught !== undefined && (BigInt(`0x${caught}`) & 1n) === 1n;
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
    // A lowered keep applies once the file has been read again, unchanged (a writer may not have been done).
    await waitForLog(up, 'the reload is verified');
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

// Fails before the fix: the half file (`keep: 12` cut after `keep: 1`) was taken at once, and the retention
// sweep then pruned 3 good snapshots to 1 although the finished file said 12 (found by an attack on the reload).
test('bysu up: a SIGHUP while the file is half-written never prunes to the half file', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig([app('shop', { keep: 12 })], { retention: { sweepSchedule: '*/2 * * * * *' } });
    // The apps last, the app's keep its last line: a cut after "keep: 1" still validates.
    const { apps, ...rest } = parse(await readFile(cluster.configFile, 'utf8')) as Record<string, unknown>;
    const full = stringify({ ...rest, apps: [{ name: 'shop', node: 'db1', schedule: NEVER, parts: [{ file: 'shop.txt', run: 'echo shop' }], keep: 12 }] });
    assert.ok(Array.isArray(apps));
    await writeFile(cluster.configFile, full);
    const cut = full.lastIndexOf('keep: 12') + 'keep: 1'.length;
    assert.ok(full.slice(cut).trim() === '2', full);
    const up = cluster.startProcess(['up']);
    await waitForLog(up, 'bysu up: scheduler, workers and dashboard running');
    for (let round = 0; round < 3; round += 1) {
      await snapshot(cluster, 'shop');
      await new Promise((resolve) => setTimeout(resolve, 1100)); // one snapshot id per second
    }
    // Rewritten in place (`cat edited.yaml > bysu.yaml`), by a writer that stalls half-way for longer than
    // the reload waits for the file to be quiet; the SIGHUP lands meanwhile.
    const handle = await open(cluster.configFile, 'w');
    await handle.write(full.slice(0, cut));
    await handle.sync();
    process.kill(up.pid!, 'SIGHUP');
    await waitForLog(up, '"msg":"config reloaded"');
    await new Promise((resolve) => setTimeout(resolve, 500));
    await handle.write(full.slice(cut));
    await handle.close();
    await waitForLog(up, 'changed just after the reload');
    await new Promise((resolve) => setTimeout(resolve, 6000)); // three sweeps
    const left = await snapshotsOf(cluster, 'shop');
    recordFault({
      kind: 'fault',
      fault: 'SIGHUP while bysu.yaml is rewritten in place and the writer stalls half-way (keep: 12 cut to keep: 1), sweep every 2 s',
      expected: 'the 3 snapshots stay; the finished file is read again and reloaded',
      observed: `${left.length} snapshot(s) left; ${up.output().includes('changed just after the reload') ? 'reloaded the finished file' : 'did not read the file again'}`,
      pass: left.length === 3,
      lost: 3 - left.length,
      partialVisible: 0,
    });
    assert.equal(left.length, 3, up.output());
  });
});

// Fails before the fix: a SIGHUP before the process installed its handler killed it (Node's default action),
// and a reload to an unmarked repository was taken although a start refuses it.
test('a SIGHUP while a worker starts does not kill it; a reload a start would refuse (unmarked repository) is refused', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig([app('shop')]);
    const worker = cluster.startWorker();
    // As early as JavaScript can catch it: once the process catches SIGHUP at all (bin/bysu.js's first line),
    // long before the worker has loaded its modules, read its config or reached Redis.
    await waitUntil('the process to catch SIGHUP', async () => catchesSighup(worker.pid!), 10_000);
    process.kill(worker.pid!, 'SIGHUP');
    await waitForLog(worker, 'snapshot worker started');
    await waitForLog(worker, 'a SIGHUP came while starting');
    assert.equal(worker.exitCode, null, worker.output());
    assert.equal(worker.signalCode, null, worker.output());

    const unmarked = path.join(cluster.dir, 'not-mounted');
    await mkdir(unmarked);
    await cluster.writeConfig([app('shop')], { repository: unmarked });
    await hup(worker, 'config reload refused', 1);
    assert.match(worker.output(), /has no BYSU marker/);
    await cluster.writeConfig([app('shop')]); // what the CLI reads: the repository the worker still writes
    await snapshot(cluster, 'shop');
    assert.equal((await snapshotsOf(cluster, 'shop')).length, 1);
    assert.deepEqual(await readdir(unmarked), [], 'nothing was written to the unmarked directory');
  });
});

// Fails before the fix: the reload took a dashboard.host that is not an address of this machine (it applies at the
// next restart, which then failed with EADDRNOTAVAIL), and refused an emptied password without saying that the
// running host, not the file's, was the reason (found by a second attack).
test('bysu dashboard: a reload refuses an address this machine does not have, and says when the running host is the reason', async () => {
  await withCluster(['db1'], async (cluster) => {
    const port = await freePort();
    await cluster.writeConfig([app('shop')], { dashboard: { host: '0.0.0.0', port, password: 'secret' } });
    const dashboard = cluster.startProcess(['dashboard']);
    await waitForLog(dashboard, 'dashboard started');
    await cluster.writeConfig([app('shop')], { dashboard: { host: '192.0.2.10', port, password: 'secret' } });
    await hup(dashboard, 'config reload refused', 1);
    assert.match(dashboard.output(), /dashboard\.host: 192\.0\.2\.10 is not an address of this machine/);
    await cluster.writeConfig([app('shop')], { dashboard: { host: '127.0.0.1', port, password: '' } });
    await hup(dashboard, 'config reload refused', 2);
    assert.match(dashboard.output(), /dashboard\.password: required .*\(so it would run until a restart, with the running dashboard\.host; restart to apply the file\)/);
    assert.equal((await fetch(`http://127.0.0.1:${port}/board/`)).status, 401, 'the password is still asked for');
  });
});
