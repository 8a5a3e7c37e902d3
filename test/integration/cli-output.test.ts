/**
 * What the CLI says while and after it works, with real processes: a waiting
 * `snapshot --wait` says why it waits (no snapshot worker running; its node at
 * its limit), the commit line says how long it took, and every command that
 * prints data has `--json` (snapshot and drill --wait, list --all, latest,
 * prune --dry-run) whose output is JSON and nothing else.
 */
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { waitForLog, withCluster } from '../helpers/cluster.ts';
import { exitWithin, waitUntil } from '../helpers/processes.ts';

test('--wait says why a job waits and how long a commit took; --json everywhere data is printed', async () => {
  await withCluster(['db1'], async (cluster) => {
    const node = cluster.nodes[0]!;
    await cluster.writeConfig([
      { name: 'shop', node: 'db1', keep: 3, parts: [{ file: 'shop.txt', run: 'echo shop' }], drill: { node: 'db1', steps: [{ run: 'cat', stdin: 'shop.txt', expect: '^shop$' }] } },
      // Holds its node while $NODE_DIR/hold exists.
      { name: 'held', node: 'db1', parts: [{ file: 'h.sql', run: 'touch "$NODE_DIR/started"; while [ -f "$NODE_DIR/hold" ]; do sleep 0.1; done; echo held' }] },
    ], { concurrency: { global: 4, perNode: 1, perWorker: 4, busyNodeDelay: '1s' } });

    // No worker yet: the wait says so, then ends once one starts.
    const first = cluster.startProcess(['snapshot', 'shop', '--wait']);
    await waitUntil('the wait to say no worker runs', async () => first.output().includes('shop: queued; no snapshot worker is running (start one: bysu up, or bysu worker snapshot)'), 60_000);
    const worker = cluster.startWorker();
    await waitForLog(worker, 'worker started');
    assert.equal(await exitWithin(first, 60_000), 0, first.output());
    assert.match(first.output(), /shop: committed \d{8}T\d{6}Z \(5 B\) at \S+ in \d+:\d\d( \(\d+(\.\d)? [KM]?i?B\/s\))?\n/);

    // Its node at its limit: the wait says which node and why, once, and goes on when the node frees up.
    await writeFile(path.join(node.dir, 'hold'), '');
    const holding = cluster.startProcess(['snapshot', 'held', '--wait']);
    await waitUntil('the holding dump to start', async () => holding.output().includes('part 1/1') || null, 60_000);
    const waiting = await cluster.startProcess(['snapshot', 'shop', '--wait']);
    await waitUntil('the wait to name the busy node', async () => /shop: waiting for node db1: 1 of 1 slot\(s\) in use; next try in \d+s\n/.test(waiting.output()), 60_000);
    await rm(path.join(node.dir, 'hold'));
    assert.equal(await exitWithin(holding, 60_000), 0, holding.output());
    assert.equal(await exitWithin(waiting, 60_000), 0, waiting.output());
    assert.equal(waiting.output().match(/waiting for node db1/g)?.length, 1, `said once while it waited:\n${waiting.output()}`);

    // --json: the outcome and nothing else.
    const json = await cluster.bysu(['snapshot', 'shop', '--wait', '--json']);
    assert.equal(json.code, 0, json.stderr);
    const [outcome] = JSON.parse(json.stdout) as { app: string; ok: boolean; attempts: number; reason: string | null; elapsedMs: number; snapshot: { id: string; path: string; bytes: number } }[];
    assert.deepEqual({ app: outcome!.app, ok: outcome!.ok, attempts: outcome!.attempts, reason: outcome!.reason, bytes: outcome!.snapshot.bytes }, { app: 'shop', ok: true, attempts: 1, reason: null, bytes: 5 });
    assert.ok(outcome!.elapsedMs >= 0);

    const latest = await cluster.bysu(['latest', 'shop', '--json']);
    assert.equal(JSON.parse(latest.stdout).path, outcome!.snapshot.path);
    assert.equal((await cluster.bysu(['latest', 'shop'])).stdout.trim(), outcome!.snapshot.path);

    const all = await cluster.bysu(['list', '--all']);
    assert.equal(all.code, 0, all.stderr);
    const lines = all.stdout.trim().split('\n');
    assert.equal(lines.filter((line) => line.startsWith('shop  ')).length, 3);
    assert.equal(lines.filter((line) => line.startsWith('held  ')).length, 1);
    const listed = JSON.parse((await cluster.bysu(['list', '--all', '--json'])).stdout) as { app: string; id: string }[];
    assert.deepEqual(listed.map((entry) => entry.app), ['shop', 'shop', 'shop', 'held']);
    assert.equal((await cluster.bysu(['list'])).code, 2, 'neither an app nor --all');

    const pruned = await cluster.bysu(['prune', '--all', '--dry-run', '--json']);
    assert.equal(pruned.code, 0, pruned.stderr);
    const plans = JSON.parse(pruned.stdout) as { app: string; dryRun: boolean; keep: string[]; delete: string[]; error: string | null }[];
    assert.deepEqual(plans.map(({ app, dryRun, keep, delete: deleted, error }) => ({ app, dryRun, keep: keep.length, deleted: deleted.length, error })), [
      { app: 'shop', dryRun: true, keep: 3, deleted: 0, error: null },
      { app: 'held', dryRun: true, keep: 1, deleted: 0, error: null },
    ]);

    const drillWorker = cluster.startProcess(['worker', 'drill']);
    await waitForLog(drillWorker, 'drill worker started');
    const drilled = await cluster.bysu(['drill', 'shop', '--wait', '--json']);
    assert.equal(drilled.code, 0, drilled.stdout + drilled.stderr);
    assert.deepEqual(JSON.parse(drilled.stdout).map(({ app, ok, snapshotId, node: on }: { app: string; ok: boolean; snapshotId: string; node: string }) => ({ app, ok, snapshotId, node: on })),
      [{ app: 'shop', ok: true, snapshotId: outcome!.snapshot.id, node: 'db1' }]);
  });
});

