/**
 * Restore drills over time, with the real scheduler, CLI and Redis: a drill
 * added to an app BYSU has known for a month is not overdue at once, and
 * `<app>/.drills` does not grow forever (retention keeps the newest 20
 * results and never the ones status reads, under the app's lock).
 */
import assert from 'node:assert/strict';
import { mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { redisKeys } from '../../src/queue/jobs.ts';
import { writeDrillResult } from '../../src/repository/records.ts';
import type { DrillResult } from '../../src/repository/drill-result.ts';
import type { AppStatus } from '../../src/status/app-status.ts';
import { waitForLog, withCluster, type TestCluster } from '../helpers/cluster.ts';
import { recordFault } from '../helpers/fault-report.ts';
import { waitUntil } from '../helpers/processes.ts';

const DAY = 86_400_000;
const part = { file: 'shop.sql', run: 'echo dump' };
const drill = { node: 'db1', schedule: '0 6 * * 0', steps: [{ run: 'cat >/dev/null', stdin: 'shop.sql' }] };

async function appStatus(cluster: TestCluster, app: string): Promise<AppStatus> {
  const status = await cluster.bysu(['status', '--json']);
  const report = JSON.parse(status.stdout) as { apps: AppStatus[] };
  const found = report.apps.find((candidate) => candidate.app === app);
  assert.ok(found, `${app} in status: ${status.stdout}${status.stderr}`);
  return found;
}

// Fails before the fix: status said `no drill has run since the app was configured (<30 days ago>)` right after the reload.
test('a weekly drill added to an app first seen 30 days ago is not overdue; it is 1.5 weeks after; removed and added again, it starts afresh', async () => {
  await withCluster(['db1'], async (cluster) => {
    await mkdir(cluster.repository, { recursive: true });
    const redis = new Redis(cluster.redis.url, { maxRetriesPerRequest: null });
    try {
      const firstSeen = new Date(Date.now() - 30 * DAY).toISOString();
      await redis.hset(redisKeys.appFirstSeen(cluster.prefix), 'shop', firstSeen);
      await cluster.writeConfig([{ name: 'shop', node: 'db1', schedule: '0 3 * * *', parts: [part] }]);
      const scheduler = cluster.startProcess(['scheduler']);
      await waitForLog(scheduler, 'scheduler started');
      assert.equal(await redis.hget(redisKeys.appFirstSeen(cluster.prefix), 'shop'), firstSeen, 'the app is a month old to BYSU');

      const drillSince = () => redis.hget(redisKeys.drillSince(cluster.prefix), 'shop');
      const reconciled = () => scheduler.output().split('job schedulers reconciled').length - 1;
      const reload = async (apps: unknown[]) => {
        const before = reconciled();
        await cluster.writeConfig(apps);
        scheduler.kill('SIGHUP');
        await waitUntil('the scheduler to reload', async () => reconciled() > before, 20_000);
      };

      const addedAt = Date.now();
      await reload([{ name: 'shop', node: 'db1', schedule: '0 3 * * *', parts: [part], drill }]);
      const added = await appStatus(cluster, 'shop');
      const drillProblems = added.problems.filter((problem) => /drill/.test(problem));
      assert.deepEqual(drillProblems, [], 'a drill just added is not overdue');
      assert.ok(Date.parse(added.drillSince ?? '') >= addedAt - 1000, `drillSince is the reload, not the app's first sighting: ${added.drillSince}`);

      // 11 days after it was added (past 1.5 × the weekly interval) with no drill run, it is.
      const since = JSON.parse((await drillSince()) ?? 'null') as { since: string };
      const elevenDaysAgo = new Date(Date.now() - 11 * DAY).toISOString();
      await redis.hset(redisKeys.drillSince(cluster.prefix), 'shop', JSON.stringify({ ...since, since: elevenDaysAgo }));
      const late = await appStatus(cluster, 'shop');
      assert.ok(late.problems.includes(`no drill has passed since the drill was configured (${elevenDaysAgo}): is a drill worker running?`), late.problems.join('\n'));

      // Removed, the record goes; added again, the clock starts from then.
      await reload([{ name: 'shop', node: 'db1', schedule: '0 3 * * *', parts: [part] }]);
      assert.equal(await drillSince(), null, 'a drill removed from the config loses its record');
      await reload([{ name: 'shop', node: 'db1', schedule: '0 3 * * *', parts: [part], drill }]);
      const readded = await appStatus(cluster, 'shop');
      assert.deepEqual(readded.problems.filter((problem) => /drill/.test(problem)), [], 'added again: not overdue');
      assert.ok(Date.parse(readded.drillSince ?? '') > Date.parse(elevenDaysAgo) + 10 * DAY, `added again, its clock starts afresh: ${readded.drillSince}`);

      recordFault({
        kind: 'fault', fault: 'weekly drill added to an app first seen 30 days ago', expected: 'not overdue until 1.5 weeks after it was added; re-added starts afresh',
        observed: `drill problems just after the reload: ${drillProblems.length}; 11 days later: ${late.problems.filter((problem) => /drill/.test(problem)).length}; re-added: ${readded.problems.filter((problem) => /drill/.test(problem)).length}`,
        pass: drillProblems.length === 0,
      });
    } finally {
      redis.disconnect();
    }
  });
});

/** Write `count` drill results for app, one an hour up to now; `passed(index)` says which passed (index 0 the oldest). */
async function writeResults(repository: string, app: string, count: number, passed: (index: number) => boolean): Promise<string[]> {
  const names: string[] = [];
  for (let index = 0; index < count; index += 1) {
    const finishedAt = new Date(Date.now() - (count - index) * 3_600_000).toISOString();
    const result: DrillResult = {
      format: 'bysu-drill/1', app, snapshotId: null, node: 'db1', jobId: `repeat:bysu-drill:${app}:${index}`,
      startedAt: finishedAt, finishedAt, passed: passed(index), error: passed(index) ? null : 'step 1 failed', steps: [],
    };
    names.push(path.basename(await writeDrillResult(repository, app, result)));
  }
  return names;
}

// Fails before the fix: `bysu prune` left all 30 results (and said nothing of them); `.drills` grew by one file per drill forever.
test('prune keeps the newest 20 drill results and the newest pass, lists the rest on --dry-run, and waits for the app lock', async () => {
  await withCluster(['db1'], async (cluster) => {
    await mkdir(cluster.repository, { recursive: true });
    await cluster.writeConfig(['shop', 'wiki'].map((name) => ({ name, node: 'db1', schedule: '0 3 * * *', parts: [part], drill })));
    // shop: every third drill passed, the newest pass among the newest 20. wiki: only the 5th oldest passed, 25 failures since.
    const shop = await writeResults(cluster.repository, 'shop', 30, (index) => index % 3 === 1);
    const wiki = await writeResults(cluster.repository, 'wiki', 30, (index) => index === 4);
    const drills = async (app: string) => (await readdir(path.join(cluster.repository, app, '.drills'))).sort();
    assert.deepEqual(await drills('shop'), [...shop].sort());
    const statusBefore = { shop: await appStatus(cluster, 'shop'), wiki: await appStatus(cluster, 'wiki') };

    const dry = await cluster.bysu(['prune', 'shop', '--dry-run']);
    assert.equal(dry.code, 0, dry.stdout + dry.stderr);
    assert.match(dry.stdout, /^shop: keep 0 \(none\), would delete 0; drill results: keep 20, would delete 10$/m);
    for (const name of shop.slice(0, 10)) assert.ok(dry.stdout.includes(`  shop/.drills/${name}\n`), `the dry run names ${name}:\n${dry.stdout}`);
    for (const name of shop.slice(10)) assert.ok(!dry.stdout.includes(name), `the dry run does not name the kept ${name}`);
    assert.equal((await drills('shop')).length, 30, 'a dry run deletes nothing');

    // Hold shop's lock as a commit would; prune wiki then shop: wiki is pruned, shop waits for the lock.
    const redis = new Redis(cluster.redis.url, { maxRetriesPerRequest: null });
    let shopWhileLocked = -1;
    let result: Awaited<ReturnType<TestCluster['bysu']>>;
    try {
      const lockKey = redisKeys.appLock(cluster.prefix, 'shop');
      assert.equal(await redis.set(lockKey, 'test-holds-it', 'PX', 120_000, 'NX'), 'OK');
      let ended = false;
      const pruning = cluster.bysu(['prune', 'wiki', 'shop']).finally(() => (ended = true));
      // Before the fix this timed out: wiki kept its 30 results and the prune sat waiting for shop's lock.
      await waitUntil('prune to delete old results of wiki (or end)', async () => ended || (await drills('wiki')).length < 30, 50_000);
      assert.equal((await drills('wiki')).length, 21, `wiki pruned first (the prune ${ended ? 'ended' : 'runs'})`);
      // Deleting 10 files takes milliseconds: a prune that ignored the lock would have done shop's by now.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      shopWhileLocked = (await drills('shop')).length;
      assert.equal(shopWhileLocked, 30, 'nothing of shop deleted while its lock is held');
      assert.equal(await redis.del(lockKey), 1);
      result = await pruning;
    } finally {
      redis.disconnect();
    }
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /^wiki: .*; drill results: keep 21, deleted 9$/m);
    assert.match(result.stdout, /^shop: .*; drill results: keep 20, deleted 10$/m);
    assert.deepEqual(await drills('shop'), shop.slice(10).sort(), 'the newest 20 of shop remain');
    assert.deepEqual(await drills('wiki'), [wiki[4]!, ...wiki.slice(10)].sort(), 'the newest 20 of wiki and its newest pass remain');

    const statusAfter = { shop: await appStatus(cluster, 'shop'), wiki: await appStatus(cluster, 'wiki') };
    for (const app of ['shop', 'wiki'] as const) {
      const pick = (status: AppStatus) => ({ lastDrill: status.lastDrill, lastDrillPassedAt: status.lastDrillPassedAt, problems: status.problems.filter((problem) => /drill/.test(problem)) });
      assert.deepEqual(pick(statusAfter[app]), pick(statusBefore[app]), `${app}: status reads the same drills after the prune`);
    }
    assert.ok(statusAfter.wiki.lastDrillPassedAt !== null, 'wiki still has its last pass');

    const remaining = { shop: (await drills('shop')).length, wiki: (await drills('wiki')).length };
    recordFault({
      kind: 'fault', fault: '.drills grows (30 results; 25 failures since the last pass)', expected: 'prune keeps the newest 20 and the newest pass; status unchanged; waits for the app lock',
      observed: `shop 30→${remaining.shop}, wiki 30→${remaining.wiki} (pass kept); ${shopWhileLocked} of shop's left while locked; last pass unchanged`,
      pass: remaining.shop === 20 && remaining.wiki === 21,
    });
  });
});
