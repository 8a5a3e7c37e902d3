/**
 * `bysu status` with Redis stopped: it shows what the repository knows (per
 * app the newest snapshot, its age and size, the last verify and the last
 * final failure, as the repository keeps them), says in one line that Redis
 * is unreachable and that job states, the scheduler and next runs are
 * unknown, and exits 1; `--json` says so in a field.
 *
 * Fails before: status printed only `bysu: Redis unreachable at …` on stderr
 * and exited 1, with nothing of what the repository knows.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitForLog, withCluster } from '../helpers/cluster.ts';

interface Report {
  healthy: boolean;
  redis: { reachable: boolean; error: string | null };
  scheduler: unknown;
  apps: { app: string; state: string; newest: { id: string; bytes: number } | null; nextRunAt: number | null; problems: string[]; lastFailure: { reason: string } | null; lastVerify: { snapshots: number } | null }[];
}

test('status with Redis stopped: the repository\'s view, one line saying Redis is unreachable, exit 1; --json says so too', async () => {
  await withCluster(['db1'], async (cluster) => {
    await cluster.writeConfig([
      { name: 'shop', node: 'db1', parts: [{ file: 'shop.sql', run: 'echo "select 1;"' }] },
      { name: 'ledger', node: 'db1', attempts: 1, parts: [{ file: 'ledger.sql', run: 'echo "pg_dump: error: connection refused" >&2; exit 1' }] },
    ]);
    const worker = cluster.startWorker();
    await waitForLog(worker, 'snapshot worker started');
    assert.equal((await cluster.bysu(['snapshot', 'shop', '--wait'])).code, 0);
    assert.equal((await cluster.bysu(['snapshot', 'ledger', '--wait'])).code, 1);
    assert.equal((await cluster.bysu(['verify', 'shop'])).code, 0);
    const id = (await cluster.bysu(['latest', 'shop'])).stdout.trim().split('/').pop()!;

    await cluster.redis.stop();
    try {
      const table = await cluster.bysu(['status']);
      assert.equal(table.code, 1, table.stdout + table.stderr);
      assert.equal(table.stderr, '');
      const lines = table.stdout.trim().split('\n');
      assert.match(lines[0]!, /^APP +STATE +NEWEST +AGE +SIZE +NEXT RUN +NOTES$/);
      assert.match(table.stdout, new RegExp(`^shop +OK +${id} +\\d+s +\\d+ B +\\?$`, 'm'), 'newest, age and size from the repository; the next run unknown');
      assert.match(table.stdout, /^ledger +FAILING +- +- +- +\? +\S+Z part ledger\.sql: command exited with code 1/m, 'the final failure the repository keeps');
      assert.equal(lines.at(-1), `Redis unreachable at redis://127.0.0.1:${cluster.redis.port}/0: connect ECONNREFUSED 127.0.0.1:${cluster.redis.port}: job states, the scheduler and next runs are unknown; the table is what the repository knows`);
      assert.doesNotMatch(table.stdout, /no job scheduler|scheduler: NOT RUNNING/, 'unknown, not missing');

      const json = await cluster.bysu(['status', '--json']);
      assert.equal(json.code, 1);
      const report = JSON.parse(json.stdout) as Report;
      assert.equal(report.healthy, false);
      assert.deepEqual(report.redis, { reachable: false, error: `Redis unreachable at redis://127.0.0.1:${cluster.redis.port}/0: connect ECONNREFUSED 127.0.0.1:${cluster.redis.port}` });
      assert.equal(report.scheduler, null);
      const shop = report.apps.find((app) => app.app === 'shop')!;
      assert.equal(shop.state, 'ok');
      assert.equal(shop.newest?.id, id);
      assert.equal(shop.nextRunAt, null);
      assert.deepEqual(shop.problems, []);
      assert.equal(shop.lastVerify?.snapshots, 1, 'the last verify, from the repository');
      const ledger = report.apps.find((app) => app.app === 'ledger')!;
      assert.equal(ledger.state, 'failing');
      assert.match(ledger.lastFailure?.reason ?? '', /command exited with code 1/);
    } finally {
      await cluster.redis.start();
    }
    const back = JSON.parse((await cluster.bysu(['status', '--json'])).stdout) as Report;
    assert.deepEqual(back.redis, { reachable: true, error: null });
  });
});
