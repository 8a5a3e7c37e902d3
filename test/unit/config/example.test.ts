/** bysu.example.yaml, the config reference in the README, stays a valid config with the documented defaults. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { loadConfig, parseConfig } from '../../../src/config/load.ts';

const EXAMPLE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bysu.example.yaml');

test('the example config loads and says what the defaults are', () => {
  const config = loadConfig(EXAMPLE, {});
  assert.equal(config.redis.url, 'redis://127.0.0.1:6379/0');
  assert.deepEqual(config.concurrency, { global: 16, perNode: 1, perWorker: 4, busyNodeDelayMs: 5000, lockDurationMs: 30_000, stalledIntervalMs: 30_000 });
  assert.equal(config.ssh.keepaliveIntervalMs, 15_000);
  assert.equal(config.defaults.keep, 3);
  assert.equal(config.defaults.maxBytes, 50 * 1024 ** 3);
  const shop = config.apps[0]!;
  assert.equal(shop.keep, 7);
  assert.equal(shop.timeoutMs, 2 * 3_600_000, 'inherited from defaults');
  assert.deepEqual(shop.parts[1]!.okExitCodes, [0, 1]);
  assert.equal(config.nodes[0]!.user, 'bysu', 'ssh.user: the user contrib/node/setup-node.sh makes by default');
});

test('the example\'s email block, uncommented, loads as documented', () => {
  const text = readFileSync(EXAMPLE, 'utf8');
  const lines = text.split('\n');
  const start = lines.findIndex((line) => line.startsWith('  # email:'));
  assert.ok(start > 0, 'the example shows notify.email');
  let end = start;
  while (lines[end]?.startsWith('  # ')) end += 1;
  const uncommented = [...lines.slice(0, start), ...lines.slice(start, end).map((line) => `  ${line.slice(4)}`), ...lines.slice(end)].join('\n');
  const email = parseConfig(uncommented, EXAMPLE, {}).notify.email;
  assert.deepEqual(email, {
    host: 'smtp.example.com',
    port: 587,
    security: 'starttls',
    caFile: '/etc/bysu/smtp-ca.pem',
    user: 'bysu@example.com',
    passwordEnv: 'BYSU_SMTP_PASSWORD',
    from: 'BYSU <bysu@example.com>',
    to: ['ops@example.com'],
    dashboardUrl: 'https://backup.example.com/',
  });
});
