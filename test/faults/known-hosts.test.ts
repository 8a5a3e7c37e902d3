/**
 * known_hosts is read at each connection: a running snapshot worker that
 * started while a node's key was missing from the file takes a key appended
 * later, with no restart and no signal, and its "unknown host" failure says
 * which file it read and which name it looked up there.
 */
import assert from 'node:assert/strict';
import { appendFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { waitForLog, withCluster } from '../helpers/cluster.ts';
import { recordFault } from '../helpers/fault-report.ts';

// Fails before the fix: the worker parsed known_hosts once at start, so the second
// snapshot failed again with "is unknown: [127.0.0.1]:<port> is not in …/known_hosts".
test('a host key appended to known_hosts while the worker runs is trusted at the next snapshot, without a signal', async () => {
  await withCluster(['db1'], async (cluster) => {
    const node = cluster.nodes[0]!;
    // The harness added the node's key; start from a file that exists but does not know it.
    await writeFile(cluster.keys.knownHostsFile, '# no entry for db1 yet\n');
    await cluster.writeConfig([{ name: 'late', node: 'db1', attempts: 1, parts: [{ file: 'hello.txt', run: 'echo hello' }] }]);
    const worker = cluster.startWorker();
    await waitForLog(worker, 'worker started');

    const refused = await cluster.bysu(['snapshot', 'late', '--wait']);
    const expectedMessage = `no known_hosts entry for [127.0.0.1]:${node.port} in ${cluster.keys.knownHostsFile}`;

    // What an operator does after checking the key out of band: append its line. No SIGHUP, no restart.
    await appendFile(cluster.keys.knownHostsFile, `${node.knownHostsLine}\n`);
    const accepted = await cluster.bysu(['snapshot', 'late', '--wait']);
    const snapshots = (await readdir(path.join(cluster.repository, 'late')).catch(() => [] as string[])).filter((name) => /^\d{8}T\d{6}Z/.test(name));
    const pass = refused.code !== 0 && refused.stdout.includes(expectedMessage) && accepted.code === 0 && snapshots.length === 1 && worker.exitCode === null;
    recordFault({
      kind: 'fault',
      fault: 'node key missing from known_hosts when the worker started, appended later (no signal)',
      expected: 'first snapshot fails naming the file and [host]:port; the next one, same worker, commits',
      observed: `first: exit ${refused.code}${refused.stdout.includes(expectedMessage) ? ', message names the file and name' : ', message lacks the file or name'}; ` +
        `after the append: exit ${accepted.code}, ${snapshots.length} snapshot(s), worker pid ${worker.pid} ${worker.exitCode === null ? 'still running' : `exited ${worker.exitCode}`}`,
      pass,
      lost: snapshots.length === 1 ? 0 : 1,
      partialVisible: 0,
    });
    assert.equal(accepted.code, 0, `${accepted.stdout}\n${worker.output()}`);
    assert.equal(snapshots.length, 1, snapshots.join(', '));
    assert.equal(worker.exitCode, null, 'the same worker took both jobs');
    assert.notEqual(refused.code, 0, refused.stdout);
    assert.ok(refused.stdout.includes(expectedMessage), `the failure names the name looked up and the file:\n${refused.stdout}`);
    assert.ok(refused.stdout.includes(`bysu keyscan 127.0.0.1 --port ${node.port}`), refused.stdout);
  });
});
