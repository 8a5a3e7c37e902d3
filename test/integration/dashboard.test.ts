/**
 * `bysu up` end to end and the HTTP surface it serves: basic auth in front of
 * Bull Board, /healthz with Redis up and down, /metrics parsed as Prometheus
 * text, and the read-only API with its bearer token, streamed files, Range
 * requests and traversal attempts.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import { readFile, rename, symlink, unlink, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { openCluster, waitForLog, type TestCluster } from '../helpers/cluster.ts';
import { freePort } from '../helpers/processes.ts';

const PASSWORD = 'correct horse battery staple';
const TOKEN = 'staging-refresh-token-0123456789';

/** GET a raw request target (no client-side normalisation of `..`); resolve with the status and body. */
function rawGet(target: string, headers: Record<string, string>): Promise<{ code: number; body: string }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const request = http.request({ host: url.hostname, port: url.port, path: target, headers }, (response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => resolve({ code: response.statusCode ?? 0, body }));
    });
    request.on('error', reject);
    request.end();
  });
}

let base = '';

interface MetricFamily {
  name: string;
  metrics: { value: string; labels?: Record<string, string> }[];
}

describe('bysu up: dashboard, health, metrics, API', () => {
  let cluster: TestCluster;
  let close: (() => Promise<void>) | undefined;
  let up: ReturnType<TestCluster['startProcess']>;

  const basic = (user: string, password: string) => ({ authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` });
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const api = (route: string, headers: Record<string, string> = bearer(TOKEN)) => fetch(`${base}api${route}`, { headers });

  before(async () => {
    ({ cluster, close } = await openCluster(['db1']));
    const node = cluster.nodes[0]!;
    await mkdir(path.join(node.dir, 'www'), { recursive: true });
    await writeFile(path.join(node.dir, 'www/index.html'), '<h1>shop</h1>\n'.repeat(500));
    const port = await freePort();
    await cluster.writeConfig(
      [
        { name: 'shop', node: 'db1', parts: [{ file: 'shop.sql', run: "printf 'SELECT 1;\\n'" }, { file: 'www.tar', run: 'tar -C "$NODE_DIR" -cf - www' }, { file: 'empty.sql', run: 'true' }] },
        { name: 'broken', node: 'db1', attempts: 1, parts: [{ file: 'b.sql', run: 'echo "cannot dump" >&2; exit 2' }] },
      ],
      { dashboard: { host: '127.0.0.1', port, user: 'admin', password: PASSWORD, apiToken: TOKEN } },
    );
    up = cluster.startProcess(['up']);
    await waitForLog(up, 'bysu up: scheduler, workers and dashboard running');
    base = `http://127.0.0.1:${port}/`;
    const snapshot = await cluster.bysu(['snapshot', '--all', '--wait']);
    assert.equal(snapshot.code, 1, snapshot.stdout);
    assert.match(snapshot.stdout, /shop: committed/);
  });

  after(async () => {
    await close?.();
  });

  test('the overview at / and Bull Board at /board/ need the right basic-auth credentials', async () => {
    for (const page of [base, `${base}apps/shop`]) {
      assert.equal((await fetch(page, { redirect: 'manual' })).status, 401, page);
      assert.equal((await fetch(page, { headers: basic('admin', 'wrong') })).status, 401, page);
      const shown = await fetch(page, { headers: basic('admin', PASSWORD) });
      assert.equal(shown.status, 200, page);
      assert.match(shown.headers.get('content-type') ?? '', /^text\/html/);
      assert.match(await shown.text(), /BYSU backups/);
    }
    const board = `${base}board/`;
    const none = await fetch(board);
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate') ?? '', /^Basic realm="bysu"/);
    assert.equal((await fetch(board, { headers: basic('admin', 'wrong') })).status, 401);
    assert.equal((await fetch(board, { headers: basic('root', PASSWORD) })).status, 401);
    const ok = await fetch(board, { headers: basic('admin', PASSWORD) });
    assert.equal(ok.status, 200);
    assert.match(await ok.text(), /BYSU backups/);
    // Bull Board's own API answers under /board, with the queues in it (and not behind BYSU's bearer token).
    assert.equal((await fetch(`${board}api/queues`)).status, 401);
    const queues = await fetch(`${board}api/queues`, { headers: basic('admin', PASSWORD) });
    assert.equal(queues.status, 200);
    const names = ((await queues.json()) as { queues: { name: string }[] }).queues.map((queue) => queue.name).sort();
    assert.deepEqual(names, ['drill', 'mirror', 'retention', 'snapshot', 'verify']);
  });

  test('/healthz and /metrics', async () => {
    const health = await fetch(`${base}healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual((await health.json() as { redis: string }).redis, 'up');

    const response = await fetch(`${base}metrics`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain/);
    const families = parsePrometheusTextFormat(await response.text()) as MetricFamily[];
    const value = (name: string, labels: Record<string, string> = {}) => {
      const family = families.find((candidate) => candidate.name === name);
      assert.ok(family, `metric ${name} exists`);
      const metric = family.metrics.find((candidate) => Object.entries(labels).every(([key, wanted]) => candidate.labels?.[key] === wanted));
      assert.ok(metric, `${name}${JSON.stringify(labels)} exists`);
      return Number(metric.value);
    };
    const manifest = JSON.parse(await readFile(path.join(cluster.repository, 'shop', 'latest', 'manifest.json'), 'utf8'));
    assert.equal(value('bysu_app_last_success_timestamp_seconds', { app: 'shop' }), Date.parse(manifest.finishedAt) / 1000);
    assert.equal(value('bysu_app_last_snapshot_bytes', { app: 'shop' }), manifest.bytes);
    assert.ok(value('bysu_app_last_snapshot_duration_seconds', { app: 'shop' }) >= 0);
    assert.equal(value('bysu_app_failures_total', { app: 'broken' }), 1);
    assert.equal(value('bysu_app_failures_total', { app: 'shop' }), 0);
    assert.equal(value('bysu_app_state', { app: 'broken', state: 'failing' }), 1);
    assert.equal(value('bysu_app_state', { app: 'shop', state: 'ok' }), 1);
    assert.ok(value('bysu_queue_jobs', { queue: 'snapshot', state: 'completed' }) >= 1);
    assert.equal(value('bysu_queue_jobs', { queue: 'snapshot', state: 'failed' }), 1);
    assert.equal(value('bysu_scheduler_up'), 1);
    assert.equal(value('bysu_repository_ok'), 1, 'the repository carries its marker');
    assert.ok(value('bysu_scheduler_heartbeat_age_seconds') < 60);
  });

  test('the API needs the bearer token and lists apps and snapshots', async () => {
    assert.equal((await api('/apps', {})).status, 401);
    assert.equal((await api('/apps', bearer('wrong'))).status, 401);
    assert.equal((await api('/apps', basic('admin', PASSWORD))).status, 401);
    const apps = await (await api('/apps')).json() as { apps: { app: string; state: string; latest: { id: string } | null }[] };
    assert.deepEqual(apps.apps.map((app) => [app.app, app.state]), [['shop', 'ok'], ['broken', 'failing']]);
    const snapshots = await (await api('/apps/shop/snapshots')).json() as { id: string; files: { file: string }[] }[];
    assert.equal(snapshots.length, 1);
    assert.deepEqual(snapshots[0]!.files.map((file) => file.file), ['shop.sql', 'www.tar', 'empty.sql']);
    const manifest = await api('/apps/shop/latest/manifest.json');
    assert.equal(manifest.status, 200);
    assert.equal((await manifest.json() as { id: string }).id, snapshots[0]!.id);
    assert.equal((await api('/apps/nosuch/snapshots')).status, 404);
  });

  test('files stream with Content-Length and honour Range', async () => {
    const onDisk = await readFile(path.join(cluster.repository, 'shop', 'latest', 'www.tar'));
    const whole = await api('/apps/shop/latest/www.tar');
    assert.equal(whole.status, 200);
    assert.equal(whole.headers.get('content-length'), String(onDisk.length));
    assert.equal(whole.headers.get('accept-ranges'), 'bytes');
    assert.ok(Buffer.from(await whole.arrayBuffer()).equals(onDisk));

    const first = await api('/apps/shop/latest/www.tar', { ...bearer(TOKEN), range: 'bytes=0-99' });
    assert.equal(first.status, 206);
    assert.equal(first.headers.get('content-range'), `bytes 0-99/${onDisk.length}`);
    assert.ok(Buffer.from(await first.arrayBuffer()).equals(onDisk.subarray(0, 100)));
    const tail = await api('/apps/shop/latest/www.tar', { ...bearer(TOKEN), range: 'bytes=-10' });
    assert.equal(tail.status, 206);
    assert.ok(Buffer.from(await tail.arrayBuffer()).equals(onDisk.subarray(onDisk.length - 10)));
    const from = await api('/apps/shop/latest/www.tar', { ...bearer(TOKEN), range: `bytes=${onDisk.length - 5}-` });
    assert.equal((await from.arrayBuffer()).byteLength, 5);
    const beyond = await api('/apps/shop/latest/www.tar', { ...bearer(TOKEN), range: `bytes=${onDisk.length}-` });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers.get('content-range'), `bytes */${onDisk.length}`);
    const backwards = await api('/apps/shop/latest/www.tar', { ...bearer(TOKEN), range: 'bytes=5-2' });
    assert.equal(backwards.status, 200, 'an invalid range is ignored');
    const one = await api('/apps/shop/latest/www.tar', { ...bearer(TOKEN), range: 'bytes=0-0' });
    assert.equal(one.status, 206);
    assert.equal((await one.arrayBuffer()).byteLength, 1);

    // Resuming a download of `latest`: only while it is still the same snapshot.
    const etag = whole.headers.get('etag')!;
    assert.equal(whole.headers.get('x-bysu-snapshot'), etag.slice(1, etag.lastIndexOf('-')));
    const resumed = await api('/apps/shop/latest/www.tar', { ...bearer(TOKEN), range: 'bytes=10-', 'if-range': etag });
    assert.equal(resumed.status, 206);
    const changed = await api('/apps/shop/latest/www.tar', { ...bearer(TOKEN), range: 'bytes=10-', 'if-range': '"20200101T000000Z-1"' });
    assert.equal(changed.status, 200, 'If-Range names another snapshot: the whole file');
    assert.equal((await changed.arrayBuffer()).byteLength, onDisk.length);
    assert.equal((await api('/apps/shop/latest/www.tar', { ...bearer(TOKEN), 'if-match': '"20200101T000000Z-1"' })).status, 412);

    // A snapshot can be named, so that a client can pin it.
    const id = whole.headers.get('x-bysu-snapshot')!;
    const pinned = await api(`/apps/shop/snapshots/${id}/www.tar`);
    assert.equal(pinned.status, 200);
    assert.ok(Buffer.from(await pinned.arrayBuffer()).equals(onDisk));
    assert.equal((await api('/apps/shop/snapshots/20200101T000000Z/www.tar')).status, 404);
    assert.equal((await api('/apps/shop/snapshots/..%2f..%2f/www.tar')).status, 404);

    const head = await fetch(`${base}api/apps/shop/latest/www.tar`, { method: 'HEAD', headers: bearer(TOKEN) });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(onDisk.length));
    const empty = await api('/apps/shop/latest/empty.sql', { ...bearer(TOKEN), range: 'bytes=-5' });
    assert.equal(empty.status, 200);
    assert.equal(empty.headers.get('content-length'), '0');
    assert.equal((await api('/apps/shop/latest/%E0%A4%A')).status, 400, 'a malformed URL is a client error');
  });

  test('Bull Board is read-only: no job can be added or edited through it', async () => {
    const add = await fetch(`${base}board/api/queues/snapshot/add`, {
      method: 'POST',
      headers: { ...basic('admin', PASSWORD), 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'snapshot', data: { app: '../../escape', node: { name: 'x', host: '127.0.0.1', port: 1, user: 'root' }, parts: [] } }),
    });
    assert.ok(add.status >= 400 && add.status < 500, `adding a job is refused (${add.status})`);
    const queues = await (await fetch(`${base}board/api/queues`, { headers: basic('admin', PASSWORD) })).json() as { queues: { name: string; readOnlyMode: boolean }[] };
    assert.ok(queues.queues.every((queue) => queue.readOnlyMode), 'both queues are shown read-only');
  });

  test('no request leaves the repository: traversal, absolute paths, planted symlinks, unlisted files', async () => {
    // Raw request targets, not normalised by a client.
    for (const target of ['/api/apps/shop/latest/../../../../etc/passwd', '/api/apps/../../etc/passwd', '/api/apps/shop/latest/..\\..\\bysu.yaml']) {
      const status = await rawGet(target, bearer(TOKEN));
      assert.notEqual(status.code, 200, target);
      assert.doesNotMatch(status.body, /root:x:0|redis:/, target);
    }
    for (const route of [
      '/apps/shop/latest/..%2f..%2fbysu.yaml',
      '/apps/shop/latest/..%2F..%2F..%2Fetc%2Fpasswd',
      '/apps/shop/latest/%2Fetc%2Fpasswd',
      '/apps/..%2f..%2fetc/snapshots',
      '/apps/shop%2f..%2f..%2f/latest/manifest.json',
      '/apps/shop/latest/.commits',
    ]) {
      const response = await api(route);
      assert.equal(response.status, 404, route);
      assert.doesNotMatch(await response.text(), /root:x:0/, route);
    }
    const snapshotDir = path.join(cluster.repository, 'shop', 'latest');
    await symlink('/etc/passwd', path.join(snapshotDir, 'evil.sql'));
    assert.equal((await api('/apps/shop/latest/evil.sql')).status, 404, 'a file the manifest does not list');
    await rename(path.join(snapshotDir, 'shop.sql'), path.join(snapshotDir, 'shop.sql.orig'));
    await symlink('/etc/passwd', path.join(snapshotDir, 'shop.sql'));
    try {
      const planted = await api('/apps/shop/latest/shop.sql');
      assert.equal(planted.status, 404, 'a listed name that is now a symlink is not followed');
      assert.doesNotMatch(await planted.text(), /root:x:0/);
    } finally {
      await unlink(path.join(snapshotDir, 'shop.sql'));
      await unlink(path.join(snapshotDir, 'evil.sql'));
      await rename(path.join(snapshotDir, 'shop.sql.orig'), path.join(snapshotDir, 'shop.sql'));
    }
    const oversized = await fetch(`${base}api/apps`, { headers: { ...bearer(TOKEN), 'x-padding': 'x'.repeat(40_000) } }).catch((error: Error) => error);
    assert.ok(oversized instanceof Error || oversized.status === 431, 'oversized headers are refused');
  });

  test('/healthz says 503 while Redis is down, /metrics still answers, and both recover', async () => {
    await cluster.redis.stop();
    try {
      const started = Date.now();
      const down = await fetch(`${base}healthz`);
      assert.equal(down.status, 503);
      assert.equal((await down.json() as { redis: string }).redis, 'down');
      assert.ok(Date.now() - started < 5000, 'answers promptly');
      const metrics = await fetch(`${base}metrics`);
      assert.equal(metrics.status, 200, 'a Redis outage must show in the metrics, not blank them');
      const text = await metrics.text();
      assert.match(text, /^bysu_redis_up 0$/m);
      assert.match(text, /^bysu_app_last_success_timestamp_seconds\{app="shop"\} \d/m, 'what the repository knows is still exported');
      // The overview too: the apps as the repository knows them, and a line saying what is unknown.
      const overview = await fetch(base, { headers: basic('admin', PASSWORD) });
      assert.equal(overview.status, 200);
      const page = await overview.text();
      assert.match(page, /<div class="banner">Redis unreachable at redis:\/\/127\.0\.0\.1:\d+\/0: failures, next runs and the scheduler are unknown/);
      assert.match(page, /apps\/shop">shop<\/a>[\s\S]*\d{8}T\d{6}Z/, 'shop and its newest snapshot');
      assert.ok(Date.now() - started < 15_000, 'the page answers promptly with Redis down');
    } finally {
      await cluster.redis.start();
    }
    const deadline = Date.now() + 15_000;
    let status = 0;
    while (Date.now() < deadline && status !== 200) {
      status = (await fetch(`${base}healthz`)).status;
      if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 300));
    }
    assert.equal(status, 200);
  });

  test('SIGTERM stops bysu up cleanly', async () => {
    const exited = once(up, 'exit');
    up.kill('SIGTERM');
    const [code] = await exited;
    assert.equal(code, 0, up.output().slice(-2000));
  });
});

test('without a password the dashboard answers only to a loopback Host; a port in use stops bysu up before it takes a job', async () => {
  const { cluster, close } = await openCluster(['db1']);
  try {
    const port = await freePort();
    await cluster.writeConfig([{ name: 'shop', node: 'db1', parts: [{ file: 'a.sql', run: 'echo a' }] }], { dashboard: { host: '127.0.0.1', port, password: '' } });
    const dashboard = cluster.startProcess(['dashboard']);
    await waitForLog(dashboard, 'dashboard started');
    base = `http://127.0.0.1:${port}/`;
    assert.equal((await rawGet('/board/', { host: `127.0.0.1:${port}` })).code, 200);
    assert.equal((await rawGet('/board/', { host: `localhost:${port}` })).code, 200);
    const rebound = await rawGet('/board/api/queues', { host: `attacker.example:${port}` });
    assert.equal(rebound.code, 421, 'a rebound DNS name is refused');

    // The port is taken (by that dashboard): `bysu up` must fail before its workers take the waiting job.
    await cluster.bysu(['snapshot', 'shop']);
    const up = await cluster.bysu(['up'], { timeoutMs: 30_000 });
    assert.equal(up.code, 1, up.stderr);
    assert.match(up.stderr, /EADDRINUSE/);
    const status = await cluster.bysu(['list', 'shop', '--json']);
    assert.deepEqual(JSON.parse(status.stdout), [], 'no snapshot was taken by the half-started process');
    dashboard.kill('SIGTERM');
    await once(dashboard, 'exit');
  } finally {
    await close();
  }
});

test('the dashboard refuses a non-loopback address without a password', async () => {
  const { cluster, close } = await openCluster(['db1']);
  try {
    await cluster.writeConfig([], { dashboard: { host: '0.0.0.0', port: await freePort(), password: '' } });
    for (const command of [['dashboard'], ['up']]) {
      const result = await cluster.bysu(command);
      assert.equal(result.code, 2, command.join(' '));
      assert.match(result.stderr, /dashboard\.password: required when dashboard\.host is not a loopback address \(it is "0\.0\.0\.0"\)/);
    }
  } finally {
    await close();
  }
});
