import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseConfig, findApp, type Config } from '../../../src/config/load.ts';
import { checkSshFiles } from '../../../src/ssh/ssh-files.ts';
import { ConfigError } from '../../../src/errors.ts';

/** The original contract's example config (with a real-looking pinned fingerprint). */
const FULL = `
redis:
  url: redis://127.0.0.1:6379/0
  prefix: bysu
repository: /var/lib/bysu
ssh:
  user: bysu
  identityFile: /etc/bysu/id_ed25519
  knownHosts: /etc/bysu/known_hosts
  connectTimeout: 20s
concurrency:
  global: 16
  perNode: 1
  perWorker: 4
defaults:
  schedule: "0 3 * * *"
  timezone: UTC
  keep: 3
  timeout: 2h
  stallTimeout: 5m
  attempts: 4
  backoff: 1m
  maxBytes: 50GiB
dashboard:
  host: 127.0.0.1
  port: 3000
  user: admin
  password: ""
  apiToken: ""
nodes:
  - name: db1
    host: 10.0.0.11
    port: 22
    user: backup
    hostKey: "SHA256:Jd7Bq2mQ0mJp0n3m1u9sVJm8GZ2m5n4b8cQ1xYz0AbC"
  - name: web1
    host: web1.example.com
    port: 2222
apps:
  - name: shop
    node: db1
    keep: 7
    schedule: "15 2 * * *"
    parts:
      - file: shop.sql
        run: pg_dump --no-owner shop
      - file: uploads.tar
        run: tar -C /srv/shop -cf - uploads
        okExitCodes: [0, 1]
  - name: blog
    node: web1
    timeout: 30m
    maxBytes: 512MiB
    parts:
      - file: blog.tar.gz
        run: tar -C /srv/blog -czf - .
`;

/** A minimal valid config; bad cases are built from pieces of it. */
const NODES = `nodes:
  - name: db1
    host: 10.0.0.11
`;
const APPS = `apps:
  - name: shop
    node: db1
    parts:
      - file: shop.sql
        run: pg_dump shop
`;
const MINIMAL = `repository: /var/lib/bysu\n${NODES}${APPS}`;

function app(body: string): string {
  return `repository: /var/lib/bysu\n${NODES}apps:\n${body}`;
}

function parseProblems(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(text, 'bysu.yaml', env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    assert.ok(Array.isArray(error.problems) && error.problems.length > 0, 'ConfigError.problems must list the problems');
    return error.problems;
  }
  assert.fail(`config was accepted but should have been rejected:\n${text}`);
}

