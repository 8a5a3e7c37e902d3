/**
 * Email alerts from the notifier against a real Redis and a real SMTP server
 * on loopback (aiosmtpd) that receives and parses each message: STARTTLS
 * with a certificate of the operator's own CA, required and never given up
 * for plain; the email and the webhook delivered independently (one down
 * neither holds back nor repeats the other); an outage logged once, not
 * once per try.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import type { EmailConfig } from '../../src/config/load.ts';
import { Notifier, type AlertEvent } from '../../src/notify/notifier.ts';
import { startHttpRecorder } from '../helpers/http-recorder.ts';
import { withTempDir } from '../helpers/processes.ts';
import { withRedis } from '../helpers/redis.ts';
import { makeCertificate, smtpServerUnavailable, withSmtpServer, type ReceivedMail } from '../helpers/smtp.ts';

const unavailable = smtpServerUnavailable();
const event = (kind: AlertEvent['event'], app = 'shop'): AlertEvent => ({ event: kind, app, node: 'db1', at: new Date().toISOString(), reason: kind === 'failed' ? 'part a.sql: command exited with code 1' : undefined });
const subjects = (mails: ReceivedMail[]) => mails.map((mail) => mail.headers.Subject);

/** A logger whose JSON lines the test can read. */
function capturedLogger() {
  const lines: { level: number; msg: string }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

/** Given a notifier's settings, run fn with a notifier on a fresh Redis. */
async function withNotifier(settings: ConstructorParameters<typeof Notifier>[2], fn: (notifier: Notifier, lines: { level: number; msg: string }[]) => Promise<void>) {
  await withRedis(async (redis) => {
    const connection = new Redis(redis.url);
    const { logger, lines } = capturedLogger();
    try {
      await fn(new Notifier(connection, 'n', settings, logger), lines);
    } finally {
      connection.disconnect();
    }
  });
}

test('STARTTLS with the operator\'s own CA: delivered encrypted and logged in; without the CA, or from a server that offers no STARTTLS, nothing is sent', { skip: unavailable }, async () => {
  await withTempDir(async (dir) => {
    const certificate = await makeCertificate(dir);
    process.env.BYSU_TEST_SMTP_PASSWORD = 'correct horse';
    await withSmtpServer({ starttls: certificate, login: { user: 'bysu', password: 'correct horse' } }, async (server) => {
      const email: EmailConfig = {
        host: server.host, port: server.port, security: 'starttls', user: 'bysu', passwordEnv: 'BYSU_TEST_SMTP_PASSWORD',
        from: 'BYSU <bysu@example.com>', to: ['ops@example.com'],
      };
      // The default trust: the system's CAs, which do not know this one. Refused, not sent unverified.
      await withNotifier({ webhook: '', email, timeoutMs: 5000, retryDelaysMs: [] }, async (notifier, lines) => {
        assert.equal(await notifier.report(event('failed')), true);
        await notifier.flush();
        assert.deepEqual(await server.messages(), []);
        const line = lines.find((entry) => entry.msg.startsWith(`email via 127.0.0.1:${server.port} failed`));
        assert.ok(line, JSON.stringify(lines));
        assert.match(line.msg, /certificate.*give the CA that signs it in notify\.email\.caFile/);
        assert.doesNotMatch(JSON.stringify(lines), /correct horse/, 'the password is never logged');
      });
      // With caFile: delivered over the encrypted session, logged in as the user.
      await withNotifier({ webhook: '', email: { ...email, caFile: certificate.ca }, timeoutMs: 5000 }, async (notifier) => {
        assert.equal(await notifier.report(event('failed')), true);
        await notifier.flush();
        const [mail, ...more] = await server.messages();
        assert.equal(more.length, 0);
        assert.equal(mail!.encrypted, true);
        assert.equal(mail!.login, 'bysu');
        assert.equal(mail!.headers.Subject, '[BYSU] shop FAILING on db1: part a.sql: command exited with code 1');
      });
    });
    // A server that does not offer STARTTLS (a downgrade, or the wrong port): security starttls refuses to go on in plain.
    await withSmtpServer({}, async (server) => {
      const email: EmailConfig = { host: server.host, port: server.port, security: 'starttls', from: 'bysu@example.com', to: ['ops@example.com'] };
      await withNotifier({ webhook: '', email, timeoutMs: 5000, retryDelaysMs: [] }, async (notifier, lines) => {
        await notifier.report(event('failed'));
        await notifier.flush();
        assert.deepEqual(await server.messages(), [], 'nothing sent in plain');
        assert.ok(lines.some((entry) => /STARTTLS/.test(entry.msg)), JSON.stringify(lines));
        // security none says plain on purpose: then it goes.
        await notifier.report(event('recovered'));
        await notifier.flush();
        assert.deepEqual(await server.messages(), [], 'the failed alert was never delivered, so no recovery is announced');
      });
      await withNotifier({ webhook: '', email: { ...email, security: 'none' }, timeoutMs: 5000 }, async (notifier) => {
        await notifier.report(event('failed'));
        await notifier.flush();
        const mails = await server.messages();
        assert.deepEqual(subjects(mails), ['[BYSU] shop FAILING on db1: part a.sql: command exited with code 1']);
        assert.equal(mails[0]!.encrypted, false);
      });
    });
  });
});

test('email and webhook are independent: each is delivered once per change, one being down neither stops nor repeats the other', { skip: unavailable }, async () => {
  const recorder = await startHttpRecorder();
  try {
    await withSmtpServer({}, async (server) => {
      const email: EmailConfig = { host: server.host, port: server.port, security: 'none', from: 'bysu@example.com', to: ['ops@example.com', 'oncall@example.com'] };
      await withNotifier({ webhook: `${recorder.url}/hook`, email, timeoutMs: 3000, retryDelaysMs: [50] }, async (notifier) => {
        const hooks = () => recorder.requests.filter((request) => request.path === '/hook').map((request) => (request.body as { event: string }).event);

        // The webhook is down: the email still goes.
        recorder.answer('down');
        assert.equal(await notifier.report(event('failed')), true);
        await notifier.flush();
        assert.deepEqual(subjects(await server.messages()), ['[BYSU] shop FAILING on db1: part a.sql: command exited with code 1']);
        assert.deepEqual((await server.messages())[0]!.rcptTos, ['ops@example.com', 'oncall@example.com']);
        // The webhook is back; the next report (the scheduler's check) sends the webhook only: the email was delivered.
        recorder.answer('ok');
        const triesWhileDown = hooks().length;
        assert.equal(await notifier.report(event('failed')), true);
        await notifier.flush();
        assert.deepEqual(hooks().slice(triesWhileDown), ['failed']);
        assert.equal((await server.messages()).length, 1, 'the email is not sent twice');

        // Now the mail server is down: the webhook still goes, and the email follows once the server is back.
        await server.stop();
        assert.equal(await notifier.report(event('recovered')), true);
        await notifier.flush();
        assert.deepEqual(hooks().slice(triesWhileDown), ['failed', 'recovered']);
        await server.start();
        assert.equal(await notifier.report(event('failed')), true);
        await notifier.flush();
        // The email's last delivered state was failing: this failure is no news to it; the webhook had recovered.
        assert.deepEqual(subjects(await server.messages()), ['[BYSU] shop FAILING on db1: part a.sql: command exited with code 1']);
        assert.deepEqual(hooks().slice(triesWhileDown), ['failed', 'recovered', 'failed']);
        assert.equal(await notifier.report(event('recovered')), true);
        await notifier.flush();
        assert.deepEqual(subjects(await server.messages()), ['[BYSU] shop FAILING on db1: part a.sql: command exited with code 1', '[BYSU] shop OK again on db1']);
      });
    });
  } finally {
    await recorder.close();
  }
});

test('a mail server down for many alerts and tries is logged once, then once more when it delivers again', { skip: unavailable }, async () => {
  await withSmtpServer({ down: true }, async (server) => {
    const email: EmailConfig = { host: server.host, port: server.port, security: 'none', from: 'bysu@example.com', to: ['ops@example.com'] };
    await withNotifier({ webhook: '', email, timeoutMs: 3000, retryDelaysMs: [20, 20, 20] }, async (notifier, lines) => {
      for (const app of ['a1', 'a2', 'a3', 'a4', 'a5']) await notifier.report(event('failed', app));
      await notifier.flush();
      for (const app of ['a1', 'a2', 'a3', 'a4', 'a5']) await notifier.report(event('failed', app)); // the scheduler's next check
      await notifier.flush();
      const about = (text: string) => lines.filter((entry) => entry.msg.includes(text));
      assert.equal(about('email via').length, 1, `40 failed tries, one line: ${JSON.stringify(lines)}`);
      assert.match(about('email via')[0]!.msg, /^email via 127\.0\.0\.1:\d+ failed: connect ECONNREFUSED/);
      await server.start();
      await notifier.report(event('failed', 'a1'));
      await notifier.flush();
      const back = about('delivers again');
      assert.equal(back.length, 1);
      assert.match(back[0]!.msg, /40 tries had failed; undelivered meanwhile: email for a1, email for a2, email for a3, email for a4, email for a5/);
      assert.deepEqual(subjects(await server.messages()), ['[BYSU] a1 FAILING on db1: part a.sql: command exited with code 1']);
    });
  });
});
