/**
 * Attack on what `bysu snapshot --wait` says while it waits (issue 14), with a
 * real redis-server, a real sshd node, a real worker and the real CLI, its
 * output a pipe (not a terminal).
 *
 * Promise attacked (README "Command line", DESIGN "What `--wait` says while
 * it waits"): off a terminal, a waiting job's reason is printed when it
 * changes, not on every busy-node cycle ("that line is not repeated endlessly
 * off a terminal").
 *
 * PROVES: while its node stays busy, the line `shop: waiting for node db1: 1
 * of 1 slot(s) in use; …` is printed again at every busy-node cycle (once per
 * busyNodeDelay, here 1-2 s), for as long as the node is busy. The cause in
 * src/cli/snapshot.ts: `entry.lastNote` is overwritten with `shop: waiting`
 * / `shop: active` when the delayed job comes back to the queue and is taken
 * again (to find its node still busy), so the next `delayed` read finds a
 * "new" reason and prints it again. The existing test in cli-output.test.ts
 * frees the node within one cycle, so it sees the line once.
 */
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { waitForLog, withCluster } from '../helpers/cluster.ts';
import { exitWithin, waitUntil } from '../helpers/processes.ts';

/** How long the node is kept busy while shop waits for it. */
const BUSY_MS = 15_000;

test('snapshot --wait off a terminal says once why a job waits, however long its node stays busy', async () => {
  await withCluster(['db1'], async (cluster) => {
    const node = cluster.nodes[0]!;
    await cluster.writeConfig([
      { name: 'shop', node: 'db1', parts: [{ file: 'shop.txt', run: 'echo shop' }] },
      // Holds its node while $NODE_DIR/hold exists.
      { name: 'held', node: 'db1', parts: [{ file: 'h.sql', run: 'while [ -f "$NODE_DIR/hold" ]; do sleep 0.1; done; echo held' }] },
    ], { concurrency: { global: 4, perNode: 1, perWorker: 4, busyNodeDelay: '1s' } });
    const worker = cluster.startWorker();
    await waitForLog(worker, 'worker started');

    await writeFile(path.join(node.dir, 'hold'), '');
    const holding = cluster.startProcess(['snapshot', 'held', '--wait']);
    await waitUntil('the holding dump to start', async () => holding.output().includes('part 1/1') || null, 60_000);
    const waiting = cluster.startProcess(['snapshot', 'shop', '--wait']);
    await waitUntil('the wait to name the busy node', async () => /shop: waiting for node db1/.test(waiting.output()), 60_000);
    // The node stays busy for a while (a long dump of another app on the same node: the usual case).
    await new Promise((resolve) => setTimeout(resolve, BUSY_MS));
    await rm(path.join(node.dir, 'hold'));
    assert.equal(await exitWithin(holding, 60_000), 0, holding.output());
    assert.equal(await exitWithin(waiting, 60_000), 0, waiting.output());
    const said = waiting.output().match(/waiting for node db1/g)?.length ?? 0;
    assert.equal(said, 1, `the same reason printed ${said} times in ${BUSY_MS / 1000} s of a busy node:\n${waiting.output()}`);
  });
});