describe('parseConfig: a valid full config', () => {
  const config = parseConfig(FULL, '/etc/bysu/bysu.yaml', {});

  test('keeps the source and process-level settings', () => {
    assert.equal(config.source, '/etc/bysu/bysu.yaml');
    assert.deepEqual(config.redis, { url: 'redis://127.0.0.1:6379/0', prefix: 'bysu' });
    assert.equal(config.repository, '/var/lib/bysu');
    assert.equal(config.concurrency.global, 16);
    assert.equal(config.concurrency.perNode, 1);
    assert.equal(config.concurrency.perWorker, 4);
    assert.equal(config.ssh.user, 'bysu');
    assert.equal(config.ssh.identityFile, '/etc/bysu/id_ed25519');
    assert.equal(config.ssh.knownHosts, '/etc/bysu/known_hosts');
    assert.equal(config.dashboard.port, 3000);
  });

  test('parses durations to milliseconds and sizes to bytes', () => {
    assert.equal(config.ssh.connectTimeoutMs, 20_000);
    assert.equal(config.defaults.timeoutMs, 7_200_000);
    assert.equal(config.defaults.stallTimeoutMs, 300_000);
    assert.equal(config.defaults.backoffMs, 60_000);
    assert.equal(config.defaults.maxBytes, 50 * 1024 ** 3);
    assert.equal(config.defaults.staleAfterMs, null);
  });

  test('apps inherit the defaults and override them', () => {
    const shop = config.apps.find((candidate) => candidate.name === 'shop')!;
    assert.ok(shop);
    assert.equal(shop.node, 'db1');
    assert.equal(shop.keep, 7);
    assert.equal(shop.schedule, '15 2 * * *');
    assert.equal(shop.timezone, 'UTC');
    assert.equal(shop.timeoutMs, 7_200_000);
    assert.equal(shop.stallTimeoutMs, 300_000);
    assert.equal(shop.attempts, 4);
    assert.equal(shop.backoffMs, 60_000);
    assert.equal(shop.maxBytes, 50 * 1024 ** 3);

    const blog = config.apps.find((candidate) => candidate.name === 'blog')!;
    assert.ok(blog);
    assert.equal(blog.keep, 3);
    assert.equal(blog.schedule, '0 3 * * *');
    assert.equal(blog.timeoutMs, 30 * 60_000);
    assert.equal(blog.maxBytes, 512 * 1024 ** 2);
  });

  test('parts keep their order; okExitCodes default to [0]', () => {
    const shop = config.apps.find((candidate) => candidate.name === 'shop')!;
    assert.deepEqual(shop.parts, [
      { file: 'shop.sql', run: 'pg_dump --no-owner shop', okExitCodes: [0] },
      { file: 'uploads.tar', run: 'tar -C /srv/shop -cf - uploads', okExitCodes: [0, 1] },
    ]);
  });

  test('a node user falls back to ssh.user, port to 22; hostKey kept only when pinned', () => {
    const db1 = config.nodes.find((node) => node.name === 'db1')!;
    const web1 = config.nodes.find((node) => node.name === 'web1')!;
    assert.equal(db1.user, 'backup');
    assert.equal(db1.port, 22);
    assert.equal(db1.hostKey, 'SHA256:Jd7Bq2mQ0mJp0n3m1u9sVJm8GZ2m5n4b8cQ1xYz0AbC');
    assert.equal(web1.user, 'bysu');
    assert.equal(web1.port, 2222);
    assert.equal(web1.hostKey, undefined);
    assert.equal('hostKey' in web1, false);

    const minimal = parseConfig(MINIMAL, 'bysu.yaml', {});
    assert.equal(minimal.nodes[0]!.port, 22);
    assert.equal(minimal.nodes[0]!.user, 'bysu');
    // The ssh.user override from the environment reaches nodes without their own user.
    const fromEnv = parseConfig(MINIMAL, 'bysu.yaml', { BYSU_SSH_USER: 'backupper' });
    assert.equal(fromEnv.nodes[0]!.user, 'backupper');
  });

  test('the returned config is deeply frozen', () => {
    assert.ok(Object.isFrozen(config));
    assert.ok(Object.isFrozen(config.redis));
    assert.ok(Object.isFrozen(config.ssh));
    assert.ok(Object.isFrozen(config.defaults));
    assert.ok(Object.isFrozen(config.nodes));
    assert.ok(Object.isFrozen(config.nodes[0]));
    assert.ok(Object.isFrozen(config.apps));
    assert.ok(Object.isFrozen(config.apps[0]));
    assert.ok(Object.isFrozen(config.apps[0]!.parts));
    assert.ok(Object.isFrozen(config.apps[0]!.parts[1]));
    assert.ok(Object.isFrozen(config.apps[0]!.parts[1]!.okExitCodes));
    assert.throws(() => {
      (config.apps[0] as { keep: number }).keep = 99;
    }, TypeError);
    assert.equal(config.apps[0]!.keep, 7);
  });

  test('the same text as JSON loads the same', () => {
    const json = JSON.stringify({
      repository: '/var/lib/bysu',
      nodes: [{ name: 'db1', host: '10.0.0.11' }],
      apps: [{ name: 'shop', node: 'db1', keep: 7, parts: [{ file: 'shop.sql', run: 'pg_dump shop' }] }],
    });
    const config = parseConfig(json, 'bysu.json', {});
    assert.equal(config.apps[0]!.keep, 7);
    assert.equal(config.apps[0]!.timeoutMs, 7_200_000);
  });

  test('an empty file gives the built-in defaults', () => {
    const config = parseConfig('', 'empty.yaml', {});
    assert.equal(config.repository, '/var/lib/bysu');
    assert.equal(config.redis.url, 'redis://127.0.0.1:6379/0');
    assert.equal(config.defaults.keep, 3);
    assert.deepEqual(config.apps, []);
  });
});

