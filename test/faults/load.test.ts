/**
 * Load: 100 real sshd nodes on loopback, one app each (mostly tiny parts,
 * every tenth a 2 MB one), three worker processes, concurrency.global 16 and
 * perNode 1. Every snapshot must commit, no node may ever see two sessions at
 * once, no more than 16 may run in all, and worker memory must stay bounded.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { waitForLog, withCluster } from '../helpers/cluster.ts';
import { recordFault } from '../helpers/fault-report.ts';
import { peakRss } from '../helpers/signals.ts';

const NODES = 100;
const COUNTER = `#!/bin/sh
set -e
count() { # $1 = directory, $2 = +1 or -1
  exec 9>>"$1/lock"; flock 9
  n=$(( $(cat "$1/active" 2>/dev/null || echo 0) $2 ))
  echo $n > "$1/active"; [ "$2" = "+1" ] && echo $n >> "$1/seen"
  flock -u 9
}
count "$NODE_DIR" +1; count "$GLOBAL_DIR" +1
if [ "$1" = big ]; then head -c 2000000 /dev/urandom; else echo "tiny dump"; fi
sleep 0.3
count "$GLOBAL_DIR" -1; count "$NODE_DIR" -1
`;

test(`${NODES} nodes, 3 workers, global 16, perNode 1: all commit, limits hold, memory bounded`, { timeout: 600_000 }, async () => {
  const names = Array.from({ length: NODES }, (_, index) => `n${String(index).padStart(3, '0')}`);
  await withCluster(names, async (cluster) => {
    const global = path.join(cluster.dir, 'global-count');
    await mkdir(global);
    for (const node of cluster.nodes) await writeFile(path.join(node.dir, 'count.sh'), COUNTER, { mode: 0o755 });
    await cluster.writeConfig(
      cluster.nodes.map((node, index) => ({
        name: `app-${node.name}`,
        node: node.name,
        parts: [{ file: index % 10 === 0 ? 'big.bin' : 'tiny.sql', run: `GLOBAL_DIR=${global} "$NODE_DIR/count.sh" ${index % 10 === 0 ? 'big' : 'tiny'}` }],
      })),
      { concurrency: { global: 16, perNode: 1, perWorker: 8 } },
    );
    const workers = [cluster.startWorker(), cluster.startWorker(), cluster.startWorker()];
    for (const worker of workers) await waitForLog(worker, 'worker started');

    const started = Date.now();
    const result = await cluster.bysu(['snapshot', '--all', '--wait'], { timeoutMs: 400_000 });
    const wallMs = Date.now() - started;
    assert.equal(result.code, 0, result.stdout.slice(-3000));
    const committed = (result.stdout.match(/: committed /g) ?? []).length;
    assert.equal(committed, NODES);

    let perNodeMax = 0;
    for (const node of cluster.nodes) {
      const seen = (await readFile(path.join(node.dir, 'seen'), 'utf8')).trim().split('\n').map(Number);
      perNodeMax = Math.max(perNodeMax, ...seen);
    }
    const globalMax = Math.max(...(await readFile(path.join(global, 'seen'), 'utf8')).trim().split('\n').map(Number));
    const rss = workers.map((worker) => peakRss(worker.pid!) ?? 0);
    const snapshots = (await Promise.all(cluster.nodes.map(async (node) => (await readdir(path.join(cluster.repository, `app-${node.name}`))).filter((name) => /^\d{8}T/.test(name)).length)));
    assert.equal(perNodeMax, 1, 'never two sessions at once on a node');
    assert.ok(globalMax <= 16, `never more than 16 at once in all (${globalMax})`);
    assert.ok(snapshots.every((count) => count === 1));
    const maxRssMiB = Math.max(...rss) / 1024 / 1024;
    assert.ok(maxRssMiB < 400, `worker peak RSS ${maxRssMiB.toFixed(0)} MiB`);
    recordFault({
      kind: 'load', fault: `${NODES} nodes, 3 workers, global 16, perNode 1`, expected: 'all commit; per-node max 1; global max ≤ 16; memory bounded',
      observed: `${committed}/${NODES} in ${(wallMs / 1000).toFixed(1)} s; per-node max ${perNodeMax}; global max ${globalMax}; worker peak RSS ${rss.map((bytes) => (bytes / 1024 / 1024).toFixed(0)).join('/')} MiB`,
      pass: true, lost: 0, partialVisible: 0,
    });
  });
});
