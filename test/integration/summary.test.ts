/**
 * The per-app summary (`<app>/.summary/summary.json`) against a full scan of
 * the files, after every kind of write, done by real BYSU processes against
 * a real sshd node and Redis: a commit, retention, a failed attempt, a
 * verification that finds a damaged file, a drill; and after the changes no
 * writer announces: a snapshot deleted by hand, a summary damaged by hand,
 * and a committer killed (kill -9) between its commit and its summary update.
 * After a writer, the summary read is the one the writer wrote (not
 * rebuilt); after the others, the reader rebuilds it. Either way it equals
 * what the manifests and records say.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFile, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RACY_MS, readAppSummary, scanAppSummary, type AppSummary } from '../../src/repository/summary.ts';
import { openCluster, PROJECT_ROOT, waitForLog, type TestCluster } from '../helpers/cluster.ts';
import { waitUntil } from '../helpers/processes.ts';

const summaryFile = (cluster: TestCluster, app: string) => path.join(cluster.repository, app, '.summary', 'summary.json');
const readText = (file: string) => readFile(file, 'utf8').catch(() => null);

/**
 * Read the app's summary as status does and check that it equals a full
 * scan. `cached`: the file a writer left must be served as it is (a rebuild
 * would rewrite it with a new builtAt). `rebuilt`: the file was outdated; the
 * answer must still equal the scan, and the rebuilt summary must be written
 * back once the change is older than RACY_MS (not before: a build that close
 * to a change may have raced a writer), and then be served as it is.
 */
async function assertSummaryAgrees(cluster: TestCluster, app: string, expect: 'cached' | 'rebuilt'): Promise<AppSummary> {
  const before = await readText(summaryFile(cluster, app));
  const summary = await readAppSummary(cluster.repository, app);
  assert.deepEqual(summary, await scanAppSummary(cluster.repository, app), `${app}: the summary says what the files say`);
  if (expect === 'cached') {
    assert.notEqual(before, null, `${app}: the writer left a summary`);
    assert.equal(await readText(summaryFile(cluster, app)), before, `${app}: the summary the writer left was current and served as it is`);
    return summary;
  }
  await new Promise((resolve) => setTimeout(resolve, RACY_MS + 200));
  assert.deepEqual(await readAppSummary(cluster.repository, app), summary);
  const written = await readText(summaryFile(cluster, app));
  assert.notEqual(written, before, `${app}: the outdated summary was rebuilt and written back`);
  assert.deepEqual(await readAppSummary(cluster.repository, app), summary);
  assert.equal(await readText(summaryFile(cluster, app)), written, `${app}: the rebuilt summary is served as it is`);
  return summary;
}

const snapshotIds = async (cluster: TestCluster, app: string) => (await readdir(path.join(cluster.repository, app))).filter((name) => /^\d{8}T\d{6}Z/.test(name)).sort();

