/**
 * What the fifth attack on mirrors proved, with real processes: an offsite
 * `bysu worker mirror` (and `bysu scheduler`) on its own redis-server and
 * repository, against a source API in this test (fake-mirror-source.ts).
 * - A SIGHUP while the file is half-written (`keep: 12` cut after `keep: 1`)
 *   pruned the copies to the half file: the mirror had no keep floor.
 * - A Redis that came back empty started the count of a source that never
 *   answered again: not STALE for another maxLag.
 * - An app named in `mirrors[].apps` that the source does not list read
 *   "up to date" for good, and `bysu mirror --wait` exited 0.
 */
import assert from 'node:assert/strict';
import { open, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { MIRROR_JOB, MIRROR_QUEUE, mirrorKey, redisKeys } from '../../src/queue/jobs.ts';
import { snapshotIdFor } from '../../src/repository/layout.ts';
import { waitForLog, withCluster, type TestCluster } from '../helpers/cluster.ts';
import { fakeSource } from '../helpers/fake-mirror-source.ts';
import { freePort, waitUntil } from '../helpers/processes.ts';

const env = { BYSU_HOME_TOKEN: 'mirror-attack-token-0123456789' };
/** A schedule that does not fire during a test: the runs are the test's own. */
const NEVER = '0 0 1 1 *';

const idAgo = (minutesAgo: number) => snapshotIdFor(new Date(Date.now() - minutesAgo * 60_000));

async function copies(cluster: TestCluster, app: string): Promise<string[]> {
  return (await readdir(path.join(cluster.repository, app)).catch(() => [] as string[])).filter((entry) => /^\d{8}T\d{6}Z/.test(entry)).sort();
}

/** The offsite config's text: no nodes or apps, the given mirrors last (so that a cut after a mirror's last key still loads). */
function offsiteConfig(cluster: TestCluster, mirrors: Record<string, unknown>[]): string {
  return stringify({
    redis: { url: cluster.redis.url, prefix: cluster.prefix },
    concurrency: { lockDuration: '5s', stalledInterval: '5s' },
    repository: cluster.repository,
    dashboard: { host: '127.0.0.1', port: 0 },
    apps: [],
    mirrors,
  });
}

// Fails before the fix: the run pruned 8 copies to 1 (two, with the flood rule) while the file said keep 12 again
// half a second later; an app of this BYSU kept what it kept before the reload (LiveConfig.keepFloor).
test('bysu worker mirror: a SIGHUP while the file is half-written never prunes the copies to the half file', async () => {
  const source = await fakeSource();
  try {
    await withCluster([], async (cluster) => {
      source.apps.push({ app: 'shop', keep: 3 });
      source.snapshots.set('shop', Array.from({ length: 8 }, (_, index) => ({ id: idAgo(60 + index), files: new Map([['shop.sql', Buffer.from(`INSERT ${index};\n`)]]) })));
      const full = offsiteConfig(cluster, [{ name: 'home', url: source.url, tokenEnv: 'BYSU_HOME_TOKEN', schedule: NEVER, attempts: 1, keep: 12 }]);
      const cut = full.lastIndexOf('keep: 12') + 'keep: 1'.length;
      assert.equal(full.slice(cut).trim(), '2', full);
      await writeFile(cluster.configFile, full);
      const worker = cluster.startProcess(['worker', 'mirror'], env);
      await waitForLog(worker, 'mirror worker started');
      const first = await cluster.bysu(['mirror', 'home', '--wait'], { env });
      assert.equal(first.code, 0, first.stdout + first.stderr);
      assert.equal((await copies(cluster, 'shop')).length, 8);

      // Rewritten in place by a writer that stalls after "keep: 1" for longer than a reload waits for quiet.
      const handle = await open(cluster.configFile, 'w');
      await handle.write(full.slice(0, cut));
      await handle.sync();
      process.kill(worker.pid!, 'SIGHUP');
      await waitForLog(worker, '"msg":"config reloaded"');
      // A run starts now, as a scheduled one may (enqueued here, as `bysu mirror` does, so that it surely starts
      // before the writer is done); the writer finishes once it has started.
      const count = (text: string) => worker.output().split(text).length - 1;
      const connection = new Redis(cluster.redis.url, { maxRetriesPerRequest: null });
      const queue = new Queue(MIRROR_QUEUE, { connection, prefix: cluster.prefix });
      try {
        await queue.add(MIRROR_JOB, { mirror: 'home', trigger: 'manual' }, { jobId: 'during-the-reload', attempts: 1 });
        // Within the writer's pause that a reload covers (the file is read again 3 s after the reload); an idle
        // worker takes a job within milliseconds.
        await waitUntil('the run to start', async () => count('"msg":"mirror run started"') >= 2, 2500).finally(async () => {
          await handle.write(full.slice(cut));
          await handle.close();
        });
        await waitUntil('the run to finish', async () => count('"msg":"mirror run finished"') >= 2, 30_000);
      } finally {
        await queue.close();
        connection.disconnect();
      }
      await waitForLog(worker, 'changed just after the reload');
      // Every copy stays, and the run saw the half file (it says what it kept instead).
      assert.equal((await copies(cluster, 'shop')).length, 8, worker.output().slice(-3000));
      assert.match(worker.output(), /this run deletes no copies; keep 1 applies from the next run once the reload is verified/);
    });
  } finally {
    await source.close();
  }
});

// Fails before the fix: a Redis that came back empty made `status` count a dead source from the scheduler's new
// first sighting (exit 0 for another maxLag), and an app the source does not list read "up to date", exit 0.
test('a source that never answered stays STALE across an emptied Redis; an app the source does not list fails the run and goes STALE', async () => {
  const source = await fakeSource();
  try {
    await withCluster([], async (cluster) => {
      source.apps.push({ app: 'shop', keep: 3 });
      const id = idAgo(30);
      source.snapshots.set('shop', [{ id, files: new Map([['shop.sql', Buffer.from('INSERT 1;\n')]]) }]);
      const closed = await freePort();
      await writeFile(cluster.configFile, offsiteConfig(cluster, [
        { name: 'home', url: source.url, tokenEnv: 'BYSU_HOME_TOKEN', schedule: NEVER, attempts: 1, maxLag: '5s', apps: ['shop', 'ledgr'] },
        { name: 'away', url: `http://127.0.0.1:${closed}`, tokenEnv: 'BYSU_HOME_TOKEN', schedule: NEVER, attempts: 1, maxLag: '5s' },
      ]));
      const worker = cluster.startProcess(['worker', 'mirror'], env);
      await waitForLog(worker, 'mirror worker started');
      const home = await cluster.bysu(['mirror', 'home', '--wait'], { env });
      assert.equal(home.code, 1, home.stdout + home.stderr);
      assert.match(home.stdout + home.stderr, /ledgr is not among the apps mirror source home lists \(shop\)/);
      assert.deepEqual(await copies(cluster, 'shop'), [id], 'what the source lists is copied all the same');
      const away = await cluster.bysu(['mirror', 'away', '--wait'], { env });
      assert.equal(away.code, 1, away.stdout + away.stderr);
      // Past maxLag since the first runs (which the repository records), Redis comes back empty and a scheduler
      // starts on it: it sees both mirrors for the "first" time now.
      await new Promise((resolve) => setTimeout(resolve, 6000));
      await cluster.redis.restart();
      const scheduler = cluster.startProcess(['scheduler'], env);
      await waitForLog(scheduler, 'scheduler started');
      const redis = new Redis(cluster.redis.url);
      try {
        await waitUntil('the scheduler to record when it first had the mirror', async () => redis.hget(redisKeys.appFirstSeen(cluster.prefix), mirrorKey('away')), 20_000);
      } finally {
        redis.disconnect();
      }
      const status = await cluster.bysu(['status'], { env });
      assert.equal(status.code, 1, status.stdout + status.stderr);
      assert.match(status.stdout, /mirror away \(.*\): STALE, has never answered/, status.stdout);
      const ledgr = status.stdout.split('\n').find((line) => line.startsWith('ledgr'));
      assert.ok(ledgr, status.stdout);
      assert.match(ledgr, /STALE/);
      assert.match(ledgr, /no snapshot yet/);
      assert.doesNotMatch(ledgr, /null/);
      assert.match(ledgr, /mirror source home has never listed this app/);
      const json = JSON.parse((await cluster.bysu(['status', '--json'], { env })).stdout) as { mirrors: { name: string; stale: boolean }[] };
      assert.equal(json.mirrors.find((mirror) => mirror.name === 'away')?.stale, true, JSON.stringify(json.mirrors));
    });
  } finally {
    await source.close();
  }
});
