/**
 * `bysu config check` (without --connect) catches what would later refuse to
 * start or run, with the real CLI and real files: the dashboard's exposure
 * rule, a repository that is missing, not a directory, unmarked or not
 * writable, an SSH key that is missing, unreadable or too open, a node whose
 * host key is neither pinned nor in known_hosts; each alone and all at once,
 * one line each, exit 2. A good setup (marked with `bysu init`, key 0600,
 * host in known_hosts) passes and says as which user it checked.
 *
 * Before the fix, config check said "valid" (exit 0) for the dashboard and the
 * repository problems, stopped at the first problem, and gave no hint for a
 * missing key.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { BYSU_BIN } from '../helpers/cluster.ts';
import { run, withTempDir } from '../helpers/processes.ts';
import { createClientKeys, type ClientKeys } from '../helpers/sshd.ts';
import { tmpfsUnavailable } from '../helpers/tmpfs.ts';

const STACK = /^\s+at .+\(.+:\d+:\d+\)$/m;
const IS_ROOT = process.getuid?.() === 0;
const PINNED = `SHA256:${'A'.repeat(43)}`;

interface Setup {
  dir: string;
  keys: ClientKeys;
  repository: string;
  /** Write bysu.yaml with these top-level overrides and return its path. */
  writeConfig(overrides?: Record<string, unknown>): Promise<string>;
  bysu(args: string[], configFile: string): Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/** The environment without BYSU_* overrides of the caller's (a BYSU_DASHBOARD_PASSWORD would hide the exposure rule). */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('BYSU_')));
}

/** A good setup: a key (0600), node db1 on [127.0.0.1]:2222 in known_hosts, db2 pinned, a repository made by `bysu init`. */
async function withSetup<T>(fn: (setup: Setup) => Promise<T>): Promise<T> {
  return withTempDir(async (dir) => {
    const keys = await createClientKeys(path.join(dir, 'ssh'));
    // Any ed25519 public key will do as db1's host key: nothing connects.
    await writeFile(keys.knownHostsFile, `[127.0.0.1]:2222 ${keys.publicKey.split(' ').slice(0, 2).join(' ')}\n`);
    const repository = path.join(dir, 'repo');
    const setup: Setup = {
      dir,
      keys,
      repository,
      async writeConfig(overrides = {}) {
        const file = path.join(dir, `bysu-${Math.random().toString(36).slice(2)}.yaml`);
        await writeFile(file, stringify({
          redis: { url: 'redis://127.0.0.1:1/0' },
          repository,
          ssh: { user: 'backup', identityFile: keys.identityFile, knownHosts: keys.knownHostsFile },
          nodes: [{ name: 'db1', host: '127.0.0.1', port: 2222 }, { name: 'db2', host: 'db2.example', port: 22, hostKey: PINNED }],
          apps: [{ name: 'shop', node: 'db1', parts: [{ file: 'shop.sql', run: 'pg_dump shop' }] }],
          ...overrides,
        }));
        return file;
      },
      bysu(args, configFile) {
        return run(BYSU_BIN, ['-c', configFile, ...args], { env: cleanEnv(), cwd: dir, timeout: 60_000 });
      },
    };
    const good = await setup.writeConfig();
    const init = await setup.bysu(['init'], good);
    assert.equal(init.code, 0, `bysu init: ${init.stdout}${init.stderr}`);
    return fn(setup);
  });
}

/** Run config check; assert exit 2 and that every line is one `bysu: config:` problem; return the lines. */
async function problemsOf(setup: Setup, configFile: string): Promise<string[]> {
  const result = await setup.bysu(['config', 'check'], configFile);
  assert.equal(result.code, 2, `exit 2, got ${result.code}:\n${result.stdout}${result.stderr}`);
  assert.doesNotMatch(result.stdout, /valid/, 'not called valid');
  assert.doesNotMatch(result.stderr, STACK);
  const lines = result.stderr.trim().split('\n');
  for (const line of lines) assert.match(line, /^bysu: config: \S/, `one problem per line: ${line}`);
  return lines;
}

test('a good setup passes and names the user the write check was made as', async () => {
  await withSetup(async (setup) => {
    const result = await setup.bysu(['config', 'check'], await setup.writeConfig());
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /valid \(2 nodes, 1 apps\)/);
    const user = execFileSync('id', ['-un'], { encoding: 'utf8' }).trim();
    assert.match(result.stdout, new RegExp(`repository .*repo: marked, writable by ${user} \\(uid ${process.getuid!()}\\), the user this check ran as`));
    if (IS_ROOT) assert.match(result.stdout, /root may write where the workers' user cannot/);
  });
});

