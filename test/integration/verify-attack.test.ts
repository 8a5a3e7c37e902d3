/**
 * Attacks on "bit rot is loud" (i14): damage that a verification must call
 * CORRUPT, with real processes (a redis-server, an sshd node, bin/bysu).
 * Each test is a proven break of a promise in README "Verifying the
 * snapshots" / DESIGN "Verification: bit rot is loud".
 */
import assert from 'node:assert/strict';
import { readdir, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { waitForLog, withCluster, type TestCluster } from '../helpers/cluster.ts';
import { run } from '../helpers/processes.ts';

const NEVER = '0 0 1 1 *';
const APPS = [{ name: 'shop', node: 'db1', schedule: NEVER, keep: 3, parts: [{ file: 'shop.sql', run: 'for i in $(seq 1 2000); do echo "INSERT INTO orders VALUES ($i);"; done; date +%s%N' }] }];

async function snapshot(cluster: TestCluster): Promise<string> {
  const result = await cluster.bysu(['snapshot', 'shop', '--wait']);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  return (await readdir(path.join(cluster.repository, 'shop'))).filter((name) => /^\d{8}T\d{6}Z/.test(name)).sort().at(-1)!;
}

async function statusOf(cluster: TestCluster): Promise<{ code: number | null; state: string; problems: string[] }> {
  const result = await cluster.bysu(['status', '--json']);
  const app = (JSON.parse(result.stdout) as { apps: { app: string; state: string; problems: string[] }[] }).apps.find((candidate) => candidate.app === 'shop')!;
  return { code: result.code, state: app.state, problems: app.problems };
}

// PROVES: a kept snapshot whose manifest.json was deleted (a deleted file) is never called damaged.
// listSnapshots skips a snapshot-id directory without a manifest ("not a complete snapshot"), but
// snapshots are only ever published complete (built in .incoming, renamed into place), so such a
// directory is damage. Worse: recordVerification drops the verdict of a snapshot listSnapshots no
// longer lists, so deleting the manifest of a snapshot already found damaged CLEARS the CORRUPT state.
test('a kept snapshot whose manifest.json is deleted is called damaged (and a CORRUPT one does not clear)', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig(APPS, {});
    await waitForLog(cluster.startWorker(), 'snapshot worker started', 60_000);
    await snapshot(cluster);
    const newest = await snapshot(cluster);
    const dir = path.join(cluster.repository, 'shop', newest);
    // First: real bit rot, found.
    const file = path.join(dir, 'shop.sql');
    const bytes = await readFile(file);
    bytes[Math.floor(bytes.length / 2)]! ^= 1;
    await writeFile(file, bytes);
    const first = await cluster.bysu(['verify', 'shop']);
    assert.equal(first.code, 1, first.stdout);
    assert.equal((await statusOf(cluster)).state, 'corrupt');
    // Then the rot spreads to the manifest (a deleted file): still damaged, so still CORRUPT.
    await unlink(path.join(dir, 'manifest.json'));
    const second = await cluster.bysu(['verify', 'shop']);
    const status = await statusOf(cluster);
    assert.equal(second.code, 1, `bysu verify must fail on ${newest} with its manifest deleted; it said:\n${second.stdout}${second.stderr}`);
    assert.equal(status.state, 'corrupt', `status must stay CORRUPT; it says ${status.state} (exit ${status.code}) ${status.problems.join('; ')}`);
  });
});

// PROVES: a part replaced by a FIFO (a file replaced by a FIFO) is never called damaged: the
// verification opens it and blocks forever (the open of a FIFO with no writer never returns), so
// `bysu verify` never ends and no verdict is ever recorded; the verify worker's job hangs likewise.
test('a part replaced by a FIFO is called damaged, not waited for forever', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig(APPS, {});
    await waitForLog(cluster.startWorker(), 'snapshot worker started', 60_000);
    const newest = await snapshot(cluster);
    const file = path.join(cluster.repository, 'shop', newest, 'shop.sql');
    await rm(file);
    assert.equal((await run('mkfifo', [file])).code, 0);
    const started = Date.now();
    const result = await cluster.bysu(['verify', 'shop'], { timeoutMs: 30_000 });
    assert.equal(result.code, 1, `bysu verify must fail on the FIFO within 30 s; after ${Date.now() - started} ms it had exit ${result.code} (null: killed by the timeout), output:\n${result.stdout}${result.stderr}`);
    assert.match(result.stdout, /shop\.sql/);
  });
});

// PROVES: a part replaced by a symlink to an endless file (/dev/zero) makes the verification read
// forever instead of calling the part damaged (a symlink is followed, never refused).
test('a part replaced by a symlink to /dev/zero is called damaged, not read forever', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig(APPS, {});
    await waitForLog(cluster.startWorker(), 'snapshot worker started', 60_000);
    const newest = await snapshot(cluster);
    const file = path.join(cluster.repository, 'shop', newest, 'shop.sql');
    await rm(file);
    assert.equal((await run('ln', ['-s', '/dev/zero', file])).code, 0);
    const result = await cluster.bysu(['verify', 'shop'], { timeoutMs: 30_000 });
    assert.equal(result.code, 1, `bysu verify must fail on the symlink within 30 s; it had exit ${result.code} (null: killed by the timeout), output:\n${result.stdout}${result.stderr}`);
  });
});
