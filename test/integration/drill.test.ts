/**
 * Restore drills with the machine's real PostgreSQL: a database is dumped
 * from one sshd node, and the drill streams the snapshot's dump into a
 * scratch database through another node and checks a row. Also a drill whose
 * check fails, a corrupted snapshot file (refused: checksum mismatch), and a
 * drill node that is down (retried, then failed).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFile, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { waitForLog, withCluster } from '../helpers/cluster.ts';
import { postgresUnavailable, PG, psql } from '../helpers/postgres.ts';

/** The connection options as they go into a node-side command line. */
const PG_ARGS = PG.join(' ');
const unavailable = await postgresUnavailable();

test('restore drills: pass, failed check, corrupted file, drill node down', { skip: unavailable ? `no PostgreSQL answers at 127.0.0.1:5432 as postgres (${unavailable})` : false }, async () => {
  const suffix = randomBytes(4).toString('hex');
  const source = `bysu_drill_src_${suffix}`;
  const scratch = `bysu_drill_${suffix}`;
  try {
    assert.equal((await psql('postgres', `CREATE DATABASE ${source}`)).code, 0);
    assert.equal((await psql(source, "CREATE TABLE orders (id int primary key, customer text); INSERT INTO orders VALUES (1, 'ada'), (2, 'grace');")).code, 0);
    await withCluster(['db1', 'staging1'], async (cluster) => {
      const dump = { file: 'shop.sql', run: `pg_dump ${PG_ARGS} --no-owner ${source}` };
      const steps = (check: string) => [
        { run: `psql ${PG_ARGS} -v ON_ERROR_STOP=1 -q -c 'DROP DATABASE IF EXISTS ${scratch}' -c 'CREATE DATABASE ${scratch}' postgres` },
        { run: `psql ${PG_ARGS} -v ON_ERROR_STOP=1 -q ${scratch}`, stdin: 'shop.sql' },
        { run: `psql ${PG_ARGS} -tAc 'select count(*) > 1 from orders' ${scratch}`, expect: check },
      ];
      const base = { timeout: '2m', attempts: 1 };
      await cluster.writeConfig([
        { name: 'shop', node: 'db1', ...base, parts: [dump], drill: { node: 'staging1', steps: steps('^t$') } },
        { name: 'strict', node: 'db1', ...base, parts: [dump], drill: { node: 'staging1', steps: steps('^f$') } },
        { name: 'far', node: 'db1', ...base, parts: [dump], drill: { node: 'gone', steps: steps('^t$') } },
      ], {
        nodes: [...cluster.nodes.map((node) => ({ name: node.name, host: node.host, port: node.port })), { name: 'gone', host: '127.0.0.1', port: cluster.nodes[1]!.port }],
      });
      const worker = cluster.startWorker();
      const driller = cluster.startProcess(['worker', 'drill']);
      await waitForLog(worker, 'worker started');
      await waitForLog(driller, 'drill worker started');
      assert.equal((await cluster.bysu(['snapshot', 'shop', 'strict', 'far', '--wait'])).code, 0);

      const passed = await cluster.bysu(['drill', 'shop', '--wait']);
      assert.equal(passed.code, 0, passed.stdout + passed.stderr);
      assert.match(passed.stdout, /shop: drill passed: snapshot \d{8}T\d{6}Z restored and checked on staging1/);
      assert.equal((await psql(scratch, 'select customer from orders order by id')).stdout.trim(), 'ada\ngrace');
      const results = await readdir(path.join(cluster.repository, 'shop', '.drills'));
      assert.equal(results.length, 1);
      const result = JSON.parse(await readFile(path.join(cluster.repository, 'shop', '.drills', results[0]!), 'utf8'));
      assert.equal(result.format, 'bysu-drill/1');
      assert.equal(result.passed, true);
      assert.equal(result.steps[1].stdin, 'shop.sql');
      assert.ok(result.steps[1].bytesIn > 0);
      assert.equal(result.steps[2].matched, true);
      const status = JSON.parse((await cluster.bysu(['status', '--json'])).stdout) as { apps: { app: string; lastDrill: { passed: boolean } | null; problems: string[] }[] };
      assert.equal(status.apps.find((app) => app.app === 'shop')!.lastDrill?.passed, true);

      const failing = await cluster.bysu(['drill', 'strict', '--wait']);
      assert.equal(failing.code, 1);
      assert.match(failing.stdout, /strict: drill FAILED after 1 attempt\(s\): step 3 \(psql .*\): output "t\\n" does not match \/\^f\$\//);
      const after = JSON.parse((await cluster.bysu(['status', '--json'])).stdout) as typeof status;
      assert.match(after.apps.find((app) => app.app === 'strict')!.problems.join(' '), /drill FAILED/);

      // A corrupted snapshot file is refused before anything reaches the drill node.
      const latest = (await cluster.bysu(['latest', 'shop'])).stdout.trim();
      await appendFile(path.join(latest, 'shop.sql'), '-- tampered\n');
      await psql(scratch, 'DROP TABLE orders');
      const refused = await cluster.bysu(['drill', 'shop', '--wait']);
      assert.equal(refused.code, 1);
      assert.match(refused.stdout, /checksum mismatch: shop\/\d{8}T\d{6}Z\/shop\.sql has sha256 [0-9a-f]{64}, SHA256SUMS says [0-9a-f]{64}; refusing to restore it/);
      assert.notEqual((await psql(scratch, 'select 1 from orders')).code, 0, 'the drill did not touch the scratch database');

      // The drill node is down: retried (attempts 2 with the config below), then failed.
      await cluster.nodes[1]!.stop();
      const text = await readFile(cluster.configFile, 'utf8');
      await writeFile(cluster.configFile, text.replace(/name: far\n(\s+)node: db1\n/, 'name: far\n$1node: db1\n$1backoff: 1s\n').replace(/(name: far[\s\S]*?)attempts: 1/, '$1attempts: 2'));
      const down = await cluster.bysu(['drill', 'far', '--wait']);
      assert.equal(down.code, 1, down.stdout);
      assert.match(down.stdout, /far: drill attempt 1 failed, will retry: cannot connect to node "gone"/);
      assert.match(down.stdout, /far: drill FAILED after 2 attempt\(s\): cannot connect to node "gone"/);
    });
  } finally {
    await psql('postgres', `DROP DATABASE IF EXISTS ${source}`);
    await psql('postgres', `DROP DATABASE IF EXISTS ${scratch}`);
  }
});
