/**
 * The snapshot pipeline end to end, with a real redis-server, a real OpenSSH
 * sshd node and the real `bysu` CLI and worker processes: committed snapshots
 * are checked with sha256sum and tar, failures leave nothing behind.
 */
import assert from 'node:assert/strict';
import { lstat, mkdir, readdir, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import tar from 'tar-stream';
import { buffer } from 'node:stream/consumers';
import { BYSU_BIN, openCluster, waitForLog, type TestCluster } from '../helpers/cluster.ts';
import { run, spawnTracked, stopProcess } from '../helpers/processes.ts';
import { RUNTIME_V8_FLAGS } from '../../src/cli/runtime-flags.ts';

const WRONG_PIN = `SHA256:${'A'.repeat(43)}`;

/** A tar archive cut right after its only entry: valid blocks, no end-of-archive marker. */
async function tarWithoutEndMarker(): Promise<Buffer> {
  const pack = tar.pack();
  pack.entry({ name: 'a.txt' }, 'hello tar\n');
  pack.finalize();
  const whole = await buffer(pack);
  return whole.subarray(0, 1024);
}

function linesFor(output: string, app: string): string[] {
  return output.split('\n').filter((line) => line.startsWith(`${app}:`));
}

async function snapshotDirs(repository: string, app: string): Promise<string[]> {
  try {
    return (await readdir(path.join(repository, app))).filter((name) => /^\d{8}T\d{6}Z/.test(name));
  } catch {
    return [];
  }
}

describe('snapshot pipeline against a real sshd node', () => {
  let cluster: TestCluster;
  let close: (() => Promise<void>) | undefined;
  let worker: ReturnType<TestCluster['startWorker']>;

  before(async () => {
    ({ cluster, close } = await openCluster(['db1']));
    const node = cluster.nodes[0]!;
    await mkdir(path.join(node.dir, 'uploads/img'), { recursive: true });
    await writeFile(path.join(node.dir, 'uploads/img/logo.png'), Buffer.alloc(70_000, 7));
    await writeFile(path.join(node.dir, 'uploads/readme.txt'), 'uploads\n');
    await writeFile(path.join(node.dir, 'trunc.tar'), await tarWithoutEndMarker());
    await cluster.writeConfig(
      [
        {
          name: 'shop',
          node: 'db1',
          parts: [
            { file: 'shop.sql', run: "printf 'CREATE TABLE t (x int);\\nINSERT INTO t VALUES (42);\\n'" },
            { file: 'uploads.tar', run: 'tar -C "$NODE_DIR" -cf - uploads' },
            { file: 'uploads.tgz', run: 'tar -C "$NODE_DIR" -czf - uploads' },
          ],
        },
        { name: 'failing', node: 'db1', attempts: 2, backoff: '1s', parts: [{ file: 'db.sql', run: "echo 'partial dump'; echo 'pg_dump: error: connection to server failed' >&2; exit 3" }] },
        { name: 'latin1', node: 'db1', attempts: 1, parts: [{ file: 'db.sql', run: "printf 'pg_dump: error: password authentication failed\\n\\374berschreiben\\n' >&2; exit 1" }] },
        { name: 'killed', node: 'db1', attempts: 1, parts: [{ file: 'db.sql', run: 'echo started; kill -KILL $$' }] },
        { name: 'truncated', node: 'db1', attempts: 1, parts: [{ file: 'data.tar', run: 'cat "$NODE_DIR/trunc.tar"' }] },
        { name: 'garbage', node: 'db1', attempts: 1, parts: [{ file: 'data.tar', run: 'head -c 5000 /dev/urandom' }] },
        { name: 'huge', node: 'db1', attempts: 1, maxBytes: '1MiB', parts: [{ file: 'a.sql', run: 'echo ok' }, { file: 'zero.bin', run: 'head -c 20000000 /dev/zero' }] },
        { name: 'stuck', node: 'db1', attempts: 1, stallTimeout: '2s', parts: [{ file: 'a.sql', run: 'echo begin; sleep 30' }] },
        { name: 'pinned', node: 'db1-wrongpin', attempts: 4, parts: [{ file: 'a.sql', run: 'echo should not run' }] },
        { name: 'stranger', node: 'db1-unknown', attempts: 4, parts: [{ file: 'a.sql', run: 'echo should not run' }] },
        { name: 'slowpoke', node: 'db1', attempts: 1, timeout: '2s', stallTimeout: '1m', parts: [{ file: 'a.sql', run: 'for i in 1 2 3 4 5 6; do echo $i; sleep 0.5; done' }] },
        { name: 'progress', node: 'db1', parts: [{ file: 'zero.bin', run: 'for i in 1 2 3 4 5; do head -c 300000 /dev/zero; sleep 0.7; done' }] },
        { name: 'accepted', node: 'db1', parts: [{ file: 'files.tar', run: 'tar -C "$NODE_DIR" -cf - uploads; exit 1', okExitCodes: [0, 1] }] },
      ],
      {
        nodes: [
          { name: 'db1', host: node.host, port: node.port },
          { name: 'db1-wrongpin', host: node.host, port: node.port, hostKey: WRONG_PIN },
          { name: 'db1-unknown', host: 'localhost', port: node.port },
        ],
        concurrency: { global: 16, perNode: 4, perWorker: 4 },
      },
    );
    worker = cluster.startWorker();
    await waitForLog(worker, 'snapshot worker started');
  });

  after(async () => {
    await close?.();
  });

  test('bin/bysu.js run as itself has its V8 flags; run as `node bin/bysu.js`, the worker says they are missing', async () => {
    const warning = 'started without the V8 flags of bin/bysu.js';
    assert.ok(!worker.output().includes(warning), worker.output());
    const plain = spawnTracked(process.execPath, [BYSU_BIN, 'worker', 'snapshot'], { env: { ...process.env, BYSU_CONFIG: cluster.configFile, BYSU_LOG_FORMAT: 'json' } });
    let output = '';
    plain.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      await waitForLog({ output: () => output }, 'snapshot worker started');
      const line = JSON.parse(output.split('\n').find((candidate) => candidate.includes(warning))!) as { level: number; missing: string[] };
      assert.equal(line.level, 40, 'a warning');
      assert.deepEqual(line.missing, [...RUNTIME_V8_FLAGS]);
    } finally {
      await stopProcess(plain);
    }
  });

  test('a multi-part snapshot commits and is readable with sha256sum and tar', async () => {
    const result = await cluster.bysu(['snapshot', 'shop', '--wait']);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /shop: committed \d{8}T\d{6}Z/);

    const appDir = path.join(cluster.repository, 'shop');
    const id = await readlink(path.join(appDir, 'latest'));
    assert.match(id, /^\d{8}T\d{6}Z$/, 'latest is a relative symlink to the id');
    const snapshotDir = path.join(appDir, id);
    const sums = await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: snapshotDir });
    assert.equal(sums.code, 0, sums.stdout + sums.stderr);
    for (const file of ['shop.sql', 'uploads.tar', 'uploads.tgz', 'manifest.json']) assert.match(sums.stdout, new RegExp(`${file.replace('.', '\\.')}: OK`));
    const listing = await run('tar', ['-tf', 'uploads.tar'], { cwd: snapshotDir });
    assert.equal(listing.code, 0);
    assert.deepEqual(listing.stdout.trim().split('\n').sort(), ['uploads/', 'uploads/img/', 'uploads/img/logo.png', 'uploads/readme.txt']);
    assert.equal((await run('tar', ['-tzf', 'uploads.tgz'], { cwd: snapshotDir })).code, 0);
    assert.equal(await readFile(path.join(snapshotDir, 'shop.sql'), 'utf8'), 'CREATE TABLE t (x int);\nINSERT INTO t VALUES (42);\n');

    const manifest = JSON.parse(await readFile(path.join(snapshotDir, 'manifest.json'), 'utf8'));
    assert.equal(manifest.format, 'bysu-snapshot/1');
    assert.equal(manifest.app, 'shop');
    assert.equal(manifest.node, 'db1');
    assert.equal(manifest.host, '127.0.0.1');
    assert.equal(manifest.id, id);
    assert.equal(manifest.trigger, 'manual');
    assert.match(manifest.jobId, /^manual-shop-/);
    assert.ok(Date.parse(manifest.startedAt) <= Date.parse(manifest.finishedAt));
    assert.deepEqual(manifest.parts.map((part: { file: string }) => part.file), ['shop.sql', 'uploads.tar', 'uploads.tgz']);
    const tarPart = manifest.parts[1];
    assert.equal(tarPart.tarEntries, 4);
    assert.equal(tarPart.exitCode, 0);
    assert.equal(tarPart.bytes, (await stat(path.join(snapshotDir, 'uploads.tar'))).size);
    assert.equal(manifest.bytes, manifest.parts.reduce((sum: number, part: { bytes: number }) => sum + part.bytes, 0));
    assert.deepEqual(manifest.warnings, []);

    assert.equal((await stat(appDir)).mode & 0o777, 0o700);
    assert.equal((await stat(snapshotDir)).mode & 0o777, 0o700);
    for (const file of await readdir(snapshotDir)) assert.equal((await stat(path.join(snapshotDir, file))).mode & 0o777, 0o600, file);
    assert.deepEqual(await readdir(path.join(appDir, '.incoming')), [], 'no attempt left in .incoming');
  });

  test('list, latest and verify read the repository; verify catches a corrupted file', async () => {
    await new Promise((resolve) => setTimeout(resolve, 1100)); // a new second, so a new id
    const second = await cluster.bysu(['snapshot', 'shop', '--wait']);
    assert.equal(second.code, 0, second.stdout + second.stderr);

    const listed = await cluster.bysu(['list', 'shop', '--json']);
    assert.equal(listed.code, 0, listed.stderr);
    const snapshots = JSON.parse(listed.stdout) as { id: string; path: string; bytes: number }[];
    assert.equal(snapshots.length, 2);
    assert.ok(snapshots[0]!.id > snapshots[1]!.id, 'newest first');

    const latest = await cluster.bysu(['latest', 'shop']);
    assert.equal(latest.code, 0);
    assert.equal(latest.stdout.trim(), path.join(cluster.repository, 'shop', snapshots[0]!.id));
    assert.equal(await readlink(path.join(cluster.repository, 'shop', 'latest')), snapshots[0]!.id);

    const verified = await cluster.bysu(['verify', 'shop']);
    assert.equal(verified.code, 0, verified.stdout);
    assert.match(verified.stdout, /2 snapshots verified, 0 failed/);

    // One byte of a file's data (the archive stays a valid tar) and one byte of a header.
    const older = path.join(snapshots[1]!.path, 'uploads.tar');
    const bytes = await readFile(older);
    bytes[20_000] = bytes[20_000]! ^ 0xff;
    await writeFile(older, bytes);
    const header = path.join(snapshots[0]!.path, 'uploads.tgz');
    const gzipped = await readFile(header);
    await writeFile(header, gzipped.subarray(0, gzipped.length - 20));
    const corrupted = await cluster.bysu(['verify', 'shop']);
    assert.equal(corrupted.code, 1);
    assert.match(corrupted.stdout, new RegExp(`FAILED  shop/${snapshots[1]!.id}\n {8}uploads\.tar: checksum mismatch`));
    assert.doesNotMatch(corrupted.stdout, /uploads\.tar: not a valid tar/);
    assert.match(corrupted.stdout, new RegExp(`FAILED  shop/${snapshots[0]!.id}\n {8}uploads\\.tgz: checksum mismatch .*\n {8}uploads\\.tgz: \\d+ bytes, the manifest says \\d+\n {8}uploads\\.tgz: not a valid gzip stream`));
    assert.match(corrupted.stdout, /2 snapshots verified, 2 failed/);
    const sums = await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: snapshots[1]!.path });
    assert.notEqual(sums.code, 0, 'coreutils agrees');

    const none = await cluster.bysu(['latest', 'failing']);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no complete snapshot/);
  });

  test('failures commit nothing, leave nothing behind, and say why', async () => {
    const apps = ['failing', 'latin1', 'killed', 'truncated', 'garbage', 'huge', 'stuck', 'slowpoke', 'pinned', 'stranger'];
    const result = await cluster.bysu(['snapshot', ...apps, '--wait']);
    assert.equal(result.code, 1, result.stdout + result.stderr);
    const out = result.stdout;

    const failing = linesFor(out, 'failing');
    assert.ok(failing.some((line) => /attempt 1 of 2 failed, will retry: part db\.sql: command exited with code 3/.test(line)), out);
    assert.match(out, /failing: FAILED after 2 attempt\(s\): part db\.sql: command exited with code 3 \(accepted: 0\)\nstderr \(last \d+ bytes\):\npg_dump: error: connection to server failed/);
    assert.match(out, /latin1: FAILED after 1 attempt\(s\): part db\.sql: command exited with code 1 \(accepted: 0\)\nstderr \(last \d+ bytes\):\npg_dump: error: password authentication failed\n\uFFFDberschreiben/);
    assert.match(out, /killed: FAILED after 1 attempt\(s\): part db\.sql: command was killed by signal (SIG)?KILL/);
    assert.match(out, /truncated: FAILED after 1 attempt\(s\): not a valid tar archive: archive is truncated at an entry boundary/);
    assert.match(out, /garbage: FAILED after 1 attempt\(s\): not a valid tar archive: bad header checksum/);
    assert.match(out, /huge: FAILED after 1 attempt\(s\): snapshot exceeds maxBytes \(1048576 bytes\) while writing zero\.bin/);
    assert.match(out, /stuck: FAILED after 1 attempt\(s\): no data received for 2000 ms \(stallTimeout\)/);
    assert.match(out, /slowpoke: FAILED after 1 attempt\(s\): snapshot of slowpoke exceeded its timeout of 2000 ms/);
    assert.match(out, new RegExp(`pinned: FAILED after 1 attempt\\(s\\): host key of node "db1-wrongpin" .* does not match the pinned key: expected ${WRONG_PIN.replace('+', '\\+')}, got ssh-ed25519 ${cluster.nodes[0]!.fingerprint.replace(/[+/]/g, '\\$&')}`));
    assert.match(out, /stranger: FAILED after 1 attempt\(s\): host key of node "db1-unknown" .* is unknown: no known_hosts entry for \[localhost\]:\d+ in .*known_hosts/);

    for (const app of apps) {
      assert.deepEqual(await snapshotDirs(cluster.repository, app), [], `${app} has no snapshot`);
      await assert.rejects(lstat(path.join(cluster.repository, app, 'latest')), `${app} has no latest`);
      const incoming = await readdir(path.join(cluster.repository, app, '.incoming')).catch(() => []);
      assert.deepEqual(incoming, [], `${app} left nothing in .incoming`);
    }
  });

  test('--wait on a terminal shows the current part and bytes on a live line', async () => {
    const command = `${JSON.stringify(process.execPath)} ${JSON.stringify(BYSU_BIN)} snapshot progress --wait`;
    const result = await run('script', ['-qec', command, '/dev/null'], { env: { ...process.env, BYSU_CONFIG: cluster.configFile } });
    assert.equal(result.code, 0, result.stdout);
    assert.match(result.stdout, /\r\x1b\[2Kprogress: part 1\/1 zero\.bin, \d+(\.\d)? (KiB|MiB) in 0:0\d \(\d+(\.\d)? (B|KiB|MiB)\/s\)/);
    assert.match(result.stdout, /progress: \x1b\[32mcommitted\x1b\[39m \d{8}T\d{6}Z \(1\.4 MiB\)/, 'in colour on a terminal');
    // Never more than the snapshot holds: the last report of a part counted its bytes twice (2.9 MiB of 1.4).
    const shown = [...result.stdout.matchAll(/zero\.bin, (\d+(?:\.\d)?) (B|KiB|MiB) in/g)].map(([, value, unit]) => Number(value) * { B: 1, KiB: 1024, MiB: 1024 ** 2 }[unit as 'B']);
    assert.ok(shown.length > 0 && Math.max(...shown) <= 1_500_000 * 1.01, `bytes shown: ${shown.join(', ')}`);
    const plain = await run('script', ['-qec', command, '/dev/null'], { env: { ...process.env, BYSU_CONFIG: cluster.configFile, NO_COLOR: '1' } });
    assert.match(plain.stdout, /progress: committed \d{8}T\d{6}Z \(1\.4 MiB\)/, 'no colour under NO_COLOR');
  });

  test('an accepted non-zero exit code commits, with a warning in the manifest', async () => {
    const result = await cluster.bysu(['snapshot', 'accepted', '--wait']);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const manifest = JSON.parse(await readFile(path.join(cluster.repository, 'accepted', 'latest', 'manifest.json'), 'utf8'));
    assert.equal(manifest.parts[0].exitCode, 1);
    assert.deepEqual(manifest.warnings, ['files.tar: command exited with accepted code 1']);
  });
});
