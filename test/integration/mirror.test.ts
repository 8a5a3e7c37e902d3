/**
 * Two BYSU instances on loopback: a primary fed by a real sshd node (its own
 * redis-server, repository, snapshot and retention workers and dashboard),
 * and an offsite one (another redis-server and repository) whose `bysu up`
 * copies the primary's snapshots over its /api with `bysu mirror --wait`.
 */
import assert from 'node:assert/strict';
import { open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { initRepository } from '../../src/repository/marker.ts';
import type { Manifest } from '../../src/repository/manifest.ts';
import { withCluster, waitForLog } from '../helpers/cluster.ts';
import { freePort, run, stopProcess, waitUntil } from '../helpers/processes.ts';
import { startHttpRecorder } from '../helpers/http-recorder.ts';
import { withRedis } from '../helpers/redis.ts';

const TOKEN = 'mirror-e2e-token-0123456789abcdef';
/** A schedule that does not fire during a test: the runs are the test's own (`bysu mirror --wait`). */
const NEVER = '0 0 1 1 *';

/** The port the offsite dashboard (dashboard.port 0) says it listens on. */
function offsitePort(output: string): number {
  const port = /"url":"http:\/\/127\.0\.0\.1:(\d+)\//.exec(output)?.[1];
  assert.ok(port, `the offsite dashboard's port in its log:\n${output.slice(-2000)}`);
  return Number(port);
}

async function snapshotIds(repository: string, app: string): Promise<string[]> {
  return (await readdir(path.join(repository, app)).catch(() => [] as string[])).filter((entry) => /^\d{8}T\d{6}Z/.test(entry)).sort();
}

test('a second BYSU copies the primary\'s snapshots, keeps more than it, refuses a damaged file by name, and restores with the primary wiped', async () => {
  await withCluster(['db1'], async (cluster) => {
    const port = await freePort();
    await cluster.writeConfig([
      { name: 'shop', node: 'db1', keep: 2, parts: [
        { file: 'shop.sql', run: "seq 1 500 | sed 's/.*/INSERT INTO t VALUES (&);/'" },
        { file: 'blob.bin', run: 'head -c 300000 /dev/urandom' },
      ] },
    ], { dashboard: { host: '127.0.0.1', port, apiToken: TOKEN } });
    cluster.startWorker();
    cluster.startProcess(['worker', 'retention']);
    let dashboard = cluster.startProcess(['dashboard']);
    await waitForLog(dashboard, 'dashboard started');
    const snapshotAtPrimary = async () => {
      const result = await cluster.bysu(['snapshot', 'shop', '--wait']);
      assert.equal(result.code, 0, result.stdout + result.stderr);
      await new Promise((resolve) => setTimeout(resolve, 1100)); // one snapshot id per second
    };
    for (let round = 0; round < 3; round += 1) await snapshotAtPrimary();

    const hook = await startHttpRecorder();
    const closedPort = await freePort();
    await withRedis(async (redis) => {
      const offsite = path.join(cluster.dir, 'offsite');
      await initRepository(offsite);
      const offsiteConfig = path.join(cluster.dir, 'offsite.yaml');
      const mirror = { name: 'home', url: `http://127.0.0.1:${port}`, tokenEnv: 'BYSU_HOME_TOKEN', schedule: NEVER, keep: 4, maxLag: '40s', attempts: 1 };
      const writeOffsite = (extra: Record<string, unknown> = {}) => writeFile(offsiteConfig, stringify({
        redis: { url: redis.url, prefix: 'offsite' },
        concurrency: { lockDuration: '5s', stalledInterval: '5s' },
        repository: offsite,
        dashboard: { host: '127.0.0.1', port: 0 },
        notify: { webhook: `${hook.url}/hook`, staleCheckInterval: '1s' },
        up: { snapshotWorkers: 1 },
        apps: [],
        // A source that never answers (nothing listens there): stale maxLag after the scheduler first had it.
        mirrors: [{ ...mirror, ...extra }, { name: 'away', url: `http://127.0.0.1:${closedPort}`, tokenEnv: 'BYSU_HOME_TOKEN', schedule: NEVER, maxLag: '20s' }],
      }));
      await writeOffsite();
      const env = { BYSU_CONFIG: offsiteConfig, BYSU_HOME_TOKEN: TOKEN };
      const up = cluster.startProcess(['up'], env);
      await waitForLog(up, 'bysu up: scheduler, workers and dashboard running');
      const mirrorNow = () => cluster.bysu(['mirror', 'home', '--wait'], { env });

      // 1. Each of the source's snapshots arrives, under its id, and checks out with sha256sum -c.
      const first = await mirrorNow();
      assert.equal(first.code, 0, first.stdout + first.stderr + up.output());
      assert.match(first.stdout, /home: shop: 2 snapshot\(s\) copied/);
      // The source's log says what a mirror took, file by file.
      assert.match(dashboard.output(), /"app":"shop","snapshot":"\d{8}T\d{6}Z","file":"blob.bin","from":0,"bytes":300000,"size":300000,"client":"127.0.0.1","msg":"api: file served"/);
      assert.deepEqual(await snapshotIds(offsite, 'shop'), await snapshotIds(cluster.repository, 'shop'));
      for (const id of await snapshotIds(offsite, 'shop')) {
        const check = await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: path.join(offsite, 'shop', id) });
        assert.equal(check.code, 0, check.stdout + check.stderr);
        const manifest = JSON.parse(await readFile(path.join(offsite, 'shop', id, 'manifest.json'), 'utf8')) as Manifest;
        assert.equal(manifest.mirroredFrom?.source, 'home');
      }
      const listed = await cluster.bysu(['list', 'shop', '--json'], { env });
      assert.equal(listed.code, 0, listed.stderr);
      assert.equal((JSON.parse(listed.stdout) as unknown[]).length, 2);

      // 2. keep 4 here, 2 at the source: the copies of snapshots the source has deleted stay.
      for (let round = 0; round < 3; round += 1) await snapshotAtPrimary();
      const second = await mirrorNow();
      assert.equal(second.code, 0, second.stdout + second.stderr);
      const primaryIds = await snapshotIds(cluster.repository, 'shop');
      const offsiteIds = await snapshotIds(offsite, 'shop');
      assert.equal(primaryIds.length, 2, `the source keeps 2: ${primaryIds.join(' ')}`);
      assert.equal(offsiteIds.length, 4, `the mirror keeps 4: ${offsiteIds.join(' ')}`);
      assert.deepEqual(offsiteIds.slice(-2), primaryIds, 'the source\'s newest are here');
      // A run lock left by a process killed mid-run (kill -9 of bysu up) lapses after its lease (lockDuration, 5 s
      // here); the next run waits for that, then runs: it is neither skipped nor reported done with nothing copied.
      await snapshotAtPrimary();
      const lockHolder = new Redis(redis.url);
      await lockHolder.set('offsite:bysu:app-lock:mirror~home', 'a-dead-process', 'PX', 5000);
      lockHolder.disconnect();
      const afterCrash = await mirrorNow();
      assert.equal(afterCrash.code, 0, afterCrash.stdout + afterCrash.stderr);
      assert.match(afterCrash.stdout, /home: shop: 1 snapshot\(s\) copied/);
      const upToDate = await cluster.bysu(['status', 'shop'], { env });
      assert.equal(upToDate.code, 0, upToDate.stdout + upToDate.stderr);
      assert.match(upToDate.stdout, /shop\s+OK\s.*copy of home: up to date/);

      // 2b. A flood: the source publishes four new snapshots at once (a source taken over). keep 4 alone would now
      // delete every good copy; the first copy to arrive of each snapshot day stays too (all of these are of today),
      // so the first good copy stays beside the four newest.
      const good = await snapshotIds(offsite, 'shop');
      assert.equal(good.length, 4, good.join(' '));
      for (let round = 0; round < 2; round += 1) {
        for (let each = 0; each < 2; each += 1) await snapshotAtPrimary();
        const flooded = await mirrorNow();
        assert.equal(flooded.code, 0, flooded.stdout + flooded.stderr);
      }
      const afterFlood = await snapshotIds(offsite, 'shop');
      assert.equal(afterFlood[0], good[0], `the first good copy to arrive stays: ${afterFlood.join(' ')}`);
      assert.equal(afterFlood.length, 5, `4 new and the first good one: ${afterFlood.join(' ')}`);
      assert.match(up.output(), /more than keep stay, kept by the days they arrived on or were taken on/);

      // 3. The source down for longer than maxLag: STALE (status exit 1, one webhook), and recovered once a run reaches it again.
      // The schedule is NEVER here: from its last run the source counts as unanswering, so maxLag must outlast the
      // longest gap between two runs above (20 s did not, beside a busy CI: CI at fef0591 had a stale alert in step 2b).
      const stoppedAt = Date.now();
      await stopProcess(dashboard);
      const stale = await hook.waitFor((request) => (request.body as { event?: string; app?: string } | null)?.event === 'stale' && (request.body as { app: string }).app === 'shop', 90_000);
      assert.ok(stale.at >= stoppedAt, `the stale alert came before the source stopped: ${JSON.stringify(hook.requests.map((request) => request.body))}`);
      assert.equal((stale.body as { app: string }).app, 'shop');
      assert.match((stale.body as { reason: string }).reason, /mirror source home \(http:\/\/127\.0\.0\.1:\d+\) has not answered since/);
      const staleStatus = await cluster.bysu(['status', 'shop'], { env });
      assert.equal(staleStatus.code, 1, staleStatus.stdout);
      assert.match(staleStatus.stdout, /shop\s+STALE/);
      const metrics = await (await fetch(`http://127.0.0.1:${offsitePort(up.output())}/metrics`)).text();
      assert.match(metrics, /^bysu_mirror_lag_seconds\{app="shop",source="home"\} 0$/m);
      const down = await mirrorNow();
      assert.equal(down.code, 1, down.stdout);
      assert.match(down.stdout, /mirror source home \(http:\/\/127\.0\.0\.1:\d+\/api\/apps\) does not answer/);
      dashboard = cluster.startProcess(['dashboard']);
      await waitForLog(dashboard, 'dashboard started');
      const back = await mirrorNow();
      assert.equal(back.code, 0, back.stdout + back.stderr);
      await hook.waitFor((request) => (request.body as { event?: string; app?: string } | null)?.event === 'recovered' && (request.body as { app: string }).app === 'shop', 20_000);
      await new Promise((resolve) => setTimeout(resolve, 3000)); // three stale checks more
      const events = (app: string) => hook.requests.filter((request) => (request.body as { app?: string } | null)?.app === app).map((request) => (request.body as { event: string }).event);
      assert.deepEqual(events('shop'), ['stale', 'recovered'], 'one alert each way for the app');
      assert.deepEqual(events('mirror:home'), ['stale', 'recovered'], 'one alert each way for the source');
      assert.deepEqual(events('mirror:away'), ['stale'], 'the source that never answered: once');
      const all = await cluster.bysu(['status'], { env });
      assert.equal(all.code, 1, all.stdout);
      assert.match(all.stdout, /^mirror away \(http:\/\/127\.0\.0\.1:\d+\): STALE, has never answered/m);
      assert.match(all.stdout, /^mirror home \(http:\/\/127\.0\.0\.1:\d+\): last answered /m);

      // 4. A file damaged on the source's disk is refused by name; the copy is not visible; the run fails (exit 1).
      await snapshotAtPrimary();
      const newest = (await snapshotIds(cluster.repository, 'shop')).at(-1)!;
      // And one dated in the future beside it (a source whose clock is wrong, or that was taken over): refused by name.
      await run('cp', ['-a', path.join(cluster.repository, 'shop', newest), path.join(cluster.repository, 'shop', '20991231T235959Z')]);
      const futureManifest = path.join(cluster.repository, 'shop', '20991231T235959Z', 'manifest.json');
      await writeFile(futureManifest, (await readFile(futureManifest, 'utf8')).replace(newest, '20991231T235959Z'));
      const blob = path.join(cluster.repository, 'shop', newest, 'blob.bin');
      const handle = await open(blob, 'r+');
      await handle.write(Buffer.from([(await readFile(blob))[1000]! ^ 0xff]), 0, 1, 1000);
      await handle.close();
      // And maxRate, set by SIGHUP: 100 KiB/s makes the 300 KB file take about 3 s (unbounded: milliseconds).
      await writeOffsite({ maxRate: '100KiB' });
      process.kill(up.pid!, 'SIGHUP');
      await waitUntil('the offsite reloaded maxRate', async () => up.output().split('"msg":"config reloaded"').length - 1 >= 1, 20_000);
      const paced = Date.now();
      const damaged = await cluster.bysu(['mirror', 'home', '--wait'], { env, timeoutMs: 300_000 });
      const pacedMs = Date.now() - paced;
      assert.equal(damaged.code, 1, damaged.stdout + damaged.stderr);
      assert.ok(pacedMs >= 2500, `300 KB at maxRate 100KiB/s took ${pacedMs} ms`);
      assert.match(damaged.stdout, /blob\.bin arrived with sha256 [0-9a-f]{64}, but its manifest says [0-9a-f]{64}/);
      assert.ok(!(await snapshotIds(offsite, 'shop')).includes(newest), 'the damaged snapshot is not copied');
      assert.match(damaged.stdout, /shop\/20991231T235959Z on mirror source home is dated in the future/);
      assert.ok(!(await snapshotIds(offsite, 'shop')).includes('20991231T235959Z'), 'the future one is not copied');

      // 5. The primary's repository wiped: every copy stays here, and bysu restore restores one.
      await rm(path.join(cluster.repository, 'shop'), { recursive: true, force: true });
      const kept = await snapshotIds(offsite, 'shop');
      assert.deepEqual(kept, afterFlood);
      const target = path.join(cluster.dir, 'restored');
      const restore = await cluster.bysu(['restore', 'shop', '--to', target], { env });
      assert.equal(restore.code, 0, restore.stdout + restore.stderr);
      const check = await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: target });
      assert.equal(check.code, 0, check.stdout + check.stderr);
      assert.match(await readFile(path.join(target, 'shop.sql'), 'utf8'), /^INSERT INTO t VALUES \(500\);$/m);
      // The copies are verified here as any snapshot: by name, and with --all.
      for (const args of [['verify', 'shop'], ['verify', '--all']]) {
        const verified = await cluster.bysu(args, { env });
        assert.equal(verified.code, 0, verified.stdout + verified.stderr);
        assert.equal(verified.stdout.match(/^OK +shop\/\d{8}T\d{6}Z/gm)?.length, kept.length, verified.stdout);
      }
    }).finally(() => hook.close());
  });
});

