/**
 * Faults of the centre: the repository's disk filling up mid-snapshot, Redis
 * restarting (AOF on) with jobs queued and running, and retention racing
 * commits of the same app. Nothing committed may be lost, nothing partial may
 * become visible, no job may run to a second commit, and work must resume.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { SNAPSHOT_QUEUE } from '../../src/queue/jobs.ts';
import { initRepository } from '../../src/repository/marker.ts';
import { waitForLog, withCluster, type TestCluster } from '../helpers/cluster.ts';
import { recordFault } from '../helpers/fault-report.ts';
import { tmpfsUnavailable } from '../helpers/tmpfs.ts';
import { run } from '../helpers/processes.ts';

const noTmpfs = tmpfsUnavailable();

async function snapshotsOf(cluster: TestCluster, app: string, repository = cluster.repository): Promise<string[]> {
  return (await readdir(path.join(repository, app)).catch(() => [] as string[])).filter((name) => /^\d{8}T\d{6}Z/.test(name)).sort();
}

async function sumsOk(directory: string): Promise<boolean> {
  return (await run('sha256sum', ['-c', '--quiet', 'SHA256SUMS'], { cwd: directory })).code === 0;
}

test('the repository disk fills up: the attempt fails saying so, leaves nothing, and the retry succeeds once space is freed', {
  skip: noTmpfs,
}, async () => {
  await withCluster(['db1'], async (cluster) => {
    const repository = path.join(cluster.dir, 'small-disk');
    await mkdir(repository);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', repository]);
    try {
      await initRepository(repository);
      await cluster.writeConfig([
        { name: 'small', node: 'db1', parts: [{ file: 'a.bin', run: 'head -c 1000000 /dev/urandom' }] },
        { name: 'medium', node: 'db1', attempts: 6, backoff: '2s', parts: [{ file: 'b.bin', run: 'head -c 1500000 /dev/urandom' }] },
      ], { repository });
      const worker = cluster.startWorker();
      await waitForLog(worker, 'worker started');
      assert.equal((await cluster.bysu(['snapshot', 'small', '--wait'])).code, 0);
      const [small] = await snapshotsOf(cluster, 'small', repository);

      const filler = path.join(repository, 'filler');
      await writeFile(filler, Buffer.alloc(2_600_000));
      const waiting = cluster.bysu(['snapshot', 'medium', '--wait'], { timeoutMs: 120_000 });
      await waitForLog(worker, 'the repository disk is full (ENOSPC)', 60_000);
      const incoming = await readdir(path.join(repository, 'medium', '.incoming')).catch(() => []);
      const partial = (await snapshotsOf(cluster, 'medium', repository)).length;
      const intact = await sumsOk(path.join(repository, 'small', small!));
      await rm(filler);
      const result = await waiting;
      assert.deepEqual(incoming, [], 'the failed attempt removed its files');
      assert.equal(partial, 0, 'nothing of medium became visible');
      assert.ok(intact, 'the older snapshot is intact');
      assert.equal(result.code, 0, result.stdout);
      assert.match(result.stdout, /medium: attempt \d+ of 6 failed, will retry: .*the repository disk is full \(ENOSPC\)/);
      const [medium] = await snapshotsOf(cluster, 'medium', repository);
      assert.ok(await sumsOk(path.join(repository, 'medium', medium!)));
      recordFault({
        kind: 'fault', fault: 'repository disk full (4 MiB tmpfs)', expected: '"disk is full"; no partial files; old snapshots intact; retry succeeds',
        observed: `failed with ENOSPC, .incoming empty, ${small} intact; committed ${medium} after space was freed`, pass: true, lost: 0, partialVisible: 0,
      });
    } finally {
      execFileSync('umount', ['-l', repository]);
    }
  });
});

test('Redis restarts (AOF) with 20 jobs queued and some running: all complete, none twice, schedulers kept, workers resume', async () => {
  await withCluster(['n1', 'n2', 'n3', 'n4', 'n5'], async (cluster) => {
    const apps = Array.from({ length: 20 }, (_, index) => ({
      name: `app${String(index).padStart(2, '0')}`,
      node: `n${(index % 5) + 1}`,
      attempts: 5,
      backoff: '1s',
      parts: [{ file: 'a.sql', run: 'sleep 1; echo dump' }],
    }));
    await cluster.writeConfig(apps, { concurrency: { global: 4, perNode: 1, perWorker: 4, busyNodeDelay: '500ms', lockDuration: '5s', stalledInterval: '2s' } });
    const scheduler = cluster.startProcess(['scheduler']);
    await waitForLog(scheduler, 'scheduler started');
    const workers = [cluster.startWorker(), cluster.startWorker()];
    for (const worker of workers) await waitForLog(worker, 'worker started');
    const enqueued = await cluster.bysu(['snapshot', '--all']);
    assert.equal(enqueued.code, 0);
    for (const worker of workers) await waitForLog(worker, '"msg":"snapshot committed"', 30_000).catch(() => undefined);
    const committedBefore = (await Promise.all(apps.map((app) => snapshotsOf(cluster, app.name)))).flat().length;
    await cluster.redis.restart();
    const restartedAt = Date.now();

    const deadline = Date.now() + 120_000;
    let done = 0;
    while (Date.now() < deadline) {
      done = (await Promise.all(apps.map((app) => snapshotsOf(cluster, app.name)))).filter((ids) => ids.length > 0).length;
      if (done === apps.length) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const perApp = await Promise.all(apps.map((app) => snapshotsOf(cluster, app.name)));
    const markers = await Promise.all(apps.map(async (app) => (await readdir(path.join(cluster.repository, app.name, '.commits')).catch(() => [])).length));
    const connection = new Redis(cluster.redis.url, { maxRetriesPerRequest: null });
    const queue = new Queue(SNAPSHOT_QUEUE, { connection, prefix: cluster.prefix });
    const schedulers = await queue.getJobSchedulers(0, -1);
    await queue.close();
    connection.disconnect();
    assert.equal(done, 20, `all 20 apps committed (${done})`);
    assert.ok(perApp.every((ids) => ids.length === 1), `exactly one snapshot each: ${perApp.map((ids) => ids.length).join(',')}`);
    assert.ok(markers.every((count) => count === 1), 'one commit per job');
    assert.equal(schedulers.length, 20, 'the job schedulers survived the restart');
    recordFault({
      kind: 'fault', fault: 'Redis restarted with 20 jobs queued/running', expected: 'all complete, none twice, schedulers kept, workers resume',
      observed: `${committedBefore} committed before, all 20 after ${((Date.now() - restartedAt) / 1000).toFixed(1)} s; 1 snapshot each; 20 schedulers`, pass: true, lost: 0, partialVisible: 0,
    });
  }, { appendonly: true });
});

test('retention and commits racing on one app: never the new snapshot or the latest target deleted', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig([{ name: 'race', node: 'db1', keep: 1, parts: [{ file: 'a.sql', run: 'echo dump; sleep 0.2' }] }]);
    const worker = cluster.startWorker();
    const retention = cluster.startProcess(['worker', 'retention']);
    await waitForLog(worker, 'worker started');
    await waitForLog(retention, 'worker started');
    let stop = false;
    let prunes = 0;
    let brokenLatest = 0;
    const pruning = (async () => {
      while (!stop) {
        await cluster.bysu(['prune', 'race']);
        prunes += 1;
        const target = await readlink(path.join(cluster.repository, 'race', 'latest')).catch(() => null);
        if (target !== null && !(await stat(path.join(cluster.repository, 'race', target, 'manifest.json')).catch(() => null))) brokenLatest += 1;
      }
    })();
    for (let round = 0; round < 8; round += 1) {
      const result = await cluster.bysu(['snapshot', 'race', '--wait']);
      assert.equal(result.code, 0, result.stdout);
      const id = /committed (\S+)/.exec(result.stdout)![1]!;
      const latest = await readlink(path.join(cluster.repository, 'race', 'latest'));
      assert.ok(latest >= id, `latest (${latest}) is the new snapshot or a newer one`);
      assert.ok(await stat(path.join(cluster.repository, 'race', latest, 'manifest.json')), 'latest is complete');
    }
    stop = true;
    await pruning;
    await cluster.bysu(['prune', 'race']);
    const ids = await snapshotsOf(cluster, 'race');
    assert.equal(brokenLatest, 0, 'latest never pointed at a deleted snapshot');
    assert.deepEqual(ids, [await readlink(path.join(cluster.repository, 'race', 'latest'))], 'keep 1: the newest stays, it is latest');
    recordFault({
      kind: 'fault', fault: 'retention racing 8 commits (keep 1)', expected: 'new snapshot and latest target never deleted',
      observed: `${prunes} prunes during 8 commits; latest always complete; 1 snapshot left = latest`, pass: true, lost: 0, partialVisible: 0,
    });
  });
});

/**
 * Whether this machine can give us a disk whose writeback fails: an ext2 on a
 * loop device whose backing file lives on a nearly full tmpfs; else why not.
 */
