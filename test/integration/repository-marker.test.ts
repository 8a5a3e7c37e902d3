/**
 * The repository root is never re-created, with real processes: a repository
 * that goes away while a snapshot runs (moved away, or replaced by the empty
 * mount point a missing disk leaves) fails that job once, loudly, and leaves
 * nothing behind; workers refuse to start; every command refuses with one
 * line; the dashboard reports it; `bysu init` is idempotent.
 */
import assert from 'node:assert/strict';
import { access, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { loadConfig } from '../../src/config/load.ts';
import { enqueueManualSnapshot } from '../../src/queue/enqueue.ts';
import { SNAPSHOT_QUEUE } from '../../src/queue/jobs.ts';
import { waitForLog, withCluster, type TestCluster } from '../helpers/cluster.ts';
import { exitWithin, freePort, waitUntil } from '../helpers/processes.ts';

const exists = (target: string) => access(target).then(() => true, () => false);

const NOT_MOUNTED = /^bysu: repository \S+ (has no BYSU marker: not mounted\? run bysu init only for a new repository|does not exist: not mounted\? run bysu init only to create a new repository)$/;

/** An app whose dump, while `$NODE_DIR/hold` exists, says it started and waits for `$NODE_DIR/go`. */
const HELD_APP = {
  name: 'shop',
  node: 'db1',
  attempts: 3,
  backoff: '1s',
  parts: [{ file: 'shop.sql', run: 'if [ -f "$NODE_DIR/hold" ]; then touch "$NODE_DIR/started"; while [ ! -f "$NODE_DIR/go" ]; do sleep 0.1; done; fi; echo "-- dump"' }],
};

/** Move the repository away (its disk goes), optionally leaving an empty mount point; returns a function that brings it back. */
async function unmount(cluster: TestCluster, leave: 'nothing' | 'empty mount point'): Promise<() => Promise<void>> {
  const away = `${cluster.repository}.away`;
  await rename(cluster.repository, away);
  if (leave === 'empty mount point') await mkdir(cluster.repository);
  return async () => {
    await rm(cluster.repository, { recursive: true, force: true });
    await rename(away, cluster.repository);
  };
}

// Fails before the fix: the first attempt failed (ENOENT on the moved attempt), the retry re-created
// the root with mkdir -p and committed there, and `--wait` exited 0 ("expected 1, got 0").
test('the repository goes away mid-snapshot: the job fails once with one line, is not retried, and nothing is created', async () => {
  await withCluster(['db1'], async (cluster) => {
    const node = cluster.nodes[0]!;
    await cluster.writeConfig([HELD_APP]);
    const worker = cluster.startWorker();
    await waitForLog(worker, 'worker started');
    assert.equal((await cluster.bysu(['snapshot', 'shop', '--wait'])).code, 0, 'a first snapshot commits');

    for (const leave of ['nothing', 'empty mount point'] as const) {
      await writeFile(path.join(node.dir, 'hold'), '');
      await rm(path.join(node.dir, 'go'), { force: true });
      await rm(path.join(node.dir, 'started'), { force: true });
      const waiting = cluster.bysu(['snapshot', 'shop', '--wait']);
      await waitUntil('the dump to start', () => exists(path.join(node.dir, 'started')), 120_000); // a CLI start, a job pickup and a login: slow on a loaded machine
      const remount = await unmount(cluster, leave);
      await writeFile(path.join(node.dir, 'go'), '');
      const result = await waiting;
      const afterwards = leave === 'nothing' ? await exists(cluster.repository) : await readdir(cluster.repository);
      await remount();
      assert.equal(result.code, 1, `${leave}: ${result.stdout}${result.stderr}`);
      assert.match(result.stdout, new RegExp(`shop: FAILED after 1 attempt\\(s\\): repository ${cluster.repository} (has no BYSU marker|does not exist): not mounted\\? run bysu init only (for|to create) a new repository\\n`), leave);
      assert.doesNotMatch(result.stdout, /will retry/, `${leave}: not retried`);
      if (leave === 'nothing') assert.equal(afterwards, false, 'the root was not re-created');
      else assert.deepEqual(afterwards, [], 'nothing was written into the empty mount point');
    }
    assert.equal((await cluster.bysu(['list', 'shop', '--json']).then((listed) => JSON.parse(listed.stdout))).length, 1, 'the first snapshot is still the only one');
  });
});

// Fails before the fix: `bysu snapshot` enqueued, and the worker re-created the root and committed (exit 0).
test('a repository missing when a job starts: the command refuses before enqueueing, the worker fails the job once and creates nothing', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig([{ ...HELD_APP, attempts: 3 }]);
    const worker = cluster.startWorker();
    await waitForLog(worker, 'worker started');
    const remount = await unmount(cluster, 'nothing');
    try {
      const refused = await cluster.bysu(['snapshot', 'shop', '--wait']);
      assert.equal(refused.code, 2, refused.stdout);
      assert.match(refused.stderr.trim(), NOT_MOUNTED);
      assert.doesNotMatch(refused.stdout, /enqueued/);

      // A job that reaches the worker anyway (the scheduler does not look at the repository).
      const config = loadConfig(cluster.configFile);
      const connection = new Redis(cluster.redis.url, { maxRetriesPerRequest: null });
      const queue = new Queue(SNAPSHOT_QUEUE, { connection, prefix: cluster.prefix });
      try {
        const jobId = await enqueueManualSnapshot(queue, config, config.apps[0]!);
        const job = await waitUntil('the job to fail', async () => {
          const found = await queue.getJob(jobId);
          return (await found?.isFailed()) ? found : null;
        });
        assert.equal(job!.attemptsMade, 1, 'not retried');
        assert.match(job!.failedReason, /^repository \S+ does not exist: not mounted\? run bysu init only to create a new repository$/);
      } finally {
        await queue.close();
        connection.disconnect();
      }
      assert.equal(await exists(cluster.repository), false, 'the root was not re-created');
    } finally {
      await remount();
    }
  });
});