describe('the app summary agrees with a full scan after every kind of write', () => {
  let cluster: TestCluster;
  let close: (() => Promise<void>) | undefined;

  before(async () => {
    ({ cluster, close } = await openCluster(['db1']));
    await cluster.writeConfig([
      { name: 'shop', node: 'db1', keep: 2, parts: [{ file: 'shop.sql', run: 'echo dump of shop; date +%N' }], drill: { node: 'db1', steps: [{ run: 'wc -l', stdin: 'shop.sql', expect: '^2$' }] } },
      { name: 'broken', node: 'db1', attempts: 1, parts: [{ file: 'broken.sql', run: 'echo half a dump; echo pg_dump: connection refused >&2; exit 3' }] },
    ]);
    const worker = cluster.startWorker();
    const driller = cluster.startProcess(['worker', 'drill']);
    await waitForLog(worker, 'worker started');
    await waitForLog(driller, 'drill worker started');
  });

  after(async () => {
    await close?.();
  });

  test('commits, then retention', async () => {
    for (let round = 0; round < 3; round += 1) {
      const result = await cluster.bysu(['snapshot', 'shop', '--wait']);
      assert.equal(result.code, 0, result.stdout + result.stderr);
    }
    const committed = await assertSummaryAgrees(cluster, 'shop', 'cached');
    assert.equal(committed.snapshots.length, 3);
    assert.deepEqual(committed.snapshots.map((snapshot) => snapshot.id), (await snapshotIds(cluster, 'shop')).reverse(), 'newest first');
    assert.ok(committed.snapshots.every((snapshot) => snapshot.bytes > 0 && snapshot.parts === 1));

    const pruned = await cluster.bysu(['prune', 'shop']);
    assert.equal(pruned.code, 0, pruned.stdout + pruned.stderr);
    const kept = await assertSummaryAgrees(cluster, 'shop', 'cached');
    assert.deepEqual(kept.snapshots.map((snapshot) => snapshot.id), committed.snapshots.slice(0, 2).map((snapshot) => snapshot.id));
  });

  test('a failed attempt', async () => {
    const result = await cluster.bysu(['snapshot', 'broken', '--wait']);
    assert.notEqual(result.code, 0);
    const summary = await waitUntil('the failure recorded beside the snapshots', async () => {
      const found = await scanAppSummary(cluster.repository, 'broken');
      return found.lastFailure ? found : null;
    });
    assert.match(summary.lastFailure!.reason, /connection refused/);
    // The worker writes the record, then rebuilds the summary under the app's lock: wait for that second step too.
    await waitUntil('the summary rebuilt after the failure', async () => ((await readText(summaryFile(cluster, 'broken')))?.includes('connection refused') ? true : null));
    await assertSummaryAgrees(cluster, 'broken', 'cached');
  });

  test('a drill', async () => {
    const result = await cluster.bysu(['drill', 'shop', '--wait']);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const summary = await assertSummaryAgrees(cluster, 'shop', 'cached');
    assert.equal(summary.lastDrill?.passed, true);
    assert.equal(summary.lastDrill?.snapshotId, summary.snapshots[0]!.id);
    assert.equal(summary.lastDrillPassedAt, summary.lastDrill?.finishedAt);
  });

  test('a verification that finds a damaged file, and status naming it', async () => {
    const [newest] = (await snapshotIds(cluster, 'shop')).reverse();
    await appendFile(path.join(cluster.repository, 'shop', newest!, 'shop.sql'), 'rot\n');
    const verified = await cluster.bysu(['verify', 'shop']);
    assert.equal(verified.code, 1, verified.stdout + verified.stderr);
    const summary = await assertSummaryAgrees(cluster, 'shop', 'cached');
    assert.deepEqual(summary.lastVerify?.snapshots.map(({ id, ok }) => ({ id, ok })).sort((a, b) => a.id.localeCompare(b.id)),
      (await snapshotIds(cluster, 'shop')).map((id) => ({ id, ok: id !== newest })));
    const status = await cluster.bysu(['status', '--json']);
    assert.equal(status.code, 1, 'a damaged snapshot makes status fail');
    const shop = (JSON.parse(status.stdout) as { apps: { app: string; problems: string[]; lastVerify: { failed: { id: string }[] } }[] }).apps.find((app) => app.app === 'shop')!;
    assert.ok(shop.problems.some((problem) => problem.includes(`shop/${newest}: shop.sql: checksum mismatch`)), shop.problems.join('\n'));
    assert.deepEqual(shop.lastVerify.failed.map(({ id }) => id), [newest]);
  });

  test('a snapshot deleted by hand, right after a write', async () => {
    const result = await cluster.bysu(['snapshot', 'shop', '--wait']);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const [newest] = (await snapshotIds(cluster, 'shop')).reverse();
    await rm(path.join(cluster.repository, 'shop', newest!), { recursive: true });
    const summary = await assertSummaryAgrees(cluster, 'shop', 'rebuilt');
    assert.ok(!summary.snapshots.some((snapshot) => snapshot.id === newest), 'the deleted snapshot is gone from the summary');
  });

  test('a summary damaged by hand, or of another app', async () => {
    await writeFile(summaryFile(cluster, 'shop'), '{"format": "bysu-summary/1", "app": "shop", "snap');
    await assertSummaryAgrees(cluster, 'shop', 'rebuilt');
    await writeFile(summaryFile(cluster, 'shop'), await readFile(summaryFile(cluster, 'broken')));
    await assertSummaryAgrees(cluster, 'shop', 'rebuilt');
  });

  test('a committer killed between its commit and its summary update', async () => {
    const previous = await readText(summaryFile(cluster, 'shop'));
    const committer = spawn(process.execPath, ['--import', path.join(PROJECT_ROOT, 'test/helpers/stop-before-publish.mjs'), '--import', 'tsx', path.join(PROJECT_ROOT, 'test/helpers/commit-attempt.ts'), cluster.repository, 'shop', 'job-crash', new Date().toISOString()], {
      env: { ...process.env, BYSU_TEST_STOP_BEFORE_SUMMARY: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    committer.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    await waitUntil('the committer stopped before replacing the summary', async () => stderr.includes('test: stopping before replacing'));
    committer.kill('SIGKILL');
    await new Promise((resolve) => committer.once('close', resolve));
    assert.equal(await readText(summaryFile(cluster, 'shop')), previous, 'the crash left the summary of before the commit');
    const summary = await assertSummaryAgrees(cluster, 'shop', 'rebuilt');
    const [newest] = (await snapshotIds(cluster, 'shop')).reverse();
    assert.equal(summary.snapshots[0]!.id, newest, 'the snapshot committed before the crash is in the summary');
  });
});
