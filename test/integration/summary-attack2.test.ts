/**
 * A second attack on the per-app summary (issue 13): a snapshot directory
 * whose manifest.json was read half-written (a `cp -a` or an editor writing
 * it in place) is recorded as unreadable; once the file is whole the
 * summary must say so, as it does for a directory that had no manifest yet.
 * Writing a file inside a snapshot directory does not change the app
 * directory's time, so only a re-check of what was unreadable notices it.
 * Then two found by the attack on the synchronous read of the summaries: a
 * FIFO in place of a summary file, and a snapshot directory the reader
 * cannot enter.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { SnapshotAttempt } from '../../src/repository/attempt.ts';
import { initRepository } from '../../src/repository/marker.ts';
import { readAppSummary, scanAppSummary } from '../../src/repository/summary.ts';
import { withTempDir } from '../helpers/processes.ts';

test('a snapshot whose manifest was read half-written is in the summary once the manifest is whole', async () => {
  await withTempDir(async (dir) => {
    const repository = path.join(dir, 'repo');
    await initRepository(repository);
    const jobId = 'job-shop-1';
    const attempt = await SnapshotAttempt.open(repository, 'shop', jobId, 1);
    await attempt.writePart('a.sql', Readable.from([Buffer.from('dump\n')]), { maxBytes: 1e6, snapshotMaxBytes: 1e6, stallTimeoutMs: 10_000 });
    const startedAt = '2026-11-30T02:00:00.000Z';
    const { id } = await attempt.commit({
      format: 'bysu-snapshot/1', app: 'shop', node: 'db1', host: '127.0.0.1', trigger: 'manual', jobId, attempt: 1,
      startedAt, finishedAt: startedAt, bytes: 0, bysuVersion: 'test', warnings: [], parts: [],
    }, async () => undefined);
    const appDir = path.join(repository, 'shop');
    const copy = path.join(appDir, '20261201T020000Z');
    execFileSync('cp', ['-a', path.join(appDir, id), copy]);
    const manifest = await readFile(path.join(copy, 'manifest.json'), 'utf8');
    await writeFile(path.join(copy, 'manifest.json'), manifest.slice(0, 40)); // read while half-written…
    const old = new Date(Date.now() - 60_000);
    await utimes(appDir, old, old); // …a minute after the copy began (not racy: the reader writes its summary back)
    assert.deepEqual((await readAppSummary(repository, 'shop')).unreadable, ['20261201T020000Z']);
    await writeFile(path.join(copy, 'manifest.json'), manifest); // …then written whole, in place
    assert.deepEqual(await readAppSummary(repository, 'shop'), await scanAppSummary(repository, 'shop'), 'the summary says what the files say');
    await rm(copy, { recursive: true });
  });
});

/**
 * Given a repository, read every app's summary in a child process; its stdout
 * and exit code, or a timeout. With `withoutDacOverride`, root reads without
 * the capabilities that let it enter any directory: it meets EACCES as the
 * workers' user would, and still reads the project wherever it is checked out.
 */
function readInChild(repository: string, apps: string[], withoutDacOverride = false): { code: number | null; stdout: string; timedOut: boolean } {
  const script = `import { readAppSummaries } from ${JSON.stringify(path.resolve('src/repository/summary.ts'))};
const found = await readAppSummaries(${JSON.stringify(repository)}, ${JSON.stringify(apps)});
console.log(JSON.stringify(Object.fromEntries([...found].map(([app, summary]) => [app, summary instanceof Error ? summary.message : summary.snapshots.map((snapshot) => snapshot.id)]))));`;
  const command = [process.execPath, '--import', 'tsx', '--input-type=module', '-e', script];
  const [file, ...args] = withoutDacOverride ? ['setpriv', '--bounding-set=-dac_override,-dac_read_search', ...command] : command;
  const result = spawnSync(file!, args, { encoding: 'utf8', timeout: 20_000 });
  return { code: result.status, stdout: result.stdout, timedOut: result.error !== undefined || result.signal !== null };
}

/** Given a repository, write a hand-made snapshot of `app` for day `day` of November 2026; return its id. */
async function handSnapshot(repository: string, app: string, day: number): Promise<string> {
  const id = `202611${String(day).padStart(2, '0')}T020000Z`;
  await mkdir(path.join(repository, app, id), { recursive: true });
  const at = `2026-11-${String(day).padStart(2, '0')}T02:00:00.000Z`;
  await writeFile(path.join(repository, app, id, 'manifest.json'), JSON.stringify({ format: 'bysu-snapshot/1', app, node: 'db1', trigger: 'schedule', startedAt: at, finishedAt: at, bytes: day, parts: [], warnings: [] }));
  return id;
}

// Fails before the fix: the summary file was opened with a blocking open on the event loop, so a FIFO put in its
// place held the whole process (a dashboard's /healthz and /metrics with it) until the child was killed.
test('a FIFO in place of a summary file does not hold the reader: it is rebuilt from the snapshots', async () => {
  await withTempDir(async (dir) => {
    const repository = path.join(dir, 'repo');
    await initRepository(repository);
    const id = await handSnapshot(repository, 'shop', 1);
    await mkdir(path.join(repository, 'shop', '.summary'));
    execFileSync('mkfifo', [path.join(repository, 'shop', '.summary', 'summary.json')]);
    const result = readInChild(repository, ['shop']);
    assert.equal(result.timedOut, false, 'the read of the summaries finished');
    assert.deepEqual(JSON.parse(result.stdout), { shop: [id] });
  });
});

// Fails before the fix: once a rebuild had recorded the directory as one without a manifest, the next check of it
// threw EACCES, and the app showed no snapshot at all ("cannot read …"), as if it had never been backed up.
test("a snapshot directory the reader cannot enter (root's cp -a in progress) does not hide the app's other snapshots", { skip: process.getuid?.() !== 0 ? 'needs root (to drop its capabilities with setpriv)' : false }, async () => {
  await withTempDir(async (dir) => {
    const repository = path.join(dir, 'repo');
    await initRepository(repository);
    const ids = [await handSnapshot(repository, 'blog', 1), await handSnapshot(repository, 'blog', 2)];
    const copying = path.join(repository, 'blog', '20261105T020000Z');
    await mkdir(copying, { mode: 0o700 }); // another user's, 0700, still being copied
    execFileSync('chown', ['65534:65534', copying]);
    const old = new Date(Date.now() - 60_000);
    for (const round of [1, 2, 3]) {
      // Not racy (the first reader's `.summary` is a minute old too): the reader writes its summary back, and the next trusts it.
      await utimes(path.join(repository, 'blog'), old, old);
      const result = readInChild(repository, ['blog'], true);
      assert.deepEqual(JSON.parse(result.stdout), { blog: [...ids].reverse() }, `read ${round}: ${result.stdout}`);
    }
    assert.ok(JSON.parse(await readFile(path.join(repository, 'blog', '.summary', 'summary.json'), 'utf8')).source.incomplete.includes('20261105T020000Z'), 'the summary was written, with the directory as incomplete');
  });
});