// Fails before the fix: the snapshot worker re-created the root and stayed up; the others started on it.
test('workers and bysu up refuse to start on a missing or unmarked repository: exit 2 with the line', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig([HELD_APP], { dashboard: { host: '127.0.0.1', port: await freePort() } });
    for (const leave of ['nothing', 'empty mount point'] as const) {
      const remount = await unmount(cluster, leave);
      try {
        for (const args of [['worker', 'snapshot'], ['worker', 'retention'], ['worker', 'drill'], ['up']]) {
          const child = cluster.startProcess(args);
          const code = await exitWithin(child);
          assert.equal(code, 2, `${args.join(' ')} (${leave}): ${child.output()}`);
          assert.ok(child.output().split('\n').some((line) => NOT_MOUNTED.test(line)), `${args.join(' ')} (${leave}) says why:\n${child.output()}`);
        }
        if (leave === 'nothing') assert.equal(await exists(cluster.repository), false);
        else assert.deepEqual(await readdir(cluster.repository), []);
      } finally {
        await remount();
      }
    }
  });
});

// Fails before the fix: list/latest/verify/prune printed "no snapshots" and exited 0 on an empty mount point, and /healthz said ok.
test('every command refuses an unmarked repository with one line; the dashboard reports it until bysu init', async () => {
  await withCluster(['db1'], async (cluster) => {
    const port = await freePort();
    await cluster.writeConfig([{ ...HELD_APP, drill: { node: 'db1', steps: [{ run: 'cat >/dev/null', stdin: 'shop.sql' }] } }], { dashboard: { host: '127.0.0.1', port, apiToken: 'token-0123456789abcdef' } });
    const remount = await unmount(cluster, 'empty mount point');
    try {
      for (const args of [['list', 'shop'], ['latest', 'shop'], ['verify', '--all'], ['prune', '--all'], ['status'], ['snapshot', 'shop'], ['drill', 'shop'], ['restore', 'shop'], ['cat', 'shop', 'shop.sql']]) {
        const result = await cluster.bysu(args);
        assert.equal(result.code, 2, `${args.join(' ')}: ${result.stdout}${result.stderr}`);
        assert.match(result.stderr.trim(), NOT_MOUNTED, args.join(' '));
        assert.equal(result.stdout, '', `${args.join(' ')} prints nothing else`);
      }
      const dashboard = cluster.startProcess(['dashboard']);
      await waitForLog(dashboard, 'dashboard started');
      await waitForLog(dashboard, 'has no BYSU marker');
      const base = `http://127.0.0.1:${port}`;
      const health = await fetch(`${base}/healthz`);
      assert.equal(health.status, 503);
      assert.match(((await health.json()) as { repository: string }).repository, /has no BYSU marker: not mounted\?/);
      assert.match(await (await fetch(`${base}/metrics`)).text(), /^bysu_repository_ok 0$/m);
      const api = await fetch(`${base}/api/apps`, { headers: { authorization: 'Bearer token-0123456789abcdef' } });
      assert.equal(api.status, 503);
      assert.match(((await api.json()) as { error: string }).error, /has no BYSU marker/);
      assert.deepEqual(await readdir(cluster.repository), [], 'nothing was written into the mount point');

      // The operator decides it is a new repository after all.
      const init = await cluster.bysu(['init']);
      assert.equal(init.code, 0, init.stderr);
      assert.equal((await fetch(`${base}/healthz`)).status, 200);
      assert.match(await (await fetch(`${base}/metrics`)).text(), /^bysu_repository_ok 1$/m);
    } finally {
      await remount();
    }
  });
});

// Fails before the fix: there was no `bysu init` (unknown command, exit 2).
test('bysu init creates a 0700 root once and is a no-op after; it refuses a directory holding foreign files', async () => {
  await withCluster([], async (cluster) => {
    const fresh = path.join(cluster.dir, 'new-repository');
    await cluster.writeConfig([], { repository: fresh });
    const first = await cluster.bysu(['init']);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, new RegExp(`^created repository ${fresh} \\(id [0-9a-f-]{36}\\)\\n`));
    assert.equal((await stat(fresh)).mode & 0o777, 0o700);
    const marker = await readFile(path.join(fresh, '.bysu-repository'), 'utf8');
    const second = await cluster.bysu(['init']);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /is already initialised \(id [0-9a-f-]{36}, created .*\): nothing to do/);
    assert.equal(await readFile(path.join(fresh, '.bysu-repository'), 'utf8'), marker, 'the marker is unchanged');

    const foreign = path.join(cluster.dir, 'home-dir');
    await mkdir(foreign);
    await writeFile(path.join(foreign, 'photo.jpg'), 'x');
    await cluster.writeConfig([], { repository: foreign });
    const refused = await cluster.bysu(['init']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr.trim(), /^bysu: refusing to make \S+ a repository: it is not empty and holds things that are not BYSU's \(photo\.jpg\); choose an empty directory or a new path$/);
    assert.equal(await exists(path.join(foreign, '.bysu-repository')), false);
  });
});
