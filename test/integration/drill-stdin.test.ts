/**
 * Restore drills without a database: a 5 MB part streamed into `sha256sum`
 * on the drill node must arrive byte for byte (its hash is the expected
 * output), and a step that stops reading half-way and fails is reported with
 * its exit code and stderr, and not retried.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { waitForLog, withCluster } from '../helpers/cluster.ts';

test('a drill streams a large part intact, and a failing restore step is reported, not retried', async () => {
  await withCluster(['db1', 'staging1'], async (cluster) => {
    await cluster.writeConfig([
      { name: 'files', node: 'db1', attempts: 3, backoff: '1s', parts: [{ file: 'data.bin', run: 'head -c 5000000 /dev/urandom' }], drill: { node: 'staging1', steps: [{ run: 'sha256sum', stdin: 'data.bin', expect: 'HASH' }] } },
    ]);
    const worker = cluster.startWorker();
    const driller = cluster.startProcess(['worker', 'drill']);
    await waitForLog(worker, 'worker started');
    await waitForLog(driller, 'drill worker started');
    assert.equal((await cluster.bysu(['snapshot', 'files', '--wait'])).code, 0);
    const latest = (await cluster.bysu(['latest', 'files'])).stdout.trim();
    const hash = createHash('sha256').update(await readFile(path.join(latest, 'data.bin'))).digest('hex');

    const text = await readFile(cluster.configFile, 'utf8');
    await (await import('node:fs/promises')).writeFile(cluster.configFile, text.replace('HASH', `^${hash}  -$`));
    const passed = await cluster.bysu(['drill', 'files', '--wait']);
    assert.equal(passed.code, 0, passed.stdout + passed.stderr);

    await (await import('node:fs/promises')).writeFile(cluster.configFile, text.replace('run: sha256sum', `run: "head -c 1000 > /dev/null; echo 'restore failed: no space left' >&2; exit 3"`));
    const failed = await cluster.bysu(['drill', 'files', '--wait']);
    assert.equal(failed.code, 1, failed.stdout);
    assert.match(failed.stdout, /files: drill FAILED after 1 attempt\(s\): step 1 \(head -c 1000 .*\) exited with code 3 after reading \d+ bytes of data\.bin\nstderr:\nrestore failed: no space left/);
  });
});
