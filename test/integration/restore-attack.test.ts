/**
 * Attacks on `bysu restore`, `bysu cat` and `bysu status` (issue 14 review).
 * Each test states the promise it breaks; each fails on the product as it is.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { after, before, describe, test } from 'node:test';
import tar from 'tar-stream';
import { BYSU_BIN, openCluster, waitForLog, type TestCluster } from '../helpers/cluster.ts';
import { exitWithin, spawnTracked } from '../helpers/processes.ts';

const BIG_BYTES = 200_000_000;

/** Given a port, return the pid of the redis-server listening on it (from /proc cmdlines). */
function redisPid(port: number): number {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // redis-server rewrites its title to `/usr/bin/redis-server 127.0.0.1:<port>`.
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes('redis-server') && cmdline.includes(`127.0.0.1:${port}`)) return Number(entry);
    } catch {
      // gone
    }
  }
  throw new Error(`no redis-server on port ${port}`);
}

describe('restore / cat / status attacks', () => {
  let cluster: TestCluster;
  let close: (() => Promise<void>) | undefined;

  before(async () => {
    ({ cluster, close } = await openCluster(['db1']));
    const node = cluster.nodes[0]!;
    // A tar holding a character device node (1:3, /dev/null's numbers: harmless, but any major:minor works, /dev/mem's, the host disk's).
    const pack = tar.pack();
    pack.entry({ name: 'ok.txt' }, 'x\n');
    pack.entry({ name: 'dev-node', type: 'character-device', devmajor: 1, devminor: 3 }).end(() => undefined);
    pack.entry({ name: 'blk-node', type: 'block-device', devmajor: 7, devminor: 0 }).end(() => undefined);
    pack.finalize();
    await writeFile(path.join(node.dir, 'devices.tar'), await buffer(pack));
    await cluster.writeConfig([
      { name: 'big', node: 'db1', parts: [{ file: 'big.bin', run: `head -c ${BIG_BYTES} /dev/urandom` }] },
      { name: 'devs', node: 'db1', parts: [{ file: 'devices.tar', run: 'cat "$NODE_DIR/devices.tar"' }] },
      { name: 'fifo', node: 'db1', parts: [{ file: 'data.sql', run: 'echo "select 1;"' }] },
    ]);
    const worker = cluster.startWorker();
    await waitForLog(worker, 'snapshot worker started');
    for (const app of ['big', 'devs', 'fifo']) {
      const taken = await cluster.bysu(['snapshot', app, '--wait']);
      assert.equal(taken.code, 0, taken.stdout + taken.stderr);
    }
  });

  after(async () => {
    await close?.();
  });

  // PROVES: "never leaves a half-restored directory under the target name" does not hold for an existing empty
  // target (a mount point, the documented use): the staging directory lives INSIDE it, so a kill -9 during the
  // copy leaves the target holding a hidden, partial `.bysu-restore-XXXXXX` copy; the target is no longer empty
  // and the next `bysu restore --to` it is refused (exit 2) until someone finds and removes it by hand.
  // After the fix: kill -9 cannot clean up, so the hidden staging directory may stay, but it does not make the
  // target non-empty: the next restore into it succeeds and removes it.
  test('kill -9 mid-copy into an existing empty target: the next restore into it succeeds and leaves no partial copy', async () => {
    const target = path.join(cluster.dir, 'mountpoint');
    await mkdir(target);
    const child = spawnTracked(BYSU_BIN, ['restore', 'big', '--to', target], { env: { ...process.env, BYSU_CONFIG: cluster.configFile } });
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && (await readdir(target)).length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    child.kill('SIGKILL');
    await exitWithin(child, 10_000);
    const left = await readdir(target);
    assert.ok(left.every((name) => /^\.bysu-restore-[A-Za-z0-9]{6}$/.test(name)), `after kill -9 only a hidden staging directory may be left: ${JSON.stringify(left)}`);
    const again = await cluster.bysu(['restore', 'big', '--to', target]);
    assert.equal(again.code, 0, `the next restore into the same target: ${again.stdout}${again.stderr}`);
    assert.ok((await readdir(target)).every((name) => !name.startsWith('.bysu-restore-')), 'the leftover was removed');
  });

  // PROVES: `--extract` as root (how the README says to restore originals) creates device nodes from the archive
  // in the target: a char device 1:3 and a block device 7:0 (/dev/loop0) appear in the restored tree. Opening such
  // a node reaches the host's device, outside the target: "nothing may land or point outside the target" does not
  // hold, and no fence judges entry types 3/4 (unsafeEntryReason, checkExtractedTree ignore them).
  test('--extract as root refuses an archive holding device nodes', { skip: process.getuid?.() !== 0 ? 'needs root' : false }, async () => {
    const target = path.join(cluster.dir, 'devs-extracted');
    const result = await cluster.bysu(['restore', 'devs', '--extract', '--to', target]);
    const made = await stat(path.join(target, 'blk-node')).then((info) => (info.isBlockDevice() ? 'a block device node' : 'something'), () => null);
    assert.equal(made, null, `restore exited ${result.code} and created ${made} in the target: ${result.stdout}${result.stderr}`);
    assert.equal(result.code, 1, result.stdout + result.stderr);
  });

  // PROVES: "a file is opened with O_NOFOLLOW and checked as a regular file on the open handle" - a FIFO put in
  // place of a part is never refused: open(2) without O_NONBLOCK blocks forever, so `bysu cat` hangs (no output,
  // no exit) instead of saying "is not a regular file", exit 1. `bysu restore` hangs the same way.
  test('a FIFO in place of a part: bysu cat refuses it promptly instead of hanging', async () => {
    const snapshots = (await readdir(path.join(cluster.repository, 'fifo'))).filter((name) => /^\d{8}T\d{6}Z$/.test(name));
    const file = path.join(cluster.repository, 'fifo', snapshots[0]!, 'data.sql');
    await rm(file);
    execFileSync('mkfifo', ['-m', '600', file]);
    for (const args of [['cat', 'fifo', 'data.sql'], ['restore', 'fifo', '--to', path.join(cluster.dir, 'fifo-restored')]]) {
      const child = spawnTracked(BYSU_BIN, args, { env: { ...process.env, BYSU_CONFIG: cluster.configFile }, stdio: ['ignore', 'pipe', 'pipe'] });
      const code = await exitWithin(child, 10_000);
      if (code === 'still running') child.kill('SIGKILL');
      assert.notEqual(code, 'still running', `bysu ${args.join(' ')} still running after 10 s on a FIFO in the repository`);
      assert.equal(code, 1);
    }
  });

  // Status with Redis SIGSTOPped: must show the repository's view, one line saying Redis is unreachable, exit 1,
  // within seconds.
  test('status with Redis SIGSTOPped answers within 15 s, exit 1, saying Redis is unreachable', async () => {
    const pid = redisPid(cluster.redis.port);
    process.kill(pid, 'SIGSTOP');
    try {
      for (const args of [['status'], ['status', '--json']]) {
        const started = Date.now();
        const result = await cluster.bysu(args, { timeoutMs: 15_000 });
        const took = Date.now() - started;
        assert.ok(took < 15_000, `bysu ${args.join(' ')} took ${took} ms`);
        assert.equal(result.code, 1, `bysu ${args.join(' ')}: code ${result.code} after ${took} ms: ${result.stdout}${result.stderr}`);
        if (args.includes('--json')) assert.equal(JSON.parse(result.stdout).redis.reachable, false);
        else assert.match(result.stdout, /Redis unreachable/);
      }
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  });
});
