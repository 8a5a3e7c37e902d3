/**
 * Retention by hand (`bysu prune`) on a real repository: the dry run deletes
 * nothing, the real run keeps the newest `keep` and `latest`, removes only
 * BYSU's own stale leftovers, and leaves everything it did not create. And a
 * snapshot that shrank commits with a warning that status shows.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, readlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { waitForLog, withCluster } from '../helpers/cluster.ts';

test('prune keeps the newest, removes stale attempts, leaves what it did not create; shrink warning', async () => {
  await withCluster(['db1'], async (cluster) => {
    const node = cluster.nodes[0]!;
    await writeFile(path.join(node.dir, 'size'), '100000');
    await cluster.writeConfig([
      { name: 'shop', node: 'db1', keep: 2, timeout: '1m', parts: [{ file: 'data.bin', run: 'head -c "$(cat "$NODE_DIR/size")" /dev/zero' }] },
    ], { retention: { incomingMargin: '1m' } });
    const worker = cluster.startWorker();
    await waitForLog(worker, 'worker started');
    for (let round = 0; round < 4; round += 1) assert.equal((await cluster.bysu(['snapshot', 'shop', '--wait'])).code, 0);

    const appDir = path.join(cluster.repository, 'shop');
    const ids = async () => (await readdir(appDir)).filter((name) => /^\d{8}T\d{6}Z/.test(name)).sort();
    const all = await ids();
    assert.equal(all.length, 4);

    // Things BYSU did not create, and leftovers it did.
    await mkdir(path.join(appDir, 'operator-notes'));
    await mkdir(path.join(appDir, '20200101T000000Z')); // a snapshot id without manifest: not a complete snapshot
    const incoming = path.join(appDir, '.incoming');
    await mkdir(path.join(incoming, 'manual-shop-1.1.deadbeef'));
    await mkdir(path.join(incoming, 'manual-shop-2.1.cafebabe'));
    await writeFile(path.join(incoming, 'notes.txt'), 'mine');
    const old = (Date.now() - 3 * 60 * 60_000) / 1000;
    await utimes(path.join(incoming, 'manual-shop-1.1.deadbeef'), old, old);

    const dry = await cluster.bysu(['prune', 'shop', '--dry-run']);
    assert.equal(dry.code, 0, dry.stdout + dry.stderr);
    assert.match(dry.stdout, new RegExp(`shop: keep 2 \\(${all[3]}, ${all[2]}\\), would delete 2 \\(${all[1]}, ${all[0]}\\), would remove 1 stale attempt`));
    assert.deepEqual(await ids(), [...all, '20200101T000000Z'].sort(), 'a dry run deletes nothing');

    const real = await cluster.bysu(['prune', 'shop']);
    assert.equal(real.code, 0, real.stdout + real.stderr);
    assert.match(real.stdout, /shop: keep 2 .*, deleted 2/);
    assert.deepEqual(await ids(), ['20200101T000000Z', all[2], all[3]].sort());
    assert.equal(await readlink(path.join(appDir, 'latest')), all[3]);
    assert.deepEqual((await readdir(incoming)).sort(), ['manual-shop-2.1.cafebabe', 'notes.txt'], 'only the old attempt went; the young one and the file stay');
    assert.ok((await readdir(appDir)).includes('operator-notes'));

    // A snapshot a tenth the usual size commits, with a warning; so does a second one in a row.
    await writeFile(path.join(node.dir, 'size'), '10000');
    for (const kept of [2, 3]) {
      assert.equal((await cluster.bysu(['snapshot', 'shop', '--wait'])).code, 0);
      const manifest = JSON.parse(await readFile(path.join(appDir, 'latest', 'manifest.json'), 'utf8'));
      assert.equal(manifest.warnings.length, 1);
      assert.equal(manifest.warnings[0], `snapshot shrank to 10.0% of the usual size (10000 bytes; the median of the ${kept} kept snapshots is 100000): a partial dump? (shrinkWarn 0.5)`);
    }
    const status = await cluster.bysu(['status']);
    assert.match(status.stdout, /^shop\s+OK\s+.*1 warning\(s\): snapshot shrank to 10\.0%/m);
  });
});
