/**
 * The node-side setup the README recommends, on a real sshd: the backup key
 * is restricted to the forced command contrib/node/bysu-allow, which runs
 * only the commands listed in the allow-list file.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { PROJECT_ROOT, waitForLog, withCluster } from '../helpers/cluster.ts';
import { run } from '../helpers/processes.ts';

test('a key restricted to bysu-allow runs the listed dump commands and nothing else', async () => {
  await withCluster(['db1'], async (cluster) => {
    const node = cluster.nodes[0]!;
    const allowed = path.join(node.dir, 'allowed-commands');
    const dump = "printf 'SELECT 1;\\n'";
    await writeFile(allowed, `${dump}\ntar -C /etc -cf - hostname\n`);
    const wrapper = path.join(PROJECT_ROOT, 'contrib/node/bysu-allow');
    await writeFile(path.join(node.dir, 'authorized_keys'), `restrict,command="${wrapper} ${allowed}" ${cluster.keys.publicKey}\n`);

    await cluster.writeConfig([
      { name: 'allowed', node: 'db1', parts: [{ file: 'db.sql', run: dump }, { file: 'etc.tar', run: 'tar -C /etc -cf - hostname' }] },
      { name: 'sneaky', node: 'db1', attempts: 1, parts: [{ file: 'x.sql', run: 'cat /etc/shadow' }] },
    ]);
    const worker = cluster.startWorker();
    await waitForLog(worker, 'snapshot worker started');

    const ok = await cluster.bysu(['snapshot', 'allowed', '--wait']);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    const refused = await cluster.bysu(['snapshot', 'sneaky', '--wait']);
    assert.equal(refused.code, 1);
    assert.match(refused.stdout, /sneaky: FAILED after 1 attempt\(s\): part x\.sql: the node refused the command \(exit 126 .*\nstderr .*\nbysu-allow: command not in .*allowed-commands: cat \/etc\/shadow/);

    // The same key with the OpenSSH client: no shell, no other command.
    const ssh = ['-i', cluster.keys.identityFile, '-o', `UserKnownHostsFile=${cluster.keys.knownHostsFile}`, '-o', 'BatchMode=yes', '-p', String(node.port), `${node.user}@127.0.0.1`];
    const shell = await run('ssh', [...ssh, 'id']);
    assert.equal(shell.code, 126);
    const listed = await run('ssh', [...ssh, dump]);
    assert.equal(listed.code, 0);
    assert.equal(listed.stdout, 'SELECT 1;\n');
  });
});