describe('parseConfig: bad configs name the field', () => {
  const cases: { name: string; text: string; expect: string }[] = [
    { name: 'unknown top-level key', text: `bogus: 1\n${MINIMAL}`, expect: 'bogus: unknown key' },
    { name: 'unknown key in defaults', text: `defaults:\n  retention: 5\n${MINIMAL}`, expect: 'defaults.retention: unknown key' },
    {
      name: 'unknown key in an app',
      text: app(`  - name: shop\n    node: db1\n    kept: 7\n    parts:\n      - file: shop.sql\n        run: pg_dump shop\n`),
      expect: 'apps[shop].kept: unknown key; did you mean `keep`?',
    },
    {
      name: 'unknown key in a node',
      text: `nodes:\n  - name: db1\n    host: 10.0.0.11\n    hostname: db1.local\n${APPS}`,
      expect: 'nodes[db1].hostname: unknown key; did you mean `host`?',
    },
    {
      name: 'unknown key in a part',
      text: app(`  - name: shop\n    node: db1\n    parts:\n      - file: shop.sql\n        run: pg_dump shop\n        timeout: 5m\n`),
      expect: 'apps[shop].parts[shop.sql].timeout: unknown key; known keys: file, run, okExitCodes',
    },
    // Fails before the fix (found by attack): a command over 128 KiB was accepted, and every night sshd's login
    // shell failed with E2BIG ("Argument list too long", exit 1, retried) before the wrapper could refuse it.
    {
      name: 'a part command over 128 KiB',
      text: app(`  - name: shop\n    node: db1\n    parts:\n      - file: shop.sql\n        run: echo ${'x'.repeat(140_000)}\n`),
      expect: 'apps[shop].parts[shop.sql].run: is 140005 bytes; a node cannot start a command over 131008 bytes',
    },
    {
      name: 'app with an unknown node',
      text: app(`  - name: shop\n    node: db9\n    parts:\n      - file: shop.sql\n        run: pg_dump shop\n`),
      expect: 'apps[shop].node: unknown node "db9" (nodes: db1)',
    },
    {
      name: 'duplicate node name',
      text: `nodes:\n  - name: db1\n    host: 10.0.0.11\n  - name: db1\n    host: 10.0.0.12\n${APPS}`,
      expect: 'nodes[1].name: duplicate node name "db1" (also nodes[0])',
    },
    {
      name: 'duplicate app name',
      text: app(
        `  - name: shop\n    node: db1\n    parts:\n      - file: a.sql\n        run: a\n` +
          `  - name: shop\n    node: db1\n    parts:\n      - file: b.sql\n        run: b\n`,
      ),
      expect: 'apps[1].name: duplicate app name "shop" (also apps[0])',
    },
    {
      name: 'app name with upper case',
      text: app(`  - name: Shop\n    node: db1\n    parts:\n      - file: shop.sql\n        run: pg_dump shop\n`),
      expect: 'apps[0].name: must match',
    },
    {
      name: 'traversal app name ../x',
      text: app(`  - name: ../x\n    node: db1\n    parts:\n      - file: shop.sql\n        run: pg_dump shop\n`),
      expect: 'apps[0].name: must match',
    },
    {
      name: 'node name with a slash',
      text: `nodes:\n  - name: db/1\n    host: 10.0.0.11\n${APPS}`,
      expect: 'nodes[0].name: must match',
    },
    {
      name: 'part file name with a slash',
      text: app(`  - name: shop\n    node: db1\n    parts:\n      - file: dumps/shop.sql\n        run: pg_dump shop\n`),
      expect: 'apps[shop].parts[0].file: must be a plain file name',
    },
    {
      name: 'part file manifest.json',
      text: app(`  - name: shop\n    node: db1\n    parts:\n      - file: manifest.json\n        run: cat m\n`),
      expect: 'apps[shop].parts[0].file: "manifest.json" is reserved',
    },
    {
      name: 'part file SHA256SUMS',
      text: app(`  - name: shop\n    node: db1\n    parts:\n      - file: SHA256SUMS\n        run: cat s\n`),
      expect: 'apps[shop].parts[0].file: "SHA256SUMS" is reserved',
    },
    {
      name: 'duplicate part file',
      text: app(
        `  - name: shop\n    node: db1\n    parts:\n      - file: shop.sql\n        run: a\n      - file: shop.sql\n        run: b\n`,
      ),
      expect: 'apps[shop].parts[1].file: duplicate file name "shop.sql" in this app (also apps[shop].parts[0])',
    },
    {
      name: 'empty parts list',
      text: app(`  - name: shop\n    node: db1\n    parts: []\n`),
      expect: 'apps[shop].parts: must be a non-empty list of parts (file and run), got an empty list',
    },
    {
      name: 'missing parts',
      text: app(`  - name: shop\n    node: db1\n`),
      expect: 'apps[shop].parts: missing; must be a non-empty list of parts (file and run)',
    },
    { name: 'bad cron in defaults', text: `defaults:\n  schedule: "61 * * * *"\n${MINIMAL}`, expect: 'defaults.schedule: invalid cron pattern "61 * * * *": minute 61 is out of range 0-59' },
    // A timer longer than 2^31 - 1 ms fires at once: a 30-day check interval became a check every millisecond.
    { name: 'a timer longer than 24 days', text: `notify:\n  staleCheckInterval: 30d\n${MINIMAL}`, expect: 'notify.staleCheckInterval: must be at most 24d (a longer wait would end at once), got "30d"' },
    { name: 'an app timeout longer than 24 days', text: `defaults:\n  timeout: 25d\n${MINIMAL}`, expect: 'defaults.timeout: must be at most 24d (a longer wait would end at once), got "25d"' },
    {
      name: 'bad cron in an app',
      text: app(`  - name: shop\n    node: db1\n    schedule: "61 * * * *"\n    parts:\n      - file: shop.sql\n        run: pg_dump shop\n`),
      expect: 'apps[shop].schedule: invalid cron pattern "61 * * * *": minute 61 is out of range 0-59',
    },
    { name: 'cron with 3 fields in defaults', text: `defaults:\n  schedule: "0 3 *"\n${MINIMAL}`, expect: 'defaults.schedule:' },
    { name: 'bad timezone in defaults', text: `defaults:\n  timezone: Mars/Olympus\n${MINIMAL}`, expect: 'defaults.timezone: unknown time zone' },
    {
      name: 'bad timezone in an app',
      text: app(`  - name: shop\n    node: db1\n    timezone: Nowhere/City\n    parts:\n      - file: shop.sql\n        run: pg_dump shop\n`),
      expect: 'apps[shop].timezone: unknown time zone',
    },
    { name: 'bad duration in defaults', text: `defaults:\n  timeout: 5 minutes\n${MINIMAL}`, expect: 'defaults.timeout: must be a duration' },
    {
      name: 'bad duration in an app',
      text: app(`  - name: shop\n    node: db1\n    stallTimeout: 5 minutes\n    parts:\n      - file: shop.sql\n        run: pg_dump shop\n`),
      expect: 'apps[shop].stallTimeout: must be a duration',
    },
    { name: 'bad duration in ssh', text: `ssh:\n  connectTimeout: soon\n${MINIMAL}`, expect: 'ssh.connectTimeout: must be a duration' },
    { name: 'bad size in defaults', text: `defaults:\n  maxBytes: 10XB\n${MINIMAL}`, expect: 'defaults.maxBytes: must be a size' },
    {
      name: 'bad size in an app',
      text: app(`  - name: shop\n    node: db1\n    maxBytes: 10XB\n    parts:\n      - file: shop.sql\n        run: pg_dump shop\n`),
      expect: 'apps[shop].maxBytes: must be a size',
    },
    { name: 'keep 0 in defaults', text: `defaults:\n  keep: 0\n${MINIMAL}`, expect: 'defaults.keep: must be a whole number of at least 1' },
    {
      name: 'keep 0 in an app',
      text: app(`  - name: shop\n    node: db1\n    keep: 0\n    parts:\n      - file: shop.sql\n        run: pg_dump shop\n`),
      expect: 'apps[shop].keep: must be a whole number of at least 1, got 0',
    },
    { name: 'attempts -1 in defaults', text: `defaults:\n  attempts: -1\n${MINIMAL}`, expect: 'defaults.attempts: must be a whole number of at least 1' },
    {
      name: 'attempts -1 in an app',
      text: app(`  - name: shop\n    node: db1\n    attempts: -1\n    parts:\n      - file: shop.sql\n        run: pg_dump shop\n`),
      expect: 'apps[shop].attempts: must be a whole number of at least 1',
    },
    {
      name: 'port 70000 on a node',
      text: `nodes:\n  - name: db1\n    host: 10.0.0.11\n    port: 70000\n${APPS}`,
      expect: 'nodes[db1].port: must be a port number from 1 to 65535, got 70000',
    },
    {
      name: 'hostKey not a SHA256 fingerprint',
      text: `nodes:\n  - name: db1\n    host: 10.0.0.11\n    hostKey: "MD5:aa:bb:cc"\n${APPS}`,
      expect: 'nodes[db1].hostKey: must be an OpenSSH fingerprint',
    },
    {
      name: 'hostKey a whole public key instead of a fingerprint',
      text: `nodes:\n  - name: db1\n    host: 10.0.0.11\n    hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA"\n${APPS}`,
      expect: 'nodes[db1].hostKey: must be an OpenSSH fingerprint',
    },
    {
      name: 'host with a space',
      text: `nodes:\n  - name: db1\n    host: "10.0.0.11 -oProxyCommand=x"\n${APPS}`,
      expect: 'nodes[db1].host: must be a host name or IP address',
    },
    {
      name: 'okExitCodes [300]',
      text: app(`  - name: shop\n    node: db1\n    parts:\n      - file: shop.sql\n        run: pg_dump shop\n        okExitCodes: [300]\n`),
      expect: 'apps[shop].parts[shop.sql].okExitCodes: must be a non-empty list of exit codes from 0 to 255',
    },
    {
      name: 'empty okExitCodes',
      text: app(`  - name: shop\n    node: db1\n    parts:\n      - file: shop.sql\n        run: pg_dump shop\n        okExitCodes: []\n`),
      expect: 'apps[shop].parts[shop.sql].okExitCodes: must be a non-empty list',
    },
    {
      name: 'empty run command',
      text: app(`  - name: shop\n    node: db1\n    parts:\n      - file: shop.sql\n        run: "  "\n`),
      expect: 'apps[shop].parts[shop.sql].run: must be a non-empty command',
    },
    {
      name: 'missing run command',
      text: app(`  - name: shop\n    node: db1\n    parts:\n      - file: shop.sql\n`),
      expect: 'apps[shop].parts[shop.sql].run: missing; the command whose stdout becomes the file',
    },
    { name: 'YAML syntax error', text: `repository: /var/lib/bysu\nnodes: [\n`, expect: 'bysu.yaml:2:9: not valid YAML' },
    { name: 'duplicate YAML key', text: `repository: /a\nrepository: /b\n`, expect: 'bysu.yaml:2:1: not valid YAML: Map keys must be unique' },
    { name: 'top-level list instead of a mapping', text: `- redis\n- nodes\n`, expect: 'bysu.yaml: the config must be a mapping' },
    { name: 'top-level scalar', text: `just text\n`, expect: 'bysu.yaml: the config must be a mapping' },
    { name: 'redis.url not a redis:// URL', text: `redis:\n  url: http://127.0.0.1:6379\n${MINIMAL}`, expect: 'redis.url: must be a redis:// or rediss:// URL' },
    { name: 'bad redis prefix', text: `redis:\n  prefix: "a b"\n${MINIMAL}`, expect: 'redis.prefix:' },
    { name: 'repository a relative path', text: `repository: var/lib/bysu\n${NODES}${APPS}`, expect: 'repository: must be an absolute path' },
    { name: 'identityFile a relative path', text: `ssh:\n  identityFile: id_ed25519\n${MINIMAL}`, expect: 'ssh.identityFile: must be an absolute path' },
    { name: 'concurrency.perNode 0', text: `concurrency:\n  perNode: 0\n${MINIMAL}`, expect: 'concurrency.perNode: must be a whole number of at least 1' },
    { name: 'nodes not a list', text: `nodes: db1\n${APPS}`, expect: 'nodes: must be a list of nodes (name and host), got a string' },
    { name: 'a node that is not a mapping', text: `nodes:\n  - db1\n${APPS}`, expect: 'nodes[0]: must be a mapping with name, host, got a string' },
  ];

  assert.ok(cases.length >= 20);
  for (const { name, text, expect } of cases) {
    test(name, () => {
      const problems = parseProblems(text);
      assert.ok(
        problems.some((line) => line.includes(expect)),
        `expected a problem line containing ${JSON.stringify(expect)}, got:\n${problems.join('\n')}`,
      );
    });
  }

  // Fails before the fix: the declared schema refused 0, which the dashboard takes as "any free port" (tests use it).
  test('dashboard.port 0 (any free port) is valid; a node port 0 is not', () => {
    const config = parseConfig(`dashboard:\n  port: 0\n${MINIMAL}`, 'bysu.yaml', {});
    assert.equal(config.dashboard.port, 0);
    assert.ok(parseProblems(`dashboard:\n  port: 65536\n${MINIMAL}`).some((line) => line.startsWith('dashboard.port: must be a port number from 0 (any free port) to 65535')));
  });

  test('every problem is reported, not just the first', () => {
    const problems = parseProblems(
      `nodes:\n  - name: db1\n    host: 10.0.0.11\n    port: 0\n` +
        `apps:\n  - name: shop\n    node: db9\n    keep: 0\n    parts:\n      - file: manifest.json\n        run: ""\n`,
    );
    for (const expected of ['nodes[db1].port:', 'apps[shop].node: unknown node "db9"', 'apps[shop].keep:', 'apps[shop].parts[0].file:', 'apps[shop].parts[0].run:']) {
      assert.ok(problems.some((line) => line.includes(expected)), `missing ${expected} in:\n${problems.join('\n')}`);
    }
  });

  test('each problem line begins with the field path or the source', () => {
    const problems = parseProblems(app(`  - name: shop\n    node: db9\n    parts:\n      - file: a/b\n        run: x\n`));
    for (const line of problems) assert.match(line, /^(apps|nodes)\[[^\]]+\][.\w[\]]*: /);
  });

  // A section given a value of the wrong type (or left empty, e.g. with all its
  // lines commented out) must be reported as such under its own name, not as
  // convict's internal "missing from config, did you override its parent?"
  // lines plus a false "unknown key" for a key that is in the schema.
  test('a section of the wrong type is reported under its own name, not as an unknown key', () => {
    for (const [section, text] of [
      ['ssh', `ssh: 5\n${MINIMAL}`],
      ['redis', `redis: [1]\n${MINIMAL}`],
      ['concurrency', `concurrency: 4\n${MINIMAL}`],
    ] as const) {
      const problems = parseProblems(text);
      assert.ok(problems.some((line) => line.startsWith(`${section}`)), problems.join('\n'));
      for (const line of problems) {
        assert.match(line, /^[a-z][\w.[\]]*: /, `problem line does not begin with a field path: ${line}`);
        assert.ok(!line.includes(`${section}: unknown key`), `"${section}" is a known key, yet: ${line}`);
      }
    }
  });

  test('an empty defaults section (all lines commented out) is accepted, or rejected naming "defaults" properly', () => {
    let problems: string[] = [];
    try {
      const config = parseConfig(`defaults:\n#  keep: 5\n${MINIMAL}`, 'bysu.yaml', {});
      assert.equal(config.defaults.keep, 3);
      return;
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      problems = error.problems;
    }
    for (const line of problems) {
      assert.match(line, /^defaults[\w.]*: /, `problem line does not begin with a field path: ${line}`);
      assert.ok(!line.includes('defaults: unknown key'), `"defaults" is a known key, yet: ${line}`);
    }
  });

  test('the redis URL (it may hold a password) is not echoed in the message', () => {
    const problems = parseProblems(`redis:\n  url: "http://user:s3cret@host:6379"\n${MINIMAL}`);
    assert.ok(problems.some((line) => line.startsWith('redis.url:')));
    assert.ok(!problems.join('\n').includes('s3cret'), problems.join('\n'));
  });
});