test('the dashboard exposure rule: config check reports what bysu dashboard refuses', async () => {
  await withSetup(async (setup) => {
    const exposed = await setup.writeConfig({ dashboard: { host: '0.0.0.0' } });
    const lines = await problemsOf(setup, exposed);
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0]!, /dashboard\.password: required when dashboard\.host is not a loopback address .*Set BYSU_DASHBOARD_PASSWORD, or listen on 127\.0\.0\.1/);
    const dashboard = await setup.bysu(['dashboard'], exposed);
    assert.equal(dashboard.code, 2);
    assert.ok(dashboard.stderr.includes(lines[0]!), `the same line as bysu dashboard:\n${dashboard.stderr}`);
    const withPassword = await setup.writeConfig({ dashboard: { host: '0.0.0.0', password: 'a-long-password' } });
    assert.equal((await setup.bysu(['config', 'check'], withPassword)).code, 0, 'with a password it may listen anywhere');
  });
});

test('the repository: missing, not a directory, without marker, each reported with what to do', async () => {
  await withSetup(async (setup) => {
    const notDirectory = path.join(setup.dir, 'a-file');
    await writeFile(notDirectory, '');
    const unmarked = path.join(setup.dir, 'empty-mount-point');
    await mkdir(unmarked);
    const cases: [string, string, RegExp][] = [
      ['missing', path.join(setup.dir, 'nope'), /repository \S+nope does not exist: not mounted\? run bysu init only to create a new repository/],
      ['not a directory', notDirectory, /repository \S+a-file is not a directory: fix the repository setting or the mount/],
      ['no marker', unmarked, /repository \S+empty-mount-point has no BYSU marker: not mounted\? run bysu init only for a new repository/],
    ];
    for (const [name, repository, expected] of cases) {
      const lines = await problemsOf(setup, await setup.writeConfig({ repository }));
      assert.equal(lines.length, 1, `${name}: ${lines.join('\n')}`);
      assert.match(lines[0]!, expected, name);
    }
  });
});

test('the repository not writable by the user running the check', async (context) => {
  if (IS_ROOT) {
    // Mode bits do not stop root: only a read-only filesystem does, and making one needs a mount.
    const unavailable = tmpfsUnavailable();
    if (unavailable) {
      context.skip(`as root, an unwritable repository needs a read-only mount: ${unavailable}`);
      return;
    }
  }
  await withSetup(async (setup) => {
    const repository = path.join(setup.dir, 'mounted');
    await mkdir(repository);
    const config = await setup.writeConfig({ repository });
    if (IS_ROOT) execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', repository]);
    try {
      assert.equal((await setup.bysu(['init'], config)).code, 0);
      await mkdir(path.join(repository, 'shop'));
      if (IS_ROOT) execFileSync('mount', ['-o', 'remount,ro', repository]);
      else await chmod(path.join(repository, 'shop'), 0o500);
      const lines = await problemsOf(setup, config);
      assert.equal(lines.length, 1, lines.join('\n'));
      if (IS_ROOT) {
        assert.match(lines[0]!, /repository \S+mounted is on a read-only filesystem \(EROFS\): workers cannot write snapshots there; remount it read-write/);
      } else {
        const user = execFileSync('id', ['-un'], { encoding: 'utf8' }).trim();
        assert.match(lines[0]!, new RegExp(`repository \\S+mounted: \\S+mounted/shop not writable by ${user} \\(uid \\d+\\), the user this check ran as \\(EACCES\\): .*run bysu config check as that user`));
      }
    } finally {
      if (IS_ROOT) execFileSync('umount', [repository]);
      else await chmod(path.join(repository, 'shop'), 0o700).catch(() => undefined);
    }
  });
});

test('the SSH key: missing, too open, not a file, unusable, unreadable', async () => {
  await withSetup(async (setup) => {
    const open = path.join(setup.dir, 'open_key');
    await writeFile(open, 'x', { mode: 0o644 });
    await chmod(open, 0o644);
    const garbage = path.join(setup.dir, 'garbage_key');
    await writeFile(garbage, 'not a key\n', { mode: 0o600 });
    const cases: [string, string, RegExp][] = [
      ['missing', path.join(setup.dir, 'no_key'), /ssh\.identityFile: cannot read \S+no_key \(ENOENT\): create it \(ssh-keygen -t ed25519 -N '' -f \S+no_key\) or point ssh\.identityFile/],
      ['readable by others', open, /ssh\.identityFile: \S+open_key is readable by group or others \(mode 0644\); run: chmod 600 \S+open_key/],
      ['a directory', setup.dir, /ssh\.identityFile: \S+ is not a file; point ssh\.identityFile \(BYSU_SSH_IDENTITY\) at the private key/],
      ['not a key', garbage, /ssh\.identityFile: cannot use \S+garbage_key as an SSH private key: .*BYSU needs an unencrypted key, mode 0600/],
    ];
    if (!IS_ROOT) {
      // Root reads any file whatever its mode; as another user a mode-0 key is unreadable.
      const unreadable = path.join(setup.dir, 'unreadable_key');
      await writeFile(unreadable, 'x', { mode: 0o000 });
      cases.push(['unreadable', unreadable, /ssh\.identityFile: cannot read \S+unreadable_key \(EACCES\): make it readable by the user BYSU runs as/]);
    }
    for (const [name, identityFile, expected] of cases) {
      const lines = await problemsOf(setup, await setup.writeConfig({ ssh: { identityFile, knownHosts: setup.keys.knownHostsFile } }));
      assert.equal(lines.length, 1, `${name}: ${lines.join('\n')}`);
      assert.match(lines[0]!, expected, name);
    }
  });
});

