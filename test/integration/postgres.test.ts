/**
 * A real database dump: pg_dump of the machine's PostgreSQL runs on an sshd
 * node as a part; the snapshot's file is then loaded with psql into a scratch
 * database and a row is checked, as an operator would restore by hand.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { test } from 'node:test';
import { waitForLog, withCluster } from '../helpers/cluster.ts';
import { postgresUnavailable, PG, psql } from '../helpers/postgres.ts';
import { run } from '../helpers/processes.ts';

const unavailable = await postgresUnavailable();

test('pg_dump over SSH restores with psql into a scratch database', { skip: unavailable ? `no PostgreSQL answers at 127.0.0.1:5432 as postgres (${unavailable})` : false }, async () => {
  const suffix = randomBytes(4).toString('hex');
  const source = `bysu_src_${suffix}`;
  const scratch = `bysu_restore_${suffix}`;
  try {
    assert.equal((await psql('postgres', `CREATE DATABASE ${source}`)).code, 0);
    const setup = await psql(source, "CREATE TABLE orders (id int primary key, customer text); INSERT INTO orders VALUES (1, 'ada'), (2, 'grace');");
    assert.equal(setup.code, 0, setup.stderr);

    await withCluster(['db1'], async (cluster) => {
      await cluster.writeConfig([
        { name: 'shop', node: 'db1', parts: [{ file: 'shop.sql', run: `pg_dump ${PG.join(' ')} --no-owner ${source}` }] },
      ]);
      const worker = cluster.startWorker();
      await waitForLog(worker, 'snapshot worker started');
      const result = await cluster.bysu(['snapshot', 'shop', '--wait']);
      assert.equal(result.code, 0, result.stdout + result.stderr);

      const latest = (await cluster.bysu(['latest', 'shop'])).stdout.trim();
      assert.equal((await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: latest })).code, 0);
      assert.equal((await psql('postgres', `CREATE DATABASE ${scratch}`)).code, 0);
      const restore = await run('psql', [...PG, '-v', 'ON_ERROR_STOP=1', '-q', '-d', scratch, '-f', path.join(latest, 'shop.sql')]);
      assert.equal(restore.code, 0, restore.stderr);
      const rows = await psql(scratch, 'SELECT customer FROM orders ORDER BY id');
      assert.equal(rows.stdout.trim(), 'ada\ngrace');
    });
  } finally {
    await psql('postgres', `DROP DATABASE IF EXISTS ${source}`);
    await psql('postgres', `DROP DATABASE IF EXISTS ${scratch}`);
  }
});
