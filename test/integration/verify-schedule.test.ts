/**
 * Bit rot is loud, with real processes (a redis-server, an sshd node, BYSU's
 * own executables): the verify worker, on a schedule every few seconds, finds
 * a byte flipped in a kept snapshot, and then `bysu status` calls the app
 * CORRUPT, exits 1 and names the file; the webhook hears `corrupt` once;
 * /metrics and /api/apps say so; `.last-verify.json` and the summary say it
 * without Redis. A repair verified again, or retention deleting the damaged
 * snapshot, brings the app back to ok (and the webhook hears it once). A
 * reload that changes verify.schedule changes the job scheduler. The worker
 * runs under `bysu up` in the first test and as `bysu worker verify` in the
 * second, which also holds a verification to its read bound and to one app
 * at a time.
 *
 * Fails on the code before the verify worker: nothing verified on a schedule
 * (no `.last-verify.json` appears), the state stayed `ok`, nothing alerted.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { VERIFY_QUEUE } from '../../src/queue/jobs.ts';
import { waitForLog, withCluster, type TestCluster } from '../helpers/cluster.ts';
import { startHttpRecorder, type HttpRecorder } from '../helpers/http-recorder.ts';
import { freePort, run, waitUntil } from '../helpers/processes.ts';

/** Snapshots are taken with `bysu snapshot`; the snapshot schedule never comes due while the test runs. */
const NEVER = '0 0 1 1 *';
/** Every 3 seconds: the verify worker's schedule in the test. */
const OFTEN = '*/3 * * * * *';
const MiB = 1024 * 1024;
const TOKEN = 'verify-test-token-0123456789';

interface StatusApp {
  app: string;
  state: string;
  problems: string[];
  lastVerify: { at: string; snapshots: number; failed: { id: string; problems: string[] }[] } | null;
}

async function statusOf(cluster: TestCluster): Promise<{ code: number | null; app: StatusApp }> {
  const result = await cluster.bysu(['status', '--json']);
  return { code: result.code, app: (JSON.parse(result.stdout) as { apps: StatusApp[] }).apps.find((candidate) => candidate.app === 'shop')! };
}

const snapshotIds = async (cluster: TestCluster) => (await readdir(path.join(cluster.repository, 'shop'))).filter((name) => /^\d{8}T\d{6}Z/.test(name)).sort();

const hookEvents = (recorder: HttpRecorder, event: string) =>
  recorder.requests.filter((request) => request.path === '/hook' && (request.body as { app?: string; event?: string } | null)?.event === event && (request.body as { app?: string }).app === 'shop');

/** Flip one bit in the middle of a file, as a failing disk would; return the bytes as they were. */
async function flipByte(file: string): Promise<Buffer> {
  const original = await readFile(file);
  const damaged = Buffer.from(original);
  damaged[Math.floor(damaged.length / 2)]! ^= 0x01;
  await writeFile(file, damaged);
  return original;
}

/** What a person runs in a snapshot directory: `sha256sum -c SHA256SUMS`; its exit code. */
async function sha256sumCheck(directory: string): Promise<number | null> {
  return (await run('sha256sum', ['--quiet', '-c', 'SHA256SUMS'], { cwd: directory })).code;
}

async function snapshot(cluster: TestCluster): Promise<void> {
  const result = await cluster.bysu(['snapshot', 'shop', '--wait']);
  assert.equal(result.code, 0, result.stdout + result.stderr);
}