describe('parseConfig: messages a person can act on', () => {
  test('items are named by their name in the path, by index when the name cannot name them', () => {
    const problems = parseProblems(
      `nodes:\n  - { name: db1, host: h, port: 0 }\n` +
        `apps:\n  - name: shop\n    node: db1\n    parts: [{ file: pgdump, run: "" }]\n` +
        `    drill: { node: db1, steps: [{ run: a, stdin: pgdump }, { run: b, stdin: other }] }\n` +
        `  - { name: "Bad Name", node: db1, parts: [{ file: a, run: a }] }\n`,
    );
    for (const expected of [
      'nodes[db1].port: must be a port number from 1 to 65535, got 0',
      'apps[shop].parts[pgdump].run: must be a non-empty command',
      'apps[shop].drill.steps[1].stdin: "other" is not a part of this app (parts: pgdump)',
      'apps[1].name: must match',
    ]) {
      assert.ok(problems.some((line) => line.startsWith(expected)), `missing ${expected} in:\n${problems.join('\n')}`);
    }
  });

  test('an unknown key that is a near miss of a known one gets a suggestion', () => {
    const problems = parseProblems(
      `repositroy: /x\ndefaults: { keeep: 3 }\nnodes: [{ name: db1, host: h, prot: 22 }]\n` +
        `apps: [{ name: shop, node: db1, schedul: "0 3 * * *", parts: [{ file: a, rn: x, run: x }], drill: { node: db1, stesp: [] } }]\n`,
    );
    assert.deepEqual(problems.filter((line) => line.includes('unknown key')), [
      'repositroy: unknown key; did you mean `repository`?',
      'defaults.keeep: unknown key; did you mean `keep`?',
      'nodes[db1].prot: unknown key; did you mean `port`?',
      'apps[shop].schedul: unknown key; did you mean `schedule`?',
      'apps[shop].parts[a].rn: unknown key; did you mean `run`?',
      'apps[shop].drill.stesp: unknown key; did you mean `steps`?',
    ]);
    // No near miss: the known keys are listed instead.
    assert.ok(parseProblems(`bogus: 1\n`).some((line) => line.startsWith('bogus: unknown key; known keys: redis, repository, ssh,')));
  });

  test('a cron field out of range is named with its range', () => {
    for (const [pattern, expected] of [
      ['61 * * * *', 'minute 61 is out of range 0-59'],
      ['0 25 * * *', 'hour 25 is out of range 0-23'],
      ['0 3 0 * *', 'day of month 0 is out of range 1-31'],
      ['0 3 * 1-13 *', 'month 13 is out of range 1-12'],
      ['0 3 * * 1,9', 'day of week 9 is out of range 0-7'],
      ['60 0 3 * * *', 'second 60 is out of range 0-59'],
    ]) {
      const problems = parseProblems(`defaults: { schedule: "${pattern}" }\n`);
      assert.deepEqual(problems, [`defaults.schedule: invalid cron pattern "${pattern}": ${expected}`]);
    }
  });

  test('broken YAML is shown with its line and a caret under the column', () => {
    const problems = parseProblems(`repository: /var/lib/bysu\ndashboard:\n  port: 3000\n  host: [127.0.0.1\n`);
    assert.equal(problems.length, 1, problems.join('\n'));
    const [message, line, caret] = problems[0]!.split('\n');
    assert.match(message!, /^bysu\.yaml:4:19: not valid YAML: .*end with a \]$/);
    assert.equal(line, '  4 |   host: [127.0.0.1');
    assert.equal(caret, '    |                   ^');
    assert.equal(caret!.indexOf('^'), line!.length, 'the caret stands just after the unclosed list');
  });

  test('a value that came from the environment says so', () => {
    const problems = parseProblems(MINIMAL, { BYSU_CONCURRENCY_GLOBAL: '0' });
    assert.deepEqual(problems, ['concurrency.global: must be a whole number of at least 1, got 0 (from BYSU_CONCURRENCY_GLOBAL)']);
  });

  // Fails before the declaration: convict merged a mapping given for a list into the empty default list,
  // so `apps: { name: shop, … }` (a missing "-") loaded as a config with no apps at all.
  test('a mapping where a list belongs is refused, not read as an empty list', () => {
    assert.deepEqual(parseProblems(`apps: { name: shop, node: db1 }\n`), ['apps: must be a list of apps (name, node and parts), got a mapping']);
    assert.deepEqual(parseProblems(`nodes: {}\n`), ['nodes: must be a list of nodes (name and host), got a mapping']);
  });

  test('a list with every item commented out is an empty list', () => {
    assert.deepEqual(parseConfig(`nodes:\n#  - { name: db1, host: h }\napps:\n`, 'bysu.yaml', {}).apps, []);
  });
});