test('known_hosts: a node neither pinned nor known is named with the file, the name looked up and how to add it', async () => {
  await withSetup(async (setup) => {
    const nodes = [
      { name: 'db1', host: '127.0.0.1', port: 2222 },
      { name: 'db3', host: '127.0.0.1', port: 2223 },
      { name: 'db4', host: 'DB4.example', port: 22 },
    ];
    const lines = await problemsOf(setup, await setup.writeConfig({ nodes }));
    assert.equal(lines.length, 2, lines.join('\n'));
    const file = setup.keys.knownHostsFile.replace(/[.]/g, '\\.');
    assert.match(lines[0]!, new RegExp(`nodes\\[db3\\]\\.hostKey: node "db3" is not pinned and \\[127\\.0\\.0\\.1\\]:2223 is not in ${file}: check its key out of band, then add the line that \`bysu keyscan 127\\.0\\.0\\.1 --port 2223\` prints to ${file} \\(or ssh-keyscan -p 2223 127\\.0\\.0\\.1 >> ${file}\\)`));
    assert.match(lines[1]!, new RegExp(`nodes\\[db4\\]\\.hostKey: node "db4" is not pinned and db4\\.example is not in ${file}: .*bysu keyscan DB4\\.example --port 22.*ssh-keyscan DB4\\.example >>`));

    const missingFile = path.join(setup.dir, 'no_known_hosts');
    const missing = await problemsOf(setup, await setup.writeConfig({ ssh: { identityFile: setup.keys.identityFile, knownHosts: missingFile } }));
    assert.equal(missing.length, 1, missing.join('\n'));
    assert.match(missing[0]!, /nodes\[db1\]\.hostKey: node "db1" is not pinned and \[127\.0\.0\.1\]:2222 is not in \S+no_known_hosts \(the file does not exist\)/);
  });
});

test('several problems at once are all reported in one run', async () => {
  await withSetup(async (setup) => {
    const open = path.join(setup.dir, 'open_key');
    await writeFile(open, 'x');
    await chmod(open, 0o640);
    const lines = await problemsOf(setup, await setup.writeConfig({
      dashboard: { host: '0.0.0.0' },
      repository: path.join(setup.dir, 'nope'),
      ssh: { identityFile: open, knownHosts: setup.keys.knownHostsFile },
      nodes: [{ name: 'db1', host: '127.0.0.1', port: 2223 }],
    }));
    assert.equal(lines.length, 4, lines.join('\n'));
    assert.match(lines[0]!, /dashboard\.password: required/);
    assert.match(lines[1]!, /repository \S+nope does not exist/);
    assert.match(lines[2]!, /ssh\.identityFile: \S+open_key is readable by group or others \(mode 0640\)/);
    assert.match(lines[3]!, /nodes\[db1\]\.hostKey: node "db1" is not pinned and \[127\.0\.0\.1\]:2223 is not in/);
  });
});

// Fails before the fix: with every node pinned, an unreadable known_hosts (here a directory) passed config check
// and the worker's start, and then every connection failed reading it (found by an attack on config check).
test('known_hosts that exists but cannot be read is refused by config check and by a worker, even with every key pinned', async () => {
  await withSetup(async (setup) => {
    const knownHosts = path.join(setup.dir, 'known_hosts.d');
    await mkdir(knownHosts);
    const file = await setup.writeConfig({
      ssh: { user: 'backup', identityFile: setup.keys.identityFile, knownHosts },
      nodes: [{ name: 'db2', host: 'db2.example', port: 22, hostKey: PINNED }],
      apps: [{ name: 'shop', node: 'db2', parts: [{ file: 'shop.sql', run: 'pg_dump shop' }] }],
    });
    const lines = await problemsOf(setup, file);
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0]!, new RegExp(`ssh\\.knownHosts: cannot read ${knownHosts}.*EISDIR`));
    const worker = await setup.bysu(['worker', 'snapshot'], file);
    assert.equal(worker.code, 2, worker.stdout + worker.stderr);
    assert.match(worker.stderr, /ssh\.knownHosts: cannot read .*EISDIR/);
  });
});

// Fails before the fix: config check said valid, then `bysu up` failed to listen with EADDRNOTAVAIL (found by an attack).
test('a dashboard.host that is not an address of this machine is refused by config check', async () => {
  await withSetup(async (setup) => {
    const file = await setup.writeConfig({ dashboard: { host: '192.0.2.10', password: 'secret' } });
    const lines = await problemsOf(setup, file);
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0]!, /dashboard\.host: 192\.0\.2\.10 is not an address of this machine, so the dashboard could not listen there; use one of .*127\.0\.0\.1.*, or 0\.0\.0\.0 for all/);
    const everywhere = await setup.bysu(['config', 'check'], await setup.writeConfig({ dashboard: { host: '0.0.0.0', password: 'secret' } }));
    assert.equal(everywhere.code, 0, everywhere.stdout + everywhere.stderr);
  });
});
