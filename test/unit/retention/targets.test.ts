/**
 * What retention applies: the larger keep of the job and the current config
 * (a raised keep protects at once), nothing for an app that left the config,
 * and the `latest` target however the symlink is written.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { parseConfig } from '../../../src/config/load.ts';
import { latestTarget } from '../../../src/repository/read.ts';
import { effectiveTarget } from '../../../src/workers/retention.ts';

const config = parseConfig(`
repository: /tmp/x
retention: { incomingMargin: 1h }
nodes: [{ name: db1, host: 127.0.0.1 }]
apps: [{ name: shop, node: db1, keep: 5, timeout: 2h, parts: [{ file: a.sql, run: x }] }]
`, 'test.yaml', {});

test('the larger keep and age of job and config apply; an app that left the config is not pruned', () => {
  assert.deepEqual(effectiveTarget(config, { app: 'shop', keep: 3, incomingMaxAgeMs: 1000 }), { app: 'shop', keep: 5, incomingMaxAgeMs: 3 * 3_600_000 });
  assert.deepEqual(effectiveTarget(config, { app: 'shop', keep: 9, incomingMaxAgeMs: 9 * 3_600_000 }), { app: 'shop', keep: 9, incomingMaxAgeMs: 9 * 3_600_000 });
  assert.equal(effectiveTarget(config, { app: 'gone', keep: 1, incomingMaxAgeMs: 1 }), null);
});

test('latestTarget reads relative, ./ and absolute links into the app directory, and nothing else', async () => {
  const appDir = await mkdtemp(path.join(os.tmpdir(), 'bysu-latest-'));
  try {
    const link = path.join(appDir, 'latest');
    assert.equal(await latestTarget(appDir), null);
    await mkdir(path.join(appDir, '20261126T021500Z'));
    for (const [written, expected] of [
      ['20261126T021500Z', '20261126T021500Z'],
      ['./20261126T021500Z', '20261126T021500Z'],
      [path.join(appDir, '20261126T021500Z'), '20261126T021500Z'],
      ['../elsewhere/20261126T021500Z', null],
      ['/etc', null],
    ] as const) {
      await rm(link, { force: true });
      await symlink(written, link);
      assert.equal(await latestTarget(appDir), expected, written);
    }
  } finally {
    await rm(appDir, { recursive: true, force: true });
  }
});