test('verify --snapshot reads only the snapshot named, --json prints each verdict, and a refusal says what to do', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig([{ name: 'shop', node: 'db1', keep: 3, parts: [{ file: 'shop.sql', run: 'echo shop' }] }]);
    const worker = cluster.startWorker();
    await waitForLog(worker, 'worker started');
    for (let round = 0; round < 2; round += 1) assert.equal((await cluster.bysu(['snapshot', 'shop', '--wait'])).code, 0);
    const [newer, older] = (JSON.parse((await cluster.bysu(['list', 'shop', '--json'])).stdout) as { id: string }[]).map((entry) => entry.id);
    await writeFile(path.join(cluster.repository, 'shop', older!, 'shop.sql'), 'rot\n');

    const one = await cluster.bysu(['verify', 'shop', '--snapshot', newer!, '--json']);
    assert.equal(one.code, 0, one.stdout + one.stderr);
    const verdicts = JSON.parse(one.stdout) as { app: string; id: string; ok: boolean; files: number; bytes: number; problems: string[] }[];
    assert.deepEqual(verdicts.map(({ app, id, ok, files, problems }) => ({ app, id, ok, files, problems })), [{ app: 'shop', id: newer, ok: true, files: 2, problems: [] }]);
    assert.ok(verdicts[0]!.bytes > 0);
    const damaged = await cluster.bysu(['verify', 'shop', '--snapshot', older!, '--json']);
    assert.equal(damaged.code, 1);
    const [verdict] = JSON.parse(damaged.stdout) as { id: string; ok: boolean; problems: string[] }[];
    assert.deepEqual({ id: verdict!.id, ok: verdict!.ok }, { id: older, ok: false });
    assert.match(verdict!.problems[0]!, /^shop\.sql: /);
    // The verdicts merge: verifying the newer one again leaves the older one damaged in the record.
    await cluster.bysu(['verify', 'shop', '--snapshot', newer!]);
    const record = JSON.parse(await readFile(path.join(cluster.repository, 'shop', '.last-verify.json'), 'utf8')) as { snapshots: { id: string; ok: boolean }[] };
    assert.deepEqual(record.snapshots.map(({ id, ok }) => ({ id, ok })), [{ id: newer, ok: true }, { id: older, ok: false }]);
    assert.equal((JSON.parse((await cluster.bysu(['verify', 'shop', '--json'])).stdout) as unknown[]).length, 2, 'without --snapshot: every snapshot');

    const unknown = await cluster.bysu(['verify', 'shop', '--snapshot', '20200101T000000Z']);
    assert.equal(unknown.code, 2);
    assert.equal(unknown.stderr.trim(), 'bysu: shop has no complete snapshot 20200101T000000Z; see its snapshots with: bysu list shop');
    const all = await cluster.bysu(['verify', '--all', '--snapshot', newer!]);
    assert.equal(all.code, 2);
    assert.equal(all.stderr.trim(), 'bysu: --snapshot names a snapshot of one app: give exactly one app');
  });
});
