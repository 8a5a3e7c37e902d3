/**
 * Fault: the repository's disk is not mounted. A real tmpfs is the disk: it
 * is unmounted while a snapshot is being written (lazily, as a yanked disk
 * leaves open files behind), and a worker is then started on the bare mount
 * point. BYSU must fail that snapshot once with the reason, create nothing on
 * the filesystem underneath, refuse to start the worker and have `status`
 * say why, instead of filling the mount point with fresh "snapshots".
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { access, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { initRepository } from '../../src/repository/marker.ts';
import { PROJECT_ROOT, waitForLog, withCluster } from '../helpers/cluster.ts';
import { recordFault } from '../helpers/fault-report.ts';
import { tmpfsUnavailable } from '../helpers/tmpfs.ts';
import { exitWithin, waitUntil } from '../helpers/processes.ts';
import { processState } from '../helpers/signals.ts';

const STOP_BEFORE_PUBLISH = path.join(PROJECT_ROOT, 'test/helpers/stop-before-publish.mjs');


const exists = (target: string) => access(target).then(() => true, () => false);


// Fails before the fix: the retry re-created <mount point>/shop and committed a snapshot on the root filesystem.
test('the repository disk is unmounted mid-snapshot, then not mounted at start: refused in one line, nothing written underneath', { skip: tmpfsUnavailable() }, async () => {
  await withCluster(['db1'], async (cluster) => {
    const node = cluster.nodes[0]!;
    const disk = path.join(cluster.dir, 'backup-disk');
    await mkdir(disk);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', disk]);
    let mounted = true;
    try {
      await initRepository(disk);
      await cluster.writeConfig([{
        name: 'shop', node: 'db1', attempts: 3, backoff: '1s',
        parts: [{ file: 'shop.sql', run: 'if [ -f "$NODE_DIR/hold" ]; then touch "$NODE_DIR/started"; while [ ! -f "$NODE_DIR/go" ]; do sleep 0.1; done; fi; echo "-- dump"' }],
      }], { repository: disk });
      const worker = cluster.startWorker();
      await waitForLog(worker, 'worker started');
      assert.equal((await cluster.bysu(['snapshot', 'shop', '--wait'])).code, 0, 'a snapshot on the mounted disk');

      await writeFile(path.join(node.dir, 'hold'), '');
      const waiting = cluster.bysu(['snapshot', 'shop', '--wait']);
      await waitUntil('the dump to start', () => exists(path.join(node.dir, 'started')), 120_000); // a CLI start, a job pickup and a login: slow on a loaded machine
      execFileSync('umount', ['-l', disk]); // the attempt's open file keeps the detached tmpfs alive, as a yanked disk's would
      mounted = false;
      await writeFile(path.join(node.dir, 'go'), '');
      const midJob = await waiting;
      const underneath = await readdir(disk);
      const reason = /shop: FAILED after (\d+) attempt\(s\): (.*)/.exec(midJob.stdout);
      const attempts = Number(reason?.[1] ?? 0);
      const midJobPass = midJob.code === 1 && attempts === 1 && /has no BYSU marker: not mounted\?/.test(reason?.[2] ?? '') && underneath.length === 0;
      recordFault({
        kind: 'fault', fault: 'repository disk unmounted mid-snapshot (tmpfs, umount -l)',
        expected: 'the job fails once ("has no BYSU marker: not mounted?"), not retried; nothing written on the mount point',
        observed: `exit ${midJob.code}, failed after ${attempts} attempt(s): ${reason?.[2] ?? midJob.stdout.trim()}; ${underneath.length} entries under the mount point`,
        pass: midJobPass,
      });

      await rm(path.join(node.dir, 'hold'));
      const restarted = cluster.startWorker();
      const workerCode = await exitWithin(restarted);
      const status = await cluster.bysu(['status']);
      const afterStart = await readdir(disk);
      const startPass = workerCode === 2 && /repository \S+ has no BYSU marker: not mounted\?/.test(restarted.output())
        && status.code === 2 && /has no BYSU marker/.test(status.stderr) && afterStart.length === 0;
      recordFault({
        kind: 'fault', fault: 'repository disk not mounted when a worker starts (bare mount point)',
        expected: 'the worker refuses to start (exit 2) with the line; status exits 2 saying why; nothing created',
        observed: `worker exit ${workerCode}, status exit ${status.code}: ${status.stderr.trim()}; ${afterStart.length} entries under the mount point`,
        pass: startPass,
      });
      assert.ok(midJobPass, `mid-job: exit ${midJob.code}\n${midJob.stdout}\nunder the mount point: ${underneath.join(', ')}`);
      assert.ok(startPass, `at start: worker exit ${workerCode}\n${restarted.output()}\nstatus ${status.code}: ${status.stderr}`);
    } finally {
      if (mounted) execFileSync('umount', ['-l', disk]);
    }
  });
});

// Fails before the fix: with the disk gone at the publishing rename, the attempt directory vanished with it and
// the commit read that as "taken over by another run while this one was paused" — a retryable conflict, so the
// job was tried again and the alert named the wrong cause.
test('the repository disk is unmounted at the publishing rename: "not mounted", not retried, nothing underneath', { skip: tmpfsUnavailable() }, async () => {
  await withCluster(['db1'], async (cluster) => {
    const disk = path.join(cluster.dir, 'backup-disk');
    await mkdir(disk);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', disk]);
    try {
      await initRepository(disk);
      await cluster.writeConfig([{ name: 'shop', node: 'db1', attempts: 3, backoff: '1s', parts: [{ file: 'a.sql', run: 'echo hi' }] }], { repository: disk });
      const worker = cluster.startWorker({ NODE_OPTIONS: `--import ${pathToFileURL(STOP_BEFORE_PUBLISH).href}`, BYSU_TEST_STOP_BEFORE_PUBLISH: '1' });
      await waitForLog(worker, 'worker started');
      const waiting = cluster.bysu(['snapshot', 'shop', '--wait']);
      await waitForLog(worker, 'test: stopping before publishing', 120_000);
      await waitUntil('the worker to stop itself', async () => processState(worker.pid!) === 'T');
      execFileSync('umount', ['-l', disk]);
      worker.kill('SIGCONT');
      const result = await waiting;
      const underneath = await readdir(disk);
      const reason = /FAILED after (\d+) attempt\(s\): (.*)/.exec(result.stdout);
      recordFault({
        kind: 'fault',
        fault: 'repository disk unmounted (umount -l) at the commit\'s rename',
        expected: 'failed once with "no BYSU marker: not mounted?"; nothing underneath',
        observed: `exit ${result.code}; ${reason ? `failed after ${reason[1]} attempt(s): ${reason[2]!.slice(0, 80)}` : result.stdout.trim().slice(0, 120)}; ${underneath.length} entries underneath`,
        pass: result.code === 1 && reason?.[1] === '1' && /no BYSU marker/.test(reason[2]!) && underneath.length === 0,
      });
      assert.equal(result.code, 1, result.stdout + result.stderr);
      assert.match(result.stdout, /FAILED after 1 attempt\(s\): repository .* has no BYSU marker: not mounted\?/);
      assert.deepEqual(underneath, []);
    } finally {
      try {
        execFileSync('umount', ['-l', disk], { stdio: 'pipe' });
      } catch {
        // unmounted by the test already
      }
      await rm(disk, { recursive: true, force: true });
    }
  });
});