test('two mirrors with apps: all whose sources list the same app, run at once: one holds it, the other is refused by name; concurrency 2 copies two snapshots at once', async () => {
  await withCluster(['db1'], async (cluster) => {
    const port = await freePort();
    await cluster.writeConfig([
      { name: 'shop', node: 'db1', keep: 3, parts: [{ file: 'blob.bin', run: 'head -c 300000 /dev/urandom' }] },
    ], { dashboard: { host: '127.0.0.1', port, apiToken: TOKEN } });
    cluster.startWorker();
    const dashboard = cluster.startProcess(['dashboard']);
    await waitForLog(dashboard, 'dashboard started');
    for (let round = 0; round < 2; round += 1) {
      const result = await cluster.bysu(['snapshot', 'shop', '--wait']);
      assert.equal(result.code, 0, result.stdout + result.stderr);
      await new Promise((resolve) => setTimeout(resolve, 1100)); // one snapshot id per second
    }
    await withRedis(async (redis) => {
      const offsite = path.join(cluster.dir, 'offsite');
      await initRepository(offsite);
      const offsiteConfig = path.join(cluster.dir, 'offsite.yaml');
      // Both at 150 KiB/s with two copies at once: the two 300 KB snapshots take about 4 s, side by side.
      const mirror = (name: string) => ({ name, url: `http://127.0.0.1:${port}`, tokenEnv: 'BYSU_HOME_TOKEN', schedule: NEVER, apps: 'all', concurrency: 2, maxRate: '150KiB', attempts: 1 });
      const hook = await startHttpRecorder();
      await writeFile(offsiteConfig, stringify({
        redis: { url: redis.url, prefix: 'offsite' },
        repository: offsite,
        dashboard: { host: '127.0.0.1', port: 0 },
        notify: { webhook: `${hook.url}/hook`, staleCheckInterval: '1s' },
        // Every 3 seconds: the scheduled verification of the copies (one job per mirror) comes due in the test.
        verify: { schedule: '*/3 * * * * *' },
        apps: [],
        mirrors: [mirror('home'), mirror('again')],
      }));
      const env = { BYSU_CONFIG: offsiteConfig, BYSU_HOME_TOKEN: TOKEN };
      const up = cluster.startProcess(['up'], env);
      await waitForLog(up, 'bysu up: scheduler, workers and dashboard running');
      // How many copies are downloading at once: each has its own directory in .incoming until it is committed.
      let most = 0;
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          const downloading = (await readdir(path.join(offsite, 'shop', '.incoming')).catch(() => [] as string[])).filter((name) => name.startsWith('mirror.'));
          most = Math.max(most, downloading.length);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      })();
      const both = await cluster.bysu(['mirror', 'home', 'again', '--wait'], { env, timeoutMs: 120_000 });
      watching = false;
      await watcher;
      assert.equal(both.code, 1, both.stdout + both.stderr + up.output());
      const refused = /shop here holds copies from mirror source (home|again), not (home|again)/.exec(both.stdout);
      assert.ok(refused && refused[1] !== refused[2], both.stdout);
      const holder = refused[1]!;
      const ids = await snapshotIds(offsite, 'shop');
      assert.equal(ids.length, 2, ids.join(' '));
      for (const id of ids) {
        const manifest = JSON.parse(await readFile(path.join(offsite, 'shop', id, 'manifest.json'), 'utf8')) as Manifest;
        assert.equal(manifest.mirroredFrom?.source, holder, `${id} came from the mirror that holds the app`);
      }
      assert.equal((JSON.parse(await readFile(path.join(offsite, 'shop', '.mirror.json'), 'utf8')) as { source: string }).source, holder);
      assert.ok(most >= 2, `two copies downloaded at once with concurrency 2 (at most ${most} seen)`);

      // The scheduled verification covers the copies: a byte flipped in one is found, CORRUPT, exit 1, one alert.
      const damaged = path.join(offsite, 'shop', ids[0]!, 'blob.bin');
      const handle = await open(damaged, 'r+');
      await handle.write(Buffer.from([(await readFile(damaged))[100]! ^ 0xff]), 0, 1, 100);
      await handle.close();
      const corrupt = await waitUntil('status to call the copy corrupt', async () => {
        const status = await cluster.bysu(['status', 'shop'], { env });
        return /shop\s+CORRUPT/.test(status.stdout) ? status : null;
      }, 60_000);
      assert.equal(corrupt.code, 1, corrupt.stdout);
      assert.match(corrupt.stdout, new RegExp(`shop/${ids[0]}: blob\\.bin: checksum mismatch`));
      const alert = await hook.waitFor((request) => (request.body as { event?: string } | null)?.event === 'corrupt', 30_000);
      assert.equal((alert.body as { app: string }).app, 'shop');
      assert.match(up.output(), new RegExp(`"app":"mirror:${holder}".*"msg":"verification started"`));
      await hook.close();
    });
  });
});
