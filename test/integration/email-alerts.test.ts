/**
 * Email alerts through the real pipeline: the real `bysu` worker and
 * scheduler processes, real sshd nodes, and a real SMTP server on loopback
 * (aiosmtpd, STARTTLS with the operator's own CA and a login) that parses
 * each message as a mail client would. A failing app sends exactly one
 * `FAILING` email, its recovery one `OK again`; the password's variable
 * missing is a clear error at `config check`, at start and at reload.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { waitForLog, withCluster, type TestCluster } from '../helpers/cluster.ts';
import { exitWithin, waitUntil } from '../helpers/processes.ts';
import { makeCertificate, smtpServerUnavailable, withSmtpServer, type ReceivedMail, type TestSmtpServer } from '../helpers/smtp.ts';

const unavailable = smtpServerUnavailable();
const PASSWORD = 'correct horse battery staple';

/** Given a cluster and an SMTP server, write a config whose app `shop` fails until `<dir>/fixed` exists. */
async function writeEmailConfig(cluster: TestCluster, server: TestSmtpServer, ca: string, passwordEnv = 'BYSU_SMTP_PASSWORD'): Promise<void> {
  const fixed = path.join(cluster.dir, 'fixed');
  await cluster.writeConfig(
    [
      { name: 'shop', node: 'db1', attempts: 1, schedule: '0 0 1 1 *', parts: [{ file: 'shop.sql', run: `test -f ${fixed} || { echo 'pg_dump: error: connection to server refused' >&2; exit 1; }; echo 'CREATE TABLE t();'` }] },
      { name: 'wiki', node: 'db1', schedule: '0 0 1 1 *', parts: [{ file: 'wiki.tar', run: 'tar -cf - -T /dev/null' }] },
    ],
    {
      notify: {
        timeout: '5s',
        email: {
          host: server.host, port: server.port, security: 'starttls', caFile: ca, user: 'bysu', passwordEnv,
          from: 'BYSU <bysu@example.com>', to: ['ops@example.com', 'oncall@example.com'], dashboardUrl: 'https://backup.example.com/',
        },
      },
    },
  );
}

const lines = (mail: ReceivedMail) => (mail.text ?? '').replaceAll('\r\n', '\n');

test('a failing app sends exactly one FAILING email, and its recovery one OK again', { skip: unavailable }, async () => {
  await withCluster(['db1'], async (cluster) => {
    const certificate = await makeCertificate(cluster.dir);
    await withSmtpServer({ starttls: certificate, login: { user: 'bysu', password: PASSWORD } }, async (server) => {
      await writeEmailConfig(cluster, server, certificate.ca);
      const worker = cluster.startWorker({ BYSU_SMTP_PASSWORD: PASSWORD });
      await waitForLog(worker, 'worker started');

      const failed = await cluster.bysu(['snapshot', 'shop', '--wait']);
      assert.equal(failed.code, 1, failed.stdout + failed.stderr);
      const [mail] = await server.waitFor((mails) => mails.length >= 1);
      assert.equal(mail!.headers.From, 'BYSU <bysu@example.com>');
      assert.equal(mail!.headers.To, 'ops@example.com, oncall@example.com');
      assert.deepEqual(mail!.rcptTos, ['ops@example.com', 'oncall@example.com']);
      assert.match(mail!.headers.Subject!, /^\[BYSU\] shop FAILING on db1: part shop\.sql: command exited with code 1/);
      assert.equal(mail!.contentType, 'text/plain');
      assert.equal(mail!.encrypted, true);
      assert.equal(mail!.login, 'bysu');
      const text = lines(mail!);
      assert.match(text, /^shop is FAILING/);
      assert.match(text, /^When: +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/m);
      assert.match(text, /pg_dump: error: connection to server refused/, 'the reason, with the command\'s stderr');
      assert.match(text, /^ {2}bysu status shop /m);
      assert.match(text, /^ {2}Dashboard: https:\/\/backup\.example\.com\/apps\/shop /m);
      // The command the email says to run next runs, and shows that app.
      const next = /^ {2}bysu (status \S+) /m.exec(text)![1]!.split(' ');
      const shown = await cluster.bysu(next);
      assert.equal(shown.code, 1, shown.stdout + shown.stderr);
      assert.match(shown.stdout, /^shop +FAILING /m);
      assert.doesNotMatch(shown.stdout, /^wiki /m, 'only the app named');
      assert.equal((await cluster.bysu(['status', 'nope'])).code, 2);

      // The same failure again is no news: no second email.
      assert.equal((await cluster.bysu(['snapshot', 'shop', '--wait'])).code, 1);
      await new Promise((resolve) => setTimeout(resolve, 2000));
      assert.equal((await server.messages()).length, 1, 'one email per change of state');

      await writeFile(path.join(cluster.dir, 'fixed'), '');
      const recovered = await cluster.bysu(['snapshot', 'shop', '--wait']);
      assert.equal(recovered.code, 0, recovered.stdout + recovered.stderr);
      const mails = await server.waitFor((received) => received.length >= 2);
      await new Promise((resolve) => setTimeout(resolve, 2000));
      assert.equal((await server.messages()).length, 2);
      assert.equal(mails[1]!.headers.Subject, '[BYSU] shop OK again on db1');
      assert.match(lines(mails[1]!), /^Newest snapshot: \d{8}T\d{6}Z/m);
      assert.doesNotMatch(worker.output(), new RegExp(PASSWORD), 'the password is never logged');
    });
  });
});

test('the password\'s variable missing: config check, a start and a reload each refuse, naming the variable', { skip: unavailable }, async () => {
  await withCluster(['db1'], async (cluster) => {
    const certificate = await makeCertificate(cluster.dir);
    await withSmtpServer({ starttls: certificate, login: { user: 'bysu', password: PASSWORD } }, async (server) => {
      await writeEmailConfig(cluster, server, certificate.ca);
      const expected = 'notify.email.passwordEnv: the environment variable BYSU_SMTP_PASSWORD is not set; it must hold the SMTP password of "bysu"';

      const check = await cluster.bysu(['config', 'check']);
      assert.equal(check.code, 2, check.stdout + check.stderr);
      assert.ok(check.stderr.includes(expected), check.stderr);
      assert.equal((await cluster.bysu(['config', 'check'], { env: { BYSU_SMTP_PASSWORD: PASSWORD } })).code, 0);
      // Commands that send no alert do not need it.
      assert.equal((await cluster.bysu(['list', 'shop'])).code, 0);

      for (const args of [['scheduler'], ['worker', 'snapshot']]) {
        const child = cluster.startProcess(args);
        assert.equal(await exitWithin(child, 60_000), 2, `${args.join(' ')} refuses to start:\n${child.output()}`);
        assert.ok(child.output().includes(expected), child.output());
      }

      // Running with the variable, a reload to a config that names another, unset one is refused; the old config stays.
      const scheduler = cluster.startProcess(['scheduler'], { BYSU_SMTP_PASSWORD: PASSWORD });
      await waitForLog(scheduler, 'scheduler started');
      await writeEmailConfig(cluster, server, certificate.ca, 'BYSU_OTHER_SMTP_PASSWORD');
      process.kill(scheduler.pid!, 'SIGHUP');
      await waitUntil('the reload to be refused', async () => scheduler.output().includes('config reload refused'), 20_000);
      const refused = scheduler.output().split('\n').find((line) => line.includes('config reload refused'))!;
      assert.match(refused, /the environment variable BYSU_OTHER_SMTP_PASSWORD is not set/);
    });
  });
});