describe('parseConfig: environment overrides', () => {
  const text = `redis:\n  url: redis://file-host:6379/0\n  prefix: fromfile\nrepository: /from/file\n${NODES}${APPS}`;

  test('without overrides the file values are used', () => {
    const config = parseConfig(text, 'bysu.yaml', {});
    assert.equal(config.redis.url, 'redis://file-host:6379/0');
    assert.equal(config.redis.prefix, 'fromfile');
    assert.equal(config.repository, '/from/file');
  });

  test('BYSU_REDIS_URL, BYSU_REPOSITORY and BYSU_REDIS_PREFIX override the file', () => {
    const config = parseConfig(text, 'bysu.yaml', {
      BYSU_REDIS_URL: 'redis://env-host:6380/3',
      BYSU_REPOSITORY: '/from/env',
      BYSU_REDIS_PREFIX: 'test-run-42',
    });
    assert.equal(config.redis.url, 'redis://env-host:6380/3');
    assert.equal(config.redis.prefix, 'test-run-42');
    assert.equal(config.repository, '/from/env');
  });

  test('an invalid override is rejected naming the field', () => {
    const problems = parseProblems(text, { BYSU_REPOSITORY: 'relative/dir' });
    assert.ok(problems.some((line) => line.startsWith('repository: must be an absolute path')), problems.join('\n'));
  });

  test('the environment of the process does not leak in when env is given', () => {
    const saved = process.env.BYSU_REPOSITORY;
    process.env.BYSU_REPOSITORY = '/leaked/from/process';
    try {
      assert.equal(parseConfig(text, 'bysu.yaml', {}).repository, '/from/file');
    } finally {
      if (saved === undefined) delete process.env.BYSU_REPOSITORY;
      else process.env.BYSU_REPOSITORY = saved;
    }
  });
});

