/**
 * Hostile input to a node: every bypass attempt of the shared table
 * (test/helpers/node-wrapper.ts) against the forced-command wrapper
 * contrib/node/bysu-allow on a real sshd, under each POSIX shell installed.
 * The row counts the attempts tried and those refused cleanly (exit 126, no
 * output, nothing created). The integration test asserts each row's message.
 *
 * Fails before the fix: with grep -Fxq, 6 of the 24 attempts ran under each
 * shell (a command after a newline among them): `rejected` was 36 of 48.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { recordFault } from '../helpers/fault-report.ts';
import { refusedCleanly, tryWrapper, WRAPPER_SHELLS } from '../helpers/node-wrapper.ts';

test('bypass attempts on the node wrapper: all refused with 126, no side effect', async () => {
  const shells = WRAPPER_SHELLS.filter((shell) => !shell.missing);
  assert.ok(shells.length > 0, `no shell to test the wrapper under: ${WRAPPER_SHELLS.map((shell) => shell.missing).join('; ')}`);
  let tried = 0;
  let rejected = 0;
  const ran: string[] = [];
  let allowedOk = 0;
  let allowedTried = 0;
  for (const shell of shells) {
    const report = await tryWrapper(shell);
    for (const result of report.attempts) {
      tried += 1;
      if (refusedCleanly(result)) rejected += 1;
      else ran.push(`${shell.name}: ${result.attempt.name} (exit ${result.code})`);
    }
    for (const result of report.allowed) {
      allowedTried += 1;
      if (result.code === result.allowed.code && result.stdout === result.allowed.stdout(report.nodeDir)) allowedOk += 1;
    }
  }
  const pass = rejected === tried && allowedOk === allowedTried;
  recordFault({
    kind: 'input',
    fault: `${tried} bypass attempts on the node wrapper (${shells.map((shell) => shell.name).join(', ')})`,
    expected: 'all exit 126, nothing run or created; allowed commands run byte for byte',
    observed: `${rejected} refused cleanly${ran.length ? `; ran: ${ran.join(', ')}` : ''}; ${allowedOk}/${allowedTried} allowed ran as listed`,
    pass,
    tried,
    rejected,
  });
  assert.deepEqual(ran, [], 'every attempt refused');
  assert.equal(allowedOk, allowedTried, 'every allowed command ran with its output and exit status');
});
