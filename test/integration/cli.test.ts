/**
 * The `bysu` command line as an operator meets it: exit statuses, one-line
 * errors without stack traces, config check (with --connect against real
 * sshd nodes) and keyscan.
 */
import assert from 'node:assert/strict';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openCluster, type TestCluster } from '../helpers/cluster.ts';
import { freePort, run } from '../helpers/processes.ts';

const WRONG_PIN = `SHA256:${'B'.repeat(43)}`;

function assertNoStackTrace(output: string): void {
  assert.doesNotMatch(output, /^\s+at .+\(.+:\d+:\d+\)$/m, `no stack trace in:\n${output}`);
}

describe('bysu CLI', () => {
  let cluster: TestCluster;
  let close: (() => Promise<void>) | undefined;

  before(async () => {
    ({ cluster, close } = await openCluster(['db1']));
    const node = cluster.nodes[0]!;
    await cluster.writeConfig([{ name: 'shop', node: 'db1', parts: [{ file: 'shop.sql', run: 'echo dump' }] }], {
      nodes: [{ name: 'db1', host: node.host, port: node.port }],
    });
  });

  after(async () => {
    await close?.();
  });

  test('--help and --version exit 0', async () => {
    const help = await cluster.bysu(['--help']);
    assert.equal(help.code, 0);
    for (const command of ['snapshot', 'list', 'latest', 'restore', 'cat', 'verify', 'config', 'keyscan', 'worker']) assert.match(help.stdout, new RegExp(`\\b${command}\\b`));
    // The two read commands an operator reaches for in a restore carry an example and their exit statuses.
    for (const command of ['restore', 'cat']) {
      const own = await cluster.bysu([command, '--help']);
      assert.equal(own.code, 0);
      assert.match(own.stdout, /Exit status: 0 /, command);
      assert.match(own.stdout, new RegExp(`^  bysu ${command} shop`, 'm'), `${command} --help shows an example`);
    }
    assert.equal((await cluster.bysu(['--version'])).code, 0);
  });

  test('usage errors exit 2: unknown command, bad flag, unknown app, missing app', async () => {
    for (const args of [['frobnicate'], ['list', 'shop', '--bogus'], ['list', 'nosuchapp'], ['snapshot'], ['verify', 'shop', '--all'], ['keyscan', 'h', '--port', 'x'], ['worker', 'frobnicate']]) {
      const result = await cluster.bysu(args);
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stdout}${result.stderr}`);
      assert.notEqual(result.stderr.trim(), '', `${args.join(' ')} says what is wrong`);
      assertNoStackTrace(result.stderr);
    }
    assert.match((await cluster.bysu(['list', 'nosuchapp'])).stderr, /unknown app "nosuchapp" \(configured: shop\)/);
  });

  test('an invalid config exits 2 naming the field, for every command', async () => {
    const bad = path.join(cluster.dir, 'bad.yaml');
    await writeFile(bad, 'repository: /tmp/x\nnodes: [{ name: db1, host: 10.0.0.1 }]\napps: [{ name: shop, node: db9, parts: [{ file: a.sql, run: x }] }]\n');
    for (const args of [['config', 'check'], ['list', 'shop'], ['snapshot', 'shop'], ['worker', 'snapshot']]) {
      const result = await cluster.bysu(['-c', bad, ...args]);
      assert.equal(result.code, 2, args.join(' '));
      assert.match(result.stderr, /apps\[shop\]\.node: unknown node "db9"/);
      assertNoStackTrace(result.stderr);
    }
    const missing = await cluster.bysu(['-c', path.join(cluster.dir, 'nope.yaml'), 'config', 'check']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /nope\.yaml: cannot read the config file \(no such file\)/);
  });

  test('Redis unreachable: one line naming the URL, exit 1', async () => {
    const port = await freePort();
    const result = await cluster.bysu(['snapshot', 'shop'], { env: { BYSU_REDIS_URL: `redis://127.0.0.1:${port}/0` } });
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`^bysu: Redis unreachable at redis://127\\.0\\.0\\.1:${port}/0: .*ECONNREFUSED`));
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
    for (const url of [`redis://admin:s3cret-pw@127.0.0.1:${port}/0`, `redis://:s3cret@pw@127.0.0.1:${port}/0`, `redis://127.0.0.1:${port}/0?password=s3cret-pw`]) {
      const secret = await cluster.bysu(['snapshot', 'shop'], { env: { BYSU_REDIS_URL: url } });
      assert.equal(secret.code, 1);
      assert.match(secret.stderr, /Redis unreachable at /);
      assert.doesNotMatch(secret.stderr, /s3cret/, `the Redis password is not printed (${url})`);
    }
  });

  test('config check validates; --connect logs in and checks host keys', async () => {
    const ok = await cluster.bysu(['config', 'check', '--connect']);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /valid \(1 nodes, 1 apps\)/);
    assert.match(ok.stdout, /db1: ok/);

    const node = cluster.nodes[0]!;
    const pinned = path.join(cluster.dir, 'pinned.yaml');
    const base = (await import('node:fs/promises')).readFile(cluster.configFile, 'utf8');
    const text = (await base).replace(/nodes:\n[\s\S]*?\napps:/, `nodes:\n  - { name: db1, host: ${node.host}, port: ${node.port}, hostKey: "${WRONG_PIN}" }\n  - { name: db2, host: ${node.host}, port: ${node.port}, hostKey: "${node.fingerprint}" }\napps:`);
    await writeFile(pinned, text);
    const mixed = await cluster.bysu(['-c', pinned, 'config', 'check', '--connect']);
    assert.equal(mixed.code, 1, mixed.stdout + mixed.stderr);
    assert.match(mixed.stdout, new RegExp(`db1: FAILED: host key of node "db1" .* expected ${WRONG_PIN}, got ssh-ed25519 ${node.fingerprint.replace(/[+/]/g, '\\$&')}`));
    assert.match(mixed.stdout, /db2: ok .*host key pinned/);
  });

  test('config check rejects a node whose host key is neither pinned nor known, and a key it cannot use', async () => {
    const text = await (await import('node:fs/promises')).readFile(cluster.configFile, 'utf8');
    const unknown = path.join(cluster.dir, 'unknown.yaml');
    await writeFile(unknown, text.replace(/nodes:\n[\s\S]*?\napps:/, `nodes:\n  - { name: db1, host: localhost, port: ${cluster.nodes[0]!.port} }\napps:`));
    const result = await cluster.bysu(['-c', unknown, 'config', 'check']);
    assert.equal(result.code, 2, result.stdout + result.stderr);
    assert.match(result.stderr, /nodes\[db1\]\.hostKey: node "db1" is not pinned and \[localhost\]:\d+ is not in .*known_hosts/);

    const garbageKey = path.join(cluster.dir, 'garbage_key');
    await writeFile(garbageKey, 'not a key\n', { mode: 0o600 });
    const badKey = await cluster.bysu(['config', 'check'], { env: { BYSU_SSH_IDENTITY: garbageKey } });
    assert.equal(badKey.code, 2);
    assert.match(badKey.stderr, /ssh\.identityFile: cannot use .*garbage_key as an SSH private key/);
    const worker = await cluster.bysu(['worker', 'snapshot'], { env: { BYSU_SSH_IDENTITY: garbageKey } });
    assert.equal(worker.code, 2, 'a worker refuses to start with a key it cannot use');
  });

  test('config schema prints the JSON Schema that bysu.schema.json holds; config --help lists it', async () => {
    const result = await cluster.bysu(['config', 'schema']);
    assert.equal(result.code, 0, result.stderr);
    const committed = await (await import('node:fs/promises')).readFile(new URL('../../bysu.schema.json', import.meta.url), 'utf8');
    assert.equal(result.stdout, committed);
    const help = await cluster.bysu(['config', '--help']);
    assert.match(help.stdout, /^\s+schema\s+print the JSON Schema/m);
  });

  test('bysu without a subcommand, or config without one, is a usage error', async () => {
    for (const args of [[], ['config']]) {
      const result = await cluster.bysu(args);
      assert.equal(result.code, 2, args.join(' '));
    }
  });

  test('config check rejects an identity file readable by others', async () => {
    await chmod(cluster.keys.identityFile, 0o644);
    try {
      const result = await cluster.bysu(['config', 'check']);
      assert.equal(result.code, 2);
      assert.match(result.stderr, /ssh\.identityFile: .* is readable by group or others \(mode 0644\); run: chmod 600/);
    } finally {
      await chmod(cluster.keys.identityFile, 0o600);
    }
  });

  test('keyscan prints the fingerprint ssh-keygen computes and a known_hosts line', async () => {
    const node = cluster.nodes[0]!;
    const result = await cluster.bysu(['keyscan', node.host, '--port', String(node.port)]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`^ssh-ed25519 ${node.fingerprint.replace(/[+/]/g, '\\$&')}$`, 'm'));
    assert.ok(result.stdout.includes(node.knownHostsLine), result.stdout);
    const nothing = await cluster.bysu(['keyscan', '127.0.0.1', '--port', String(await freePort()), '--timeout', '2000']);
    assert.equal(nothing.code, 1);
    assert.match(nothing.stderr, /^bysu: no SSH host key from 127\.0\.0\.1:\d+/);
  });

  test('ssh-keygen agrees with the fingerprint of the node the tests use', async () => {
    const node = cluster.nodes[0]!;
    const check = await run('ssh-keygen', ['-F', `[127.0.0.1]:${node.port}`, '-f', cluster.keys.knownHostsFile]);
    assert.equal(check.code, 0, 'known_hosts written by the test harness is valid for OpenSSH');
  });
});
