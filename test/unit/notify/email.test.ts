/** What an alert says by email: a subject of a few words, a plain-text body with what, when, why and what next; a node's text cannot break either. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { composeAlertEmail, smtpServer } from '../../../src/notify/email.ts';

test('a failure: app, state and node in the subject; when (UTC), the reason and what to run in the body', () => {
  const mail = composeAlertEmail({
    event: 'failed',
    app: 'shop',
    node: 'db1',
    at: '2026-11-26T02:19:44.120Z',
    reason: 'part shop.sql: command exited with code 1\nstderr: pg_dump: error: connection refused',
  }, { dashboardUrl: 'https://backup.example.com/' }, 'backup1');
  assert.equal(mail.subject, '[BYSU] shop FAILING on db1: part shop.sql: command exited with code 1');
  const text = mail.text;
  assert.match(text, /^shop is FAILING: /);
  assert.match(text, /^When: +2026-11-26 02:19:44 UTC$/m);
  assert.match(text, /^Reason:\n  part shop\.sql: command exited with code 1\n  stderr: pg_dump: error: connection refused\n/m);
  assert.match(text, /^ {2}bysu status shop +its state/m);
  assert.match(text, /^ {2}bysu snapshot shop --wait +once the cause is fixed/m);
  assert.match(text, /^ {2}Dashboard: https:\/\/backup\.example\.com\/apps\/shop +\(its snapshots/m);
  assert.match(text, /BYSU \S+ on backup1, once per change of state/);
  assert.equal(mail.headers['Auto-Submitted'], 'auto-generated');
  assert.equal(mail.headers['X-BYSU-Event'], 'failed');
});

test('the dashboard link is the app\'s page, under the path the dashboard is reached by', () => {
  const at = '2026-11-26T02:19:44Z';
  const link = (dashboardUrl: string) => /Dashboard: (\S+)/.exec(composeAlertEmail({ event: 'recovered', app: 'shop', at }, { dashboardUrl }).text)![1];
  assert.equal(link('https://backup.example.com'), 'https://backup.example.com/apps/shop');
  assert.equal(link('https://example.com/bysu'), 'https://example.com/bysu/apps/shop');
  assert.equal(link('https://example.com/bysu/'), 'https://example.com/bysu/apps/shop');
});

test('stale, recovered and drill alerts say so in their subject', () => {
  const at = '2026-11-26T02:19:44Z';
  assert.equal(composeAlertEmail({ event: 'recovered', app: 'shop', node: 'db1', at, lastSnapshot: { id: '20261127T021500Z', finishedAt: at } }, {}).subject, '[BYSU] shop OK again on db1');
  assert.equal(composeAlertEmail({ event: 'stale', app: 'wiki', at, reason: 'no snapshot since the app was configured', lastSnapshot: null }, {}).subject,
    '[BYSU] wiki STALE: no snapshot since the app was configured');
  assert.match(composeAlertEmail({ event: 'stale', app: 'wiki', at, lastSnapshot: null }, {}).text, /^Newest snapshot: none yet$/m);
  assert.match(composeAlertEmail({ event: 'drill-failed', app: 'shop', node: 'staging1', at, reason: 'step 2: expect did not match' }, {}).subject, /^\[BYSU\] shop restore drill FAILING on staging1: step 2/);
  assert.equal(composeAlertEmail({ event: 'drill-recovered', app: 'shop', at }, {}).subject, '[BYSU] shop restore drill OK again');
  assert.doesNotMatch(composeAlertEmail({ event: 'recovered', app: 'shop', at }, {}).text, /Dashboard:/, 'no dashboard line without dashboardUrl');
});

test('a hostile reason (a node\'s stderr) stays a short subject and a bounded, escaped body', () => {
  const reason = `part a.sql: ${'x'.repeat(500)}\u001b]0;owned\u0007\r\nBcc: victim@example.com\n${Array.from({ length: 40 }, (_, index) => `line ${index}`).join('\n')}`;
  const mail = composeAlertEmail({ event: 'failed', app: 'shop', at: '2026-11-26T02:19:44Z', reason }, {});
  assert.ok(mail.subject.length <= 100, mail.subject);
  assert.ok(mail.subject.endsWith('…'));
  assert.doesNotMatch(mail.subject, /[\r\n]/);
  assert.doesNotMatch(mail.text, /\u001b|\u0007/, 'control characters are escaped');
  assert.match(mail.text, /^ {2}Bcc: victim@example\.com$/m, 'a header-like line stays an indented body line');
  assert.match(mail.text, /… \(30 more lines/);
  assert.ok(mail.text.split('\n').every((line) => Buffer.byteLength(line) <= 400), 'every line is bounded');
});

test('the server as messages name it: the port defaults by security', () => {
  const base = { host: 'smtp.example.com', from: 'b@example.com', to: ['o@example.com'] };
  assert.equal(smtpServer({ ...base, security: 'starttls' }), 'smtp.example.com:587');
  assert.equal(smtpServer({ ...base, security: 'tls' }), 'smtp.example.com:465');
  assert.equal(smtpServer({ ...base, security: 'none' }), 'smtp.example.com:25');
  assert.equal(smtpServer({ ...base, security: 'starttls', port: 2525 }), 'smtp.example.com:2525');
});