test('bysu up: a scheduled verify finds a flipped byte: CORRUPT, exit 1, the file named, one alert; repaired or pruned, ok again; a reload moves the schedule', async () => {
  const recorder = await startHttpRecorder();
  try {
    await withCluster(['db1'], async (cluster) => {
      const port = await freePort();
      const settings = (schedule: string) => ({
        verify: { schedule },
        notify: { webhook: `${recorder.url}/hook`, staleCheckInterval: '1s' },
        dashboard: { host: '127.0.0.1', port, apiToken: TOKEN },
        up: { snapshotWorkers: 1 },
      });
      const apps = [{ name: 'shop', node: 'db1', schedule: NEVER, keep: 2, parts: [{ file: 'shop.sql', run: 'for i in $(seq 1 2000); do echo "INSERT INTO orders VALUES ($i);"; done; date +%s%N' }] }];
      await cluster.writeConfig(apps, settings(OFTEN));
      const up = cluster.startProcess(['up']);
      await waitForLog(up, 'bysu up: scheduler, workers and dashboard running', 60_000);
      assert.match(up.output(), /verify worker started/);
      await snapshot(cluster);
      await snapshot(cluster);
      const [older, newest] = await snapshotIds(cluster);
      const lastVerify = path.join(cluster.repository, 'shop', '.last-verify.json');

      // The first scheduled verifications: both snapshots whole, recorded beside them.
      await waitUntil('both snapshots verified by the schedule', async () => {
        const record = JSON.parse(await readFile(lastVerify, 'utf8').catch(() => '{}')) as { snapshots?: { id: string; ok: boolean }[] };
        return record.snapshots?.length === 2 && record.snapshots.every((entry) => entry.ok);
      });
      const healthy = await statusOf(cluster);
      assert.equal(healthy.code, 0, JSON.stringify(healthy.app));
      assert.equal(healthy.app.state, 'ok');

      // A byte of the newest snapshot flips on disk: sha256sum -c says so, and so must BYSU.
      const newestDir = path.join(cluster.repository, 'shop', newest!);
      const original = await flipByte(path.join(newestDir, 'shop.sql'));
      assert.notEqual(await sha256sumCheck(newestDir), 0, 'sha256sum -c finds the flipped byte');
      const corrupt = await waitUntil('status to call the app corrupt', async () => {
        const current = await statusOf(cluster);
        return current.app.state === 'corrupt' ? current : null;
      });
      assert.equal(corrupt.code, 1, 'a damaged kept snapshot makes status exit 1');
      assert.ok(corrupt.app.problems.some((problem) => problem.includes(`shop/${newest}: shop.sql: checksum mismatch`)), corrupt.app.problems.join('\n'));
      assert.deepEqual(corrupt.app.lastVerify?.failed.map(({ id }) => id), [newest]);
      const table = await cluster.bysu(['status']);
      assert.equal(table.code, 1);
      assert.match(table.stdout, new RegExp(`^shop\\s+CORRUPT\\s+${newest}\\s.*verify FAILED \\S+: shop/${newest}: shop\\.sql: checksum mismatch`, 'm'));

      // The webhook hears it once, naming the snapshot and the file, however many verifications and checks follow.
      const alert = await recorder.waitFor((request) => (request.body as { event?: string } | null)?.event === 'corrupt');
      assert.equal((alert.body as { app: string }).app, 'shop');
      assert.match((alert.body as { reason: string }).reason, new RegExp(`^shop/${newest}: shop\\.sql: checksum mismatch`));
      await new Promise((resolve) => setTimeout(resolve, 7000)); // two more verifications, seven more checks
      assert.equal(hookEvents(recorder, 'corrupt').length, 1, 'corrupt is sent once per change, not at every verification');

      // Without Redis: the record and the summary beside the snapshots say it.
      const record = JSON.parse(await readFile(lastVerify, 'utf8')) as { format: string; snapshots: { id: string; ok: boolean; problems: string[]; at: string }[] };
      assert.equal(record.format, 'bysu-verify/1');
      const damagedEntry = record.snapshots.find((entry) => entry.id === newest)!;
      assert.equal(damagedEntry.ok, false);
      assert.match(damagedEntry.problems[0]!, /^shop\.sql: checksum mismatch/);
      assert.ok(!Number.isNaN(Date.parse(damagedEntry.at)), 'each verdict says when it was found');
      assert.equal(record.snapshots.find((entry) => entry.id === older)?.ok, true);
      const summary = JSON.parse(await readFile(path.join(cluster.repository, 'shop', '.summary', 'summary.json'), 'utf8')) as { lastVerify: { snapshots: { id: string; ok: boolean }[] } };
      assert.equal(summary.lastVerify.snapshots.find((entry) => entry.id === newest)?.ok, false);

      // /metrics and /api/apps.
      const base = `http://127.0.0.1:${port}`;
      await waitUntil('/metrics to say corrupt', async () => {
        const families = parsePrometheusTextFormat(await (await fetch(`${base}/metrics`)).text()) as { name: string; metrics: { value: string; labels?: Record<string, string> }[] }[];
        const value = (name: string, labels: Record<string, string>) => families.find((family) => family.name === name)?.metrics
          .find((metric) => Object.entries(labels).every(([key, wanted]) => metric.labels?.[key] === wanted))?.value;
        return value('bysu_app_state', { app: 'shop', state: 'corrupt' }) === '1' && value('bysu_app_state', { app: 'shop', state: 'ok' }) === '0'
          && value('bysu_app_damaged_snapshots', { app: 'shop' }) === '1' && Number(value('bysu_app_last_verify_timestamp_seconds', { app: 'shop' })) > 0;
      });
      const listing = (await (await fetch(`${base}/api/apps`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { apps: StatusApp[] };
      const listed = listing.apps.find((candidate) => candidate.app === 'shop')!;
      assert.equal(listed.state, 'corrupt');
      assert.deepEqual(listed.lastVerify?.failed.map(({ id }) => id), [newest]);
      assert.match(listed.lastVerify!.failed[0]!.problems[0]!, /^shop\.sql: checksum mismatch/);

      // Repaired (the bytes put back) and verified again by the schedule: ok, and the all-clear once.
      await writeFile(path.join(newestDir, 'shop.sql'), original);
      assert.equal(await sha256sumCheck(newestDir), 0);
      const repaired = await waitUntil('status ok after the repair', async () => {
        const current = await statusOf(cluster);
        return current.app.state === 'ok' ? current : null;
      });
      assert.equal(repaired.code, 0, JSON.stringify(repaired.app));
      await recorder.waitFor((request) => (request.body as { event?: string } | null)?.event === 'corrupt-cleared');
      await new Promise((resolve) => setTimeout(resolve, 3500));
      assert.equal(hookEvents(recorder, 'corrupt-cleared').length, 1);

      // The older snapshot rots now; then a reload moves the verification to a weekly schedule.
      await flipByte(path.join(cluster.repository, 'shop', older!, 'shop.sql'));
      await waitUntil('the older snapshot found damaged', async () => ((await statusOf(cluster)).app.state === 'corrupt' ? true : null));
      await waitUntil('the second corrupt alert', async () => hookEvents(recorder, 'corrupt').length === 2);
      const connection = new Redis(cluster.redis.url, { maxRetriesPerRequest: null });
      const queue = new Queue(VERIFY_QUEUE, { connection, prefix: cluster.prefix });
      try {
        assert.equal((await queue.getJobScheduler('verify-shop'))?.pattern, OFTEN);
        await cluster.writeConfig(apps, settings('0 12 * * 6'));
        process.kill(up.pid!, 'SIGHUP');
        const moved = await waitUntil('the reload to move verify-shop', async () => {
          const scheduler = await queue.getJobScheduler('verify-shop');
          return scheduler?.pattern === '0 12 * * 6' ? scheduler : null;
        });
        assert.ok((moved.next ?? 0) > Date.now() + 60_000, `the next verification is next Saturday, not in seconds (${new Date(moved.next ?? 0).toISOString()})`);
        // A verification the old schedule made before the reload may still be waiting or running: let it end.
        await waitUntil('no verification waiting or running', async () => {
          const counts = await queue.getJobCounts('waiting', 'active', 'prioritized');
          return counts.waiting === 0 && counts.active === 0 && counts.prioritized === 0;
        });
      } finally {
        await queue.close();
        connection.disconnect();
      }

      // No verification runs now. A new snapshot makes retention (keep 2) delete the damaged one: ok again, and the
      // scheduler's check, not a verification, sends the all-clear.
      await snapshot(cluster);
      await waitUntil('retention to delete the damaged snapshot', async () => !(await snapshotIds(cluster)).includes(older!));
      const pruned = await waitUntil('status ok once the damaged snapshot is gone', async () => {
        const current = await statusOf(cluster);
        return current.app.state === 'ok' ? current : null;
      });
      assert.equal(pruned.code, 0, JSON.stringify(pruned.app));
      await waitUntil('the second all-clear', async () => hookEvents(recorder, 'corrupt-cleared').length === 2);
      assert.match(up.output(), /no damaged snapshot is kept any more: all-clear sent/);
    });
  } finally {
    await recorder.close();
  }
});

test('bysu worker verify: no faster than verify.maxBytesPerSecond, one app at a time', async () => {
  await withCluster(['db1'], async (cluster) => {
    // Two apps of 20 MiB each, verified every 3 s at 10 MiB/s: each verification takes at least 2 s.
    const apps = ['big1', 'big2'].map((name) => ({ name, node: 'db1', schedule: NEVER, parts: [{ file: 'big.bin', run: `head -c ${20 * MiB} /dev/urandom` }] }));
    await cluster.writeConfig(apps, { verify: { schedule: NEVER, maxBytesPerSecond: '10MiB' } });
    const worker = cluster.startWorker();
    await waitForLog(worker, 'worker started');
    const taken = await cluster.bysu(['snapshot', 'big1', 'big2', '--wait']);
    assert.equal(taken.code, 0, taken.stdout + taken.stderr);
    await cluster.writeConfig(apps, { verify: { schedule: OFTEN, maxBytesPerSecond: '10MiB' } });
    const verifier = cluster.startProcess(['worker', 'verify']);
    const scheduler = cluster.startProcess(['scheduler']);
    await waitForLog(verifier, 'verify worker started');
    await waitForLog(scheduler, 'scheduler started');

    const connection = new Redis(cluster.redis.url, { maxRetriesPerRequest: null });
    const queue = new Queue(VERIFY_QUEUE, { connection, prefix: cluster.prefix });
    try {
      const done = await waitUntil('two verifications of each app', async () => {
        const jobs = (await queue.getJobs(['completed'])).filter((job) => job.returnvalue?.verified?.length === 1);
        const apps = new Set(jobs.map((job) => job.data.app));
        return jobs.length >= 4 && apps.size === 2 ? jobs : null;
      }, 90_000);
      for (const job of done) {
        const { bytes, ms } = job.returnvalue;
        // The part, and manifest.json (SHA256SUMS lists it too).
        assert.ok(bytes > 20 * MiB && bytes < 20 * MiB + 65_536, `${job.data.app}: ${bytes} bytes read`);
        // The bound, with a margin a coarse clock needs and that an unbounded read (20 MiB in a fraction of a second) fails.
        assert.ok(ms >= 1800, `${job.data.app}: 20 MiB verified in ${ms} ms (${(bytes / MiB / (ms / 1000)).toFixed(1)} MiB/s) against a bound of 10 MiB/s`);
        assert.ok(job.finishedOn! - job.processedOn! >= 1800);
      }
      // verify.concurrency 1: no two verifications overlap, though both apps come due at the same instant.
      const spans = done.map((job) => [job.processedOn!, job.finishedOn!] as const).sort((a, b) => a[0] - b[0]);
      for (let index = 1; index < spans.length; index += 1) assert.ok(spans[index]![0] >= spans[index - 1]![1], `verifications overlap: ${JSON.stringify(spans)}`);
    } finally {
      await queue.close();
      connection.disconnect();
    }
    assert.equal((await cluster.bysu(['status'])).code, 0, 'whole snapshots, verified: healthy');
  });
});
