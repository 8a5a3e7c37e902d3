/**
 * The node-side setup the README recommends, on a real sshd: the backup key
 * is restricted to the forced command contrib/node/bysu-allow, which runs
 * only the commands listed in the allow-list file.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { PROJECT_ROOT, waitForLog, withCluster } from '../helpers/cluster.ts';
import { BYPASS_ATTEMPTS, refusedCleanly, tryWrapper, WRAPPER, WRAPPER_SHELLS } from '../helpers/node-wrapper.ts';
import { run, withTempDir } from '../helpers/processes.ts';

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

/**
 * Every bypass attempt of the shared table (test/helpers/node-wrapper.ts)
 * through a real sshd with the README's `restrict,command="…"` line, under
 * each POSIX shell a node may have: all refused with 126, no output, nothing
 * created; the allowed commands run byte for byte with their exit status.
 *
 * Fails before the fix (grep -Fxq), under dash: 15 of the 24 attempts (as
 * root) fail. Six ran and exited 0: `echo dump-ok\ntouch …/sentinel` printed
 * dump-ok and created the sentinel (the exploit), as did the same with
 * the lines swapped, an allowed line with a trailing newline and a tab
 * command listed verbatim; a blank and a comment line of the list were
 * matched and run. The other nine were refused without saying why (a missing
 * or empty list, a directory, CRLF line ends) or echoed CR, ESC and DEL back raw.
 */
for (const shell of WRAPPER_SHELLS) {
  test(`bysu-allow under ${shell.name}: every bypass attempt refused with 126 and no side effect; allowed commands run byte for byte`, { skip: shell.missing }, async () => {
    const report = await tryWrapper(shell);
    const problems: string[] = [];
    for (const result of report.attempts) {
      const { attempt } = result;
      if (!refusedCleanly(result)) {
        problems.push(`${attempt.name}: exit ${result.code}, stdout ${JSON.stringify(result.stdout)}, left ${JSON.stringify(result.leftovers)}, stderr ${JSON.stringify(result.stderr)}`);
      } else if (!result.stderr.startsWith('bysu-allow: ') || (attempt.says && !attempt.says.test(result.stderr))) {
        problems.push(`${attempt.name}: refused, but stderr ${JSON.stringify(result.stderr)} does not say ${attempt.says}`);
      }
    }
    assert.deepEqual(problems, [], `attempts not refused as they should be (${problems.length} of ${report.attempts.length})`);
    assert.ok(report.attempts.length >= BYPASS_ATTEMPTS.length - 1, 'at most the mode-000 attempt is left out (as root)');

    for (const result of report.allowed) {
      assert.equal(result.code, result.allowed.code, `${result.allowed.name}: exit status (${result.stderr})`);
      assert.equal(result.stdout, result.allowed.stdout(report.nodeDir), `${result.allowed.name}: stdout`);
      assert.equal(result.stderr, result.allowed.stderr ?? '', `${result.allowed.name}: stderr`);
    }
  });
}

test('a refusal shows and logs the command sanitised and cut: no control character reaches the client or syslog', async () => {
  // The wrapper by itself, as sshd runs it, with a `logger` first in PATH that
  // records its arguments (there is no syslog daemon to read back here).
  await withTempDir(async (dir) => {
    const list = path.join(dir, 'allowed-commands');
    await writeFile(list, 'echo dump-ok\n');
    const logged = path.join(dir, 'logged');
    await writeFile(path.join(dir, 'logger'), `#!/bin/sh\nprintf '%s\\n' "$@" >> ${logged}\n`, { mode: 0o755 });
    const command = `echo dump-ok\n\x1b]0;owned\x07${'y'.repeat(500)}`;
    const env = { PATH: `${dir}:${process.env.PATH}`, SSH_ORIGINAL_COMMAND: command, SSH_CLIENT: '10.0.0.9 50000 22' };
    const result = await run(WRAPPER, [list], { env });
    assert.equal(result.code, 126);
    const shown = `echo dump-ok??]0;owned?${'y'.repeat(200 - 23)}[...${Buffer.byteLength(command)} bytes in all]`;
    assert.equal(result.stderr, `bysu-allow: command holds a control character (newline, carriage return, tab or other): ${shown}\n`);
    assert.equal(await readFile(logged, 'utf8'), `-t\nbysu-allow\nrefused from 10.0.0.9: command holds a control character (newline, carriage return, tab or other): ${shown}\n`);
  });
});