function loopDiskUnavailable(): string | false {
  if (noTmpfs) return noTmpfs;
  for (const tool of ['losetup', 'mkfs.ext2']) {
    try {
      execFileSync('which', [tool], { stdio: 'pipe' });
    } catch {
      return `${tool} is not installed (util-linux, e2fsprogs)`;
    }
  }
  try {
    execFileSync('losetup', ['-f'], { stdio: 'pipe' });
    return false;
  } catch (error) {
    return `no free loop device here (${(error as Error).message.split('\n')[0]})`;
  }
}
const noLoopDisk = loopDiskUnavailable();

test('a writeback error after the first 64 MiB fails the part: it is never reported as written', { skip: noLoopDisk }, async () => {
  const base = mkdtempSync(path.join(os.tmpdir(), 'bysu-writeback-'));
  const backing = path.join(base, 'backing');
  const disk = path.join(base, 'disk');
  await mkdir(backing);
  await mkdir(disk);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=200m', 'tmpfs', backing]);
  let loop = '';
  try {
    execFileSync('truncate', ['-s', '256M', path.join(backing, 'disk.img')]);
    execFileSync('mkfs.ext2', ['-q', '-F', path.join(backing, 'disk.img')]);
    loop = execFileSync('losetup', ['-f', '--show', path.join(backing, 'disk.img')], { encoding: 'utf8' }).trim();
    execFileSync('mount', [loop, disk]);
    // Leave 12 MiB on the backing store: the loop device cannot write back the first 64 MiB.
    const free = Number(execFileSync('df', ['--output=avail', '-k', backing], { encoding: 'utf8' }).trim().split('\n').at(-1));
    const filler = path.join(backing, 'filler');
    execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=1k', `count=${free - 12 * 1024}`, 'status=none']);

    const { createPartFile } = await import('../../src/repository/part-writer.ts');
    const { Readable } = await import('node:stream');
    const { pipeline } = await import('node:stream/promises');
    const batch = 128 * 1024;
    const first = 64 * 1024 * 1024;
    const total = first + 4 * 1024 * 1024;
    let sent = 0;
    let roomMade = false;
    const source = new Readable({
      read() {
        if (sent >= total) {
          this.push(null);
          return;
        }
        if (sent === first && !roomMade) {
          // 64 MiB are on the thread, whose fdatasync now fails; then room is made, so that the rest (and the closing fsync) could succeed.
          setTimeout(() => {
            rmSync(filler);
            roomMade = true;
            sent += batch;
            this.push(Buffer.alloc(batch, 2));
          }, 3000);
          return;
        }
        sent += batch;
        this.push(Buffer.alloc(batch, 1));
      },
    });
    const sink = createPartFile(path.join(disk, 'part.bin'), 0o600);
    const outcome = await pipeline(source, sink).then(() => 'written', (error: NodeJS.ErrnoException) => error);
    assert.ok(outcome instanceof Error, `the part was reported as written (${JSON.stringify(sink.result)}) though its first 64 MiB never reached the disk`);
    assert.ok(['EIO', 'ENOSPC'].includes(outcome.code ?? ''), `${outcome.code}: ${outcome.message}`);
    assert.equal(sink.result, null);
    await sink.closeFile();
    recordFault({
      kind: 'fault', fault: 'writeback fails under the part writer (ext2 on a loop device, backing store full)',
      expected: 'the part fails with the I/O error; not reported as written', observed: `failed with ${outcome.code} (${outcome.syscall})`, pass: true, lost: 0, partialVisible: 0,
    });
  } finally {
    // Each step may already be undone (a loop device detaches itself when its last user goes): none may hide the test's own outcome.
    const quietly = (command: string, args: string[]) => {
      try {
        execFileSync(command, args, { stdio: 'pipe' });
      } catch {
        // already undone
      }
    };
    quietly('umount', [disk]);
    quietly('umount', ['-l', disk]);
    if (loop) quietly('losetup', ['-d', loop]);
    quietly('umount', ['-l', backing]);
    rmSync(base, { recursive: true, force: true });
  }
});
