/** notify.email: checked like the rest of the config, each problem naming its field; the password itself never in the file nor in a message. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../../src/errors.ts';
import { parseConfig } from '../../../src/config/load.ts';
import { emailProblems } from '../../../src/notify/email.ts';

const config = (email: string) => `
repository: /tmp/x
nodes: [{ name: db1, host: 127.0.0.1 }]
apps: [{ name: shop, node: db1, parts: [{ file: shop.sql, run: pg_dump shop }] }]
notify:
  email: ${email}
`;

function problemsOf(text: string): string[] {
  try {
    parseConfig(text, 'bysu.yaml', {});
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.problems;
  }
  return [];
}

test('no email block: no email; a minimal one gets starttls and one recipient', () => {
  assert.equal(parseConfig(config('null'), 'bysu.yaml', {}).notify.email, undefined);
  const email = parseConfig(config('{ host: smtp.example.com, from: bysu@example.com, to: ops@example.com }'), 'bysu.yaml', {}).notify.email;
  assert.deepEqual(email, { host: 'smtp.example.com', security: 'starttls', from: 'bysu@example.com', to: ['ops@example.com'] });
});

test('bad email settings are rejected naming the field, never repeating a password', () => {
  const cases: [string, string][] = [
    ['{ from: b@example.com, to: o@example.com }', 'notify.email.host: missing; the SMTP server: host name or IP address.'],
    ['{ host: h, from: b@example.com, to: [] }', 'notify.email.to: must be a mail address or a non-empty list of them, like [ops@example.com, oncall@example.com], got []'],
    ['{ host: h, from: b@example.com, to: ["ops@example.com\\nBcc: x@evil.example"] }', 'notify.email.to: must be a mail address or a non-empty list of them'],
    ['{ host: h, from: "bysu", to: o@example.com }', 'notify.email.from: must be a mail address like ops@example.com or "BYSU <bysu@example.com>", got "bysu"'],
    ['{ host: h, security: ssl, from: b@example.com, to: o@example.com }', 'notify.email.security: must be one of starttls, tls, none, got "ssl"'],
    ['{ host: h, user: bysu, from: b@example.com, to: o@example.com }', 'notify.email.passwordEnv: missing; with a user, name the environment variable that holds the SMTP password (e.g. passwordEnv: BYSU_SMTP_PASSWORD)'],
    ['{ host: h, passwordEnv: PW, from: b@example.com, to: o@example.com }', 'notify.email.user: missing; passwordEnv is set, so name the SMTP login user too'],
    ['{ host: h, security: none, user: bysu, passwordEnv: PW, from: b@example.com, to: o@example.com }',
      'notify.email.security: "none" would send the SMTP password in clear; use starttls or tls (or a relay that needs no login)'],
    ['{ host: h, security: none, caFile: /etc/ca.pem, from: b@example.com, to: o@example.com }', 'notify.email.caFile: only used with TLS; remove it, or set security to starttls or tls'],
    ['{ host: h, password: s3cret, from: b@example.com, to: o@example.com }', 'notify.email.password: unknown key; did you mean `passwordEnv`?'],
  ];
  for (const [email, expected] of cases) {
    const problems = problemsOf(config(email));
    assert.ok(problems.some((problem) => problem.startsWith(expected)), `${email}\n  expected: ${expected}\n  got: ${problems.join('\n       ')}`);
  }
  // The password written where its variable's name belongs: refused, and not repeated.
  const problems = problemsOf(config('{ host: h, user: bysu, passwordEnv: "hunter2 is my password", from: b@example.com, to: o@example.com }'));
  assert.deepEqual(problems, ['notify.email.passwordEnv: must be the name of an environment variable, like BYSU_SMTP_PASSWORD (the password itself never goes in the file)']);
});

test('what a process that alerts needs from its environment: the password variable set, the CA file readable', () => {
  const settings = { host: 'h', security: 'starttls' as const, user: 'bysu', passwordEnv: 'BYSU_SMTP_PASSWORD', from: 'b@example.com', to: ['o@example.com'] };
  assert.deepEqual(emailProblems(settings, { BYSU_SMTP_PASSWORD: 'pw' }), []);
  assert.deepEqual(emailProblems(undefined, {}), []);
  const [unset] = emailProblems(settings, {});
  assert.match(unset!, /^notify\.email\.passwordEnv: the environment variable BYSU_SMTP_PASSWORD is not set; it must hold the SMTP password of "bysu"/);
  assert.match(emailProblems(settings, { BYSU_SMTP_PASSWORD: '' })[0]!, /BYSU_SMTP_PASSWORD is empty/);
  assert.deepEqual(emailProblems({ ...settings, caFile: '/nonexistent/ca.pem' }, { BYSU_SMTP_PASSWORD: 'pw' }), ['notify.email.caFile: cannot read /nonexistent/ca.pem (ENOENT)']);
  const notPem = fileURLToPath(new URL('../../../package.json', import.meta.url));
  assert.deepEqual(emailProblems({ ...settings, caFile: notPem }, { BYSU_SMTP_PASSWORD: 'pw' }), [`notify.email.caFile: ${notPem} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`]);
});