describe('checkSshFiles', () => {
  function withTempDir(run: (dir: string) => void): void {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bysu-ssh-files-'));
    try {
      run(dir);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  function configFor(dir: string, nodes: string): Config {
    return parseConfig(
      `ssh:\n  identityFile: ${dir}/id_ed25519\n  knownHosts: ${dir}/known_hosts\nnodes:\n${nodes}${APPS}`,
      'bysu.yaml',
      {},
    );
  }

  const UNPINNED = `  - name: db1\n    host: 10.0.0.11\n`;
  const PINNED = `  - name: db1\n    host: 10.0.0.11\n    hostKey: "SHA256:Jd7Bq2mQ0mJp0n3m1u9sVJm8GZ2m5n4b8cQ1xYz0AbC"\n`;

  function problemsOf(config: Config): string[] {
    try {
      checkSshFiles(config);
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      return error.problems;
    }
    return [];
  }

  test('an identity file readable by others (0644) is rejected with a chmod hint', () => {
    withTempDir((dir) => {
      fs.writeFileSync(path.join(dir, 'id_ed25519'), 'key', { mode: 0o644 });
      fs.chmodSync(path.join(dir, 'id_ed25519'), 0o644);
      fs.writeFileSync(path.join(dir, 'known_hosts'), '');
      const problems = problemsOf(configFor(dir, UNPINNED));
      assert.equal(problems.length, 1, problems.join('\n'));
      assert.ok(problems[0]!.includes('ssh.identityFile'), problems[0]);
      assert.ok(problems[0]!.includes('chmod 600'), problems[0]);
      assert.ok(problems[0]!.includes(path.join(dir, 'id_ed25519')), problems[0]);
    });
  });

  test('an identity file readable by the group (0640) is rejected too', () => {
    withTempDir((dir) => {
      fs.writeFileSync(path.join(dir, 'id_ed25519'), 'key');
      fs.chmodSync(path.join(dir, 'id_ed25519'), 0o640);
      fs.writeFileSync(path.join(dir, 'known_hosts'), '');
      assert.ok(problemsOf(configFor(dir, UNPINNED)).some((line) => line.includes('chmod 600')));
    });
  });

  test('an identity file with mode 0600 and a known_hosts file are accepted', () => {
    withTempDir((dir) => {
      fs.writeFileSync(path.join(dir, 'id_ed25519'), 'key');
      fs.chmodSync(path.join(dir, 'id_ed25519'), 0o600);
      fs.writeFileSync(path.join(dir, 'known_hosts'), '');
      assert.doesNotThrow(() => checkSshFiles(configFor(dir, UNPINNED)));
    });
  });

  test('a missing identity file is rejected naming ssh.identityFile', () => {
    withTempDir((dir) => {
      fs.writeFileSync(path.join(dir, 'known_hosts'), '');
      const problems = problemsOf(configFor(dir, UNPINNED));
      assert.ok(problems.some((line) => line.startsWith('ssh.identityFile:') && line.includes('ENOENT')), problems.join('\n'));
    });
  });

  test('a missing known_hosts is rejected when some node has no pinned hostKey', () => {
    withTempDir((dir) => {
      fs.writeFileSync(path.join(dir, 'id_ed25519'), 'key', { mode: 0o600 });
      fs.chmodSync(path.join(dir, 'id_ed25519'), 0o600);
      const problems = problemsOf(configFor(dir, UNPINNED + `  - name: db2\n    host: 10.0.0.12\n`));
      assert.equal(problems.length, 1, problems.join('\n'));
      assert.ok(problems[0]!.startsWith('ssh.knownHosts:'), problems[0]);
      assert.ok(problems[0]!.includes('"db1"'), problems[0]);
    });
  });

  test('a missing known_hosts is fine when every node has a pinned hostKey', () => {
    withTempDir((dir) => {
      fs.writeFileSync(path.join(dir, 'id_ed25519'), 'key', { mode: 0o600 });
      fs.chmodSync(path.join(dir, 'id_ed25519'), 0o600);
      assert.doesNotThrow(() => checkSshFiles(configFor(dir, PINNED)));
      // …but not once one unpinned node joins.
      const problems = problemsOf(configFor(dir, PINNED + `  - name: db2\n    host: 10.0.0.12\n`));
      assert.ok(problems.some((line) => line.startsWith('ssh.knownHosts:') && line.includes('"db2"')), problems.join('\n'));
    });
  });
});

describe('findApp', () => {
  const config = parseConfig(FULL, 'bysu.yaml', {});

  test('returns a configured app', () => {
    assert.equal(findApp(config, 'blog').name, 'blog');
    assert.equal(findApp(config, 'shop').keep, 7);
  });

  test('an unknown app is a ConfigError naming the configured apps', () => {
    assert.throws(
      () => findApp(config, 'wiki'),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /unknown app "wiki"/);
        assert.match(error.message, /shop/);
        assert.match(error.message, /blog/);
        return true;
      },
    );
  });

  test('with no apps configured the message says so', () => {
    const empty = parseConfig('', 'bysu.yaml', {});
    assert.throws(() => findApp(empty, 'shop'), (error: unknown) => error instanceof ConfigError && /configured: none/.test(error.message));
  });
});
