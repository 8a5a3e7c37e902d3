/**
 * The per-node limit holds across worker processes: two `bysu worker
 * snapshot` processes, five apps on one node, perNode 1. The node-side
 * command records how many sessions run at once; the maximum must be 1.
 * A job for another node is not held up by the busy one.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { waitForLog, withCluster } from '../helpers/cluster.ts';

/** A node-side command that counts concurrent sessions under flock and logs each count. */
const COUNTING_SCRIPT = `#!/bin/sh
set -e
cd "\${COUNT_DIR:-$NODE_DIR}"
exec 9>>count.lock
flock 9; n=$(( $(cat active 2>/dev/null || echo 0) + 1 )); echo $n > active; echo $n >> seen; flock -u 9
sleep 0.7
flock 9; n=$(( $(cat active) - 1 )); echo $n > active; flock -u 9
echo "dump of $1"
`;

test('perNode 1 holds across two worker processes: five apps on one node never overlap', async () => {
  await withCluster(['db1', 'db2'], async (cluster) => {
    const [db1, db2] = cluster.nodes;
    for (const node of [db1!, db2!]) await writeFile(path.join(node.dir, 'count.sh'), COUNTING_SCRIPT, { mode: 0o755 });
    const apps = ['a1', 'a2', 'a3', 'a4', 'a5'].map((name) => ({ name, node: 'db1', parts: [{ file: `${name}.sql`, run: `"$NODE_DIR/count.sh" ${name}` }] }));
    apps.push({ name: 'b1', node: 'db2', parts: [{ file: 'b1.sql', run: '"$NODE_DIR/count.sh" b1' }] });
    await cluster.writeConfig(apps, { concurrency: { global: 16, perNode: 1, perWorker: 1, busyNodeDelay: '300ms' } });

    // perWorker 1: while one worker holds db1, the other must take the rest (and be refused db1).
    const workers = [cluster.startWorker(), cluster.startWorker()];
    for (const worker of workers) await waitForLog(worker, 'snapshot worker started');

    const result = await cluster.bysu(['snapshot', '--all', '--wait']);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.equal(result.stdout.match(/: committed /g)?.length, 6, result.stdout);

    const seen = (await readFile(path.join(db1!.dir, 'seen'), 'utf8')).trim().split('\n').map(Number);
    assert.equal(seen.length, 5, 'five sessions ran on db1');
    assert.equal(Math.max(...seen), 1, `never more than one session at once on db1 (seen ${seen.join(',')})`);
    const byWorker = workers.map((worker) => (worker.output().match(/"msg":"snapshot committed"/g) ?? []).length);
    assert.equal(byWorker[0]! + byWorker[1]!, 6);
    assert.ok(byWorker.every((count) => count > 0), `both workers took jobs (${byWorker.join(' + ')})`);
  });
});

test('concurrency.global holds across worker processes and nodes', async () => {
  await withCluster(['db1', 'db2'], async (cluster) => {
    const shared = path.join(cluster.dir, 'shared-count');
    await (await import('node:fs/promises')).mkdir(shared);
    for (const node of cluster.nodes) await writeFile(path.join(node.dir, 'count.sh'), COUNTING_SCRIPT, { mode: 0o755 });
    const apps = ['g1', 'g2', 'g3', 'g4'].map((name, index) => ({
      name,
      node: index % 2 === 0 ? 'db1' : 'db2',
      parts: [{ file: `${name}.sql`, run: `COUNT_DIR=${shared} "$NODE_DIR/count.sh" ${name}` }],
    }));
    await cluster.writeConfig(apps, { concurrency: { global: 1, perNode: 4, perWorker: 4 } });
    const workers = [cluster.startWorker(), cluster.startWorker()];
    for (const worker of workers) await waitForLog(worker, 'snapshot worker started');

    const result = await cluster.bysu(['snapshot', '--all', '--wait']);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const seen = (await readFile(path.join(shared, 'seen'), 'utf8')).trim().split('\n').map(Number);
    assert.equal(seen.length, 4);
    assert.equal(Math.max(...seen), 1, `never more than one snapshot at once in all (seen ${seen.join(',')})`);
  });
});
