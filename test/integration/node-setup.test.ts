/**
 * The README's "Setting up a node", run as it stands: `bysu config allow-list`
 * prints a node's list, contrib/node/setup-node.sh (the file the README shows)
 * sets up a fresh node with it, and the real snapshot worker then takes a
 * snapshot through the forced command it installed. The node is a private
 * mount namespace with overlays over /etc, /home, /usr/local and /var/log
 * (test/helpers/node-namespace.ts), with its own sshd: the script creates a
 * user and writes /etc and /usr/local there, and the machine's user database
 * is checked unchanged afterwards. Also: the script run again (idempotent), a
 * changed key (the old line replaced, the user's other lines kept), the users
 * it refuses, and the allow-list command on a config of two nodes.
 *
 * Before this, the README's block failed on Debian at its first line
 * (`useradd: user 'backup' already exists`) and at its fourth (no /etc/bysu).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { BYSU_BIN, PROJECT_ROOT, waitForLog, withCluster, type TestCluster } from '../helpers/cluster.ts';
import { nodeNamespaceUnavailable, userDatabaseHashes, withNodeNamespace, type NodeNamespace } from '../helpers/node-namespace.ts';
import { run, withTempDir } from '../helpers/processes.ts';

const SCRIPT = path.join(PROJECT_ROOT, 'contrib/node/setup-node.sh');
const UNAVAILABLE = nodeNamespaceUnavailable();

/** The README's node recipe: its first ```sh block after "## Setting up a node", and the update line after it. */
async function readmeRecipe(): Promise<{ allowList: string; scp: string; setup: string; update: string }> {
  const readme = await readFile(path.join(PROJECT_ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Setting up a node\n'));
  assert.ok(section.length < readme.length, 'README.md has a "## Setting up a node" section');
  const blocks = [...section.slice(0, section.indexOf('\n## ')).matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1]!);
  const commands = (block: string) => block.split('\n').filter((line) => line.trim() !== '' && !line.startsWith('#'));
  const [allowList, scp, setup, ...rest] = commands(blocks[0] ?? '');
  assert.match(allowList ?? '', /^bysu config allow-list db1 > \S+$/, 'the recipe prints the allow-list of db1 into a file');
  assert.match(scp ?? '', /^scp \S+( \S+)+ root@db1:$/, 'then copies the files to root\'s home on db1');
  assert.match(setup ?? '', /^sh setup-node\.sh /, 'then runs the script on the node');
  assert.deepEqual(rest, [], 'the recipe has three commands');
  const update = blocks.map(commands).flat().find((line) => line.includes(' | ssh root@db1 '));
  assert.ok(update, 'the README shows how to update a node\'s list');
  return { allowList: allowList!, scp: scp!, setup: setup!, update };
}

/** Given a line of the README run on the backup server, return it runnable here: `bysu` is this checkout's bin/bysu.js. */
function onServer(line: string): string {
  assert.match(line, /^bysu /);
  return line.replace(/^bysu /, `'${BYSU_BIN}' `);
}

/**
 * Given the README's scp line, copy its files into nodeHome (root's home on
 * the node): contrib/… from this checkout, /etc/bysu/id_ed25519.pub (the
 * default ssh.identityFile's .pub) from the cluster's key, others from serverDir.
 */
async function copyAsScp(line: string, cluster: TestCluster, serverDir: string, nodeHome: string): Promise<void> {
  const sources = line.split(/\s+/).slice(1, -1);
  for (const source of sources) {
    let from: string;
    if (source.startsWith('contrib/')) from = path.join(PROJECT_ROOT, source);
    else if (source === '/etc/bysu/id_ed25519.pub') from = `${cluster.keys.identityFile}.pub`;
    else if (!source.includes('/')) from = path.join(serverDir, source);
    else assert.fail(`the README copies ${source}, which this test does not know where to find`);
    await copyFile(from, path.join(nodeHome, path.basename(source)));
  }
}

async function fingerprintOf(publicKeyFile: string): Promise<string> {
  const result = await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', publicKeyFile]);
  assert.equal(result.code, 0, result.stderr);
  return result.stdout.split(/\s+/)[1]!;
}

/** Lines of output with the run's variable parts (uid, fingerprints) as placeholders. */
function steps(output: string, fingerprints: Record<string, string>): string[] {
  let text = output.replace(/uid \d+/g, 'uid N');
  for (const [name, value] of Object.entries(fingerprints)) text = text.replaceAll(value, name);
  return text.trimEnd().split('\n');
}

/** In the throwaway node, start from a machine that has never seen BYSU, whatever this one has (a backup server has a `bysu` user). */
async function freshNode(namespace: NodeNamespace): Promise<void> {
  const result = await namespace.exec('sh', ['-c', 'if getent passwd bysu >/dev/null; then userdel bysu; fi; rm -rf /home/bysu /etc/bysu /usr/local/lib/bysu']);
  assert.equal(result.code, 0, result.stderr);
}

/** What of the machine a node setup could change: its user database and the paths the script writes. */
function machineState(): unknown {
  return {
    users: userDatabaseHashes(),
    paths: ['/home/bysu', '/etc/bysu/allowed-commands', '/usr/local/lib/bysu'].map((file) => `${file}: ${existsSync(file) ? 'present' : 'absent'}`),
  };
}

test('the README\'s node recipe, run as written on a fresh node, lets the snapshot worker take a snapshot through the forced command; again, it changes nothing; a new key replaces the old', { skip: UNAVAILABLE }, async () => {
  const recipe = await readmeRecipe();
  const before = machineState();
  await withCluster([], async (cluster) => {
    await withNodeNamespace(path.join(cluster.dir, 'node'), async (namespace) => {
      await freshNode(namespace);
      const sshd = await namespace.startSshd();
      await writeFile(cluster.keys.knownHostsFile, `${sshd.knownHostsLine}\n`, { flag: 'a' });
      const writeConfig = (parts: { file: string; run: string }[]) => cluster.writeConfig([
        { name: 'shop', node: 'db1', parts },
        { name: 'elsewhere', node: 'db2', parts: [{ file: 'x.sql', run: 'echo not on db1' }] },
      ], {
        // ssh.user left out: BYSU's default, bysu, is the user the script makes by default.
        ssh: { identityFile: cluster.keys.identityFile, knownHosts: cluster.keys.knownHostsFile, connectTimeout: '10s' },
        nodes: [{ name: 'db1', host: '127.0.0.1', port: sshd.port }, { name: 'db2', host: '127.0.0.2', port: 22, hostKey: `SHA256:${'A'.repeat(43)}` }],
      });
      // The dump runs inside the node: it tars the wrapper the script installed there.
      const parts = [{ file: 'shop.sql', run: "printf 'SELECT 1;\\n'" }, { file: 'wrapper.tar', run: 'tar -C /usr/local/lib/bysu -cf - bysu-allow' }];
      await writeConfig(parts);
      const serverDir = path.join(cluster.dir, 'server');
      const nodeHome = path.join(cluster.dir, 'root-on-db1');
      await mkdir(serverDir);
      await mkdir(nodeHome);
      const serverEnv = { ...process.env, BYSU_CONFIG: cluster.configFile };
      const key = await fingerprintOf(`${cluster.keys.identityFile}.pub`);

      // On the backup server, as the README says.
      const printed = await run('sh', ['-c', onServer(recipe.allowList)], { cwd: serverDir, env: serverEnv });
      assert.equal(printed.code, 0, printed.stderr);
      await copyAsScp(recipe.scp, cluster, serverDir, nodeHome);
      const listFile = path.join(serverDir, recipe.allowList.split('> ')[1]!);
      assert.equal(await readFile(listFile, 'utf8'), [
        '# node db1: the commands BYSU may run there (bysu config allow-list db1)',
        '# shop',
        "printf 'SELECT 1;\\n'",
        'tar -C /usr/local/lib/bysu -cf - bysu-allow',
        '',
      ].join('\n'));

      // On the node, as root.
      const first = await namespace.shell(recipe.setup, nodeHome);
      assert.equal(first.code, 0, first.stdout + first.stderr);
      assert.equal(first.stderr, '');
      assert.deepEqual(steps(first.stdout, { KEY: key }), [
        'setup-node: user bysu: created (system user, uid N, shell /bin/sh, home /home/bysu, no password: key logins only)',
        'setup-node: /usr/local/lib/bysu/bysu-allow: installed',
        'setup-node: /etc/bysu: created',
        'setup-node: /etc/bysu/allowed-commands: written (2 commands)',
        'setup-node: /home/bysu/.ssh: created (mode 0700, owner bysu)',
        'setup-node: /home/bysu/.ssh/authorized_keys: BYSU\'s key added (KEY)',
        'setup-node: done: bysu may log in with key KEY and run only the 2 commands of /etc/bysu/allowed-commands',
        'setup-node: next, on the backup server: pin this node\'s host key (bysu keyscan HOST prints it for hostKey:), then bysu config check --connect',
      ]);
      const inNode = async (command: string, args: string[]) => {
        const result = await namespace.exec(command, args);
        assert.equal(result.code, 0, `${command} ${args.join(' ')}: ${result.stderr}`);
        return result.stdout;
      };
      assert.match(await inNode('getent', ['passwd', 'bysu']), /^bysu:x:\d+:\d+:BYSU backups:\/home\/bysu:\/bin\/sh\n$/);
      assert.match(await inNode('getent', ['shadow', 'bysu']), /^bysu:\*:/, 'no password, and not locked (*, not !)');
      const files = ['/home/bysu/.ssh', '/home/bysu/.ssh/authorized_keys', '/etc/bysu', '/etc/bysu/allowed-commands', '/usr/local/lib/bysu', '/usr/local/lib/bysu/bysu-allow'];
      assert.equal(await inNode('stat', ['-c', '%n %U:%G %a', ...files]), [
        '/home/bysu/.ssh bysu:bysu 700',
        '/home/bysu/.ssh/authorized_keys bysu:bysu 600',
        '/etc/bysu root:root 755',
        '/etc/bysu/allowed-commands root:root 644',
        '/usr/local/lib/bysu root:root 755',
        '/usr/local/lib/bysu/bysu-allow root:root 755',
        '',
      ].join('\n'));
      const entry = (publicKey: string) => `restrict,command="/usr/local/lib/bysu/bysu-allow /etc/bysu/allowed-commands" ${publicKey}\n`;
      assert.equal(await inNode('cat', ['/home/bysu/.ssh/authorized_keys']), entry(cluster.keys.publicKey));
      assert.equal(await inNode('cat', ['/etc/bysu/allowed-commands']), await readFile(listFile, 'utf8'), 'the list as bysu printed it, byte for byte');
      assert.equal(await inNode('cat', ['/usr/local/lib/bysu/bysu-allow']), await readFile(path.join(PROJECT_ROOT, 'contrib/node/bysu-allow'), 'utf8'));

      // The real worker takes a snapshot through the forced command.
      const worker = cluster.startWorker();
      await waitForLog(worker, 'snapshot worker started');
      const snapshot = await cluster.bysu(['snapshot', 'shop', '--wait']);
      assert.equal(snapshot.code, 0, snapshot.stdout + snapshot.stderr + sshd.output());
      const latest = await cluster.bysu(['latest', 'shop']);
      const snapshotDir = latest.stdout.trim();
      assert.equal((await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: snapshotDir })).code, 0);
      assert.equal(await readFile(path.join(snapshotDir, 'shop.sql'), 'utf8'), 'SELECT 1;\n');
      assert.equal((await run('tar', ['-tf', path.join(snapshotDir, 'wrapper.tar')])).stdout, 'bysu-allow\n');

      // The same key with the OpenSSH client: the listed commands only, no shell.
      const ssh = (identity: string, command: string) => run('ssh', ['-T', '-i', identity, '-o', 'IdentitiesOnly=yes', '-o', `UserKnownHostsFile=${cluster.keys.knownHostsFile}`,
        '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', '-p', String(sshd.port), 'bysu@127.0.0.1', command], { timeout: 60_000 });
      const shell = await ssh(cluster.keys.identityFile, 'id');
      assert.equal(shell.code, 126);
      assert.match(shell.stderr, /^bysu-allow: command not in \/etc\/bysu\/allowed-commands: id\n/);

      // Again, as written: nothing changes, and it says so.
      const keysBefore = await inNode('cat', ['/home/bysu/.ssh/authorized_keys']);
      const again = await namespace.shell(recipe.setup, nodeHome);
      assert.equal(again.code, 0, again.stdout + again.stderr);
      assert.deepEqual(steps(again.stdout, { KEY: key }), [
        'setup-node: user bysu: exists and can run commands (shell /bin/sh): reused',
        'setup-node: /usr/local/lib/bysu/bysu-allow: unchanged',
        'setup-node: /etc/bysu/allowed-commands: unchanged (2 commands)',
        'setup-node: /home/bysu/.ssh/authorized_keys: BYSU\'s key unchanged (KEY)',
        'setup-node: done: bysu may log in with key KEY and run only the 2 commands of /etc/bysu/allowed-commands',
        'setup-node: next, on the backup server: pin this node\'s host key (bysu keyscan HOST prints it for hostKey:), then bysu config check --connect',
      ]);
      assert.equal(await inNode('cat', ['/home/bysu/.ssh/authorized_keys']), keysBefore);

      // The apps of db1 change: the README's update line hands the new list to the script on standard input.
      await writeConfig([...parts, { file: 'more.sql', run: 'echo more' }]);
      const [serverSide, nodeSide] = recipe.update.split(' | ssh root@db1 ');
      const newList = await run('sh', ['-c', onServer(serverSide!)], { cwd: serverDir, env: serverEnv });
      assert.equal(newList.code, 0, newList.stderr);
      const updated = await namespace.exec('sh', ['-c', `cd -- "$1" && ${nodeSide}`, 'sh', nodeHome], { input: newList.stdout });
      assert.equal(updated.code, 0, updated.stdout + updated.stderr);
      assert.match(updated.stdout, /^setup-node: \/etc\/bysu\/allowed-commands: replaced \(3 commands\)$/m);
      assert.equal(await inNode('cat', ['/etc/bysu/allowed-commands']), newList.stdout);
      const more = await cluster.bysu(['snapshot', 'shop', '--wait']);
      assert.equal(more.code, 0, more.stdout + more.stderr);

      // A new key: the old BYSU line is replaced, the user's own lines are kept, the old key no longer logs in.
      const someone = path.join(cluster.dir, 'someone_ed25519');
      assert.equal((await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'someone@laptop', '-f', someone])).code, 0);
      const ownLine = `from="10.9.9.9" ${(await readFile(`${someone}.pub`, 'utf8')).trim()}\n`;
      const withOwn = await namespace.exec('sh', ['-c', 'cat > /home/bysu/.ssh/authorized_keys'], { input: ownLine + keysBefore });
      assert.equal(withOwn.code, 0, withOwn.stderr);
      const newKey = path.join(nodeHome, 'new_ed25519');
      assert.equal((await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bysu@new-server', '-f', newKey])).code, 0);
      const newFingerprint = await fingerprintOf(`${newKey}.pub`);
      const replaced = await namespace.shell('sh setup-node.sh --key-file new_ed25519.pub', nodeHome);
      assert.equal(replaced.code, 0, replaced.stdout + replaced.stderr);
      assert.deepEqual(steps(replaced.stdout, { OLD: key, NEW: newFingerprint }).slice(2, 4), [
        'setup-node: /etc/bysu/allowed-commands: kept (3 commands)',
        'setup-node: /home/bysu/.ssh/authorized_keys: BYSU\'s key replaced: OLD -> NEW; 1 other line kept',
      ]);
      const newPublic = (await readFile(`${newKey}.pub`, 'utf8')).trim();
      assert.equal(await inNode('cat', ['/home/bysu/.ssh/authorized_keys']), ownLine + entry(newPublic));
      assert.equal((await ssh(newKey, 'echo more')).stdout, 'more\n');
      const old = await ssh(cluster.keys.identityFile, 'echo more');
      assert.equal(old.code, 255, 'the old key is refused');
      assert.match(old.stderr, /Permission denied \(publickey\)/);
    });
  });
  assert.deepEqual(machineState(), before, 'the machine\'s users, /home/bysu, /etc/bysu and /usr/local/lib/bysu are as they were');
});

test('setup-node.sh refuses, before changing anything, a user that cannot run commands (Debian\'s nologin backup user, a locked one), a bad allow-list or key, and a run without root', { skip: UNAVAILABLE }, async () => {
  const before = machineState();
  await withTempDir((dir) => withNodeNamespace(path.join(dir, 'node'), async (namespace) => {
    await freshNode(namespace);
    const home = path.join(dir, 'root-on-node');
    await mkdir(home);
    await copyFile(SCRIPT, path.join(home, 'setup-node.sh'));
    await copyFile(path.join(PROJECT_ROOT, 'contrib/node/bysu-allow'), path.join(home, 'bysu-allow'));
    assert.equal((await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bysu@backup', '-f', path.join(home, 'id_ed25519')])).code, 0);
    await writeFile(path.join(home, 'list'), '# shop\npg_dump --no-owner shop\n');
    // Debian's backup user, as Debian has it (made here when this machine has none).
    const made = await namespace.exec('sh', ['-c', 'if getent passwd backup >/dev/null; then usermod -s /usr/sbin/nologin backup; else useradd --system --no-create-home --shell /usr/sbin/nologin backup; fi; useradd --create-home --shell /bin/sh locked']);
    assert.equal(made.code, 0, made.stderr);
    const untouched = await namespace.changes();

    const refusals: [string, number, string][] = [
      ['--key-file id_ed25519.pub --allow-list list --user backup', 1, [
        'setup-node: error: user backup exists but cannot run commands: its shell is /usr/sbin/nologin, and sshd runs every command through the user\'s shell',
        'setup-node: leave --user out: this script then makes a dedicated user bysu (set user: bysu for this node in bysu.yaml, or ssh.user); or give it a shell, usermod -s /bin/sh backup, only if nothing relies on backup not logging in',
      ].join('\n')],
      ['--key-file id_ed25519.pub --allow-list list --user locked', 1, [
        'setup-node: error: user locked exists but is locked (its password field starts with !, from passwd -l or useradd\'s default), and sshd without PAM refuses key logins to a locked account',
        'setup-node: leave --user out: this script then makes a dedicated user bysu (set user: bysu for this node in bysu.yaml, or ssh.user); or allow key logins, still with no password: usermod -p \'*\' locked',
      ].join('\n')],
      ['--key-file id_ed25519.pub --allow \'pg_dump\tshop\'', 1, [
        'setup-node: error: the --allow command \'pg_dump?shop\' holds a control character (a newline, a tab or other): bysu-allow refuses every command holding one, so it could never run',
        'setup-node: write each command on one line without control characters (a longer one: a script on the node, and its path in the list)',
      ].join('\n')],
      ['--key-file id_ed25519.pub --allow-list crlf', 1, [
        'setup-node: error: crlf: 2 lines (the first: line 1) end in a carriage return (CRLF line ends): bysu-allow would never match it',
        'setup-node: strip them: sed -i "s/\\r\\$//" crlf',
      ].join('\n')],
      ['--key-file id_ed25519 --allow-list list', 1, [
        'setup-node: error: id_ed25519 is a private key',
        'setup-node: give its public half (the .pub file), and remove the private key from this node: it belongs only on the backup server',
      ].join('\n')],
      ['--key \'restrict ssh-ed25519 AAAA\' --allow-list list', 1, 'setup-node: error: --key does not start with a key type'],
      ['--key-file id_ed25519.pub --allow-list comments', 1, 'setup-node: error: comments has no commands (only blank lines or # comments)'],
      ['--key-file id_ed25519.pub', 2, 'setup-node: no allow-list: give --allow-list FILE (on the backup server, bysu config allow-list NODE prints it) or --allow COMMAND'],
      ['--allow-list list', 2, 'setup-node: no key: give --key-file FILE'],
      ['--key-file id_ed25519.pub --allow-list list --frobnicate', 2, 'setup-node: unknown option --frobnicate'],
    ];
    await writeFile(path.join(home, 'crlf'), 'pg_dump shop\r\ntar -cf - x\r\n');
    await writeFile(path.join(home, 'comments'), '# shop\n\n   # nothing\n');
    for (const [args, code, says] of refusals) {
      const result = await namespace.shell(`sh setup-node.sh ${args}`, home);
      assert.equal(result.code, code, `${args}: ${result.stdout}${result.stderr}`);
      assert.equal(result.stdout, '', `${args}: nothing done`);
      assert.ok(result.stderr.startsWith(says), `${args}: stderr says\n${result.stderr}\nnot\n${says}`);
      assert.deepEqual(await namespace.changes(), untouched, `${args}: nothing changed on the node`);
    }
    const notRoot = await namespace.shell('setpriv --reuid=65534 --regid=65534 --clear-groups sh setup-node.sh --key-file id_ed25519.pub --allow-list list', home);
    assert.equal(notRoot.code, 1);
    assert.match(notRoot.stderr, /^setup-node: error: run it as root: it creates a user and writes \/etc\/bysu, \/usr\/local\/lib\/bysu and the user's ~\/\.ssh\n/);

    // What the refusal said to do makes the locked user usable; with Debian's default awk (mawk) when this machine has it.
    await namespace.exec('usermod', ['-p', '*', 'locked']);
    const env: NodeJS.ProcessEnv = { ...process.env };
    if (existsSync('/usr/bin/mawk')) {
      await mkdir(path.join(dir, 'mawk'));
      await run('ln', ['-s', '/usr/bin/mawk', path.join(dir, 'mawk', 'awk')]);
      env.PATH = `${path.join(dir, 'mawk')}:${process.env.PATH}`;
    }
    const fixed = await namespace.exec('sh', ['-c', 'cd -- "$1" && sh setup-node.sh --key-file id_ed25519.pub --allow-list list --user locked', 'sh', home], { env });
    assert.equal(fixed.code, 0, fixed.stdout + fixed.stderr);
    assert.match(fixed.stdout, /^setup-node: user locked: exists and can run commands \(shell \/bin\/sh\): reused$/m);
    assert.match(fixed.stdout, /^setup-node: \/etc\/bysu\/allowed-commands: written \(1 command\)$/m);
  }));
  assert.deepEqual(machineState(), before);
});

test('every option the README shows for setup-node.sh is one its --help documents and the script takes; --help needs no root', async () => {
  const help = await withTempDir(async (dir) => {
    // A copy any user may read: the checkout may be open to root only.
    await chmod(dir, 0o755);
    const copy = path.join(dir, 'setup-node.sh');
    await copyFile(SCRIPT, copy);
    await chmod(copy, 0o644);
    return process.getuid?.() === 0 ? run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sh', copy, '--help'], { cwd: '/' }) : run('sh', [copy, '--help']);
  });
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^Usage: sh setup-node\.sh /);
  assert.match(help.stdout, /\nExit status: 0 done/);
  assert.match(help.stdout, /\nExample \(node db1; the files copied from the backup server\):\n {2}sh setup-node\.sh --key-file id_ed25519\.pub --allow-list db1\.allowed-commands\n/);
  const readme = await readFile(path.join(PROJECT_ROOT, 'README.md'), 'utf8');
  // The options on every line of the README that runs the script, and those its prose names.
  const shown = new Set([...readme.matchAll(/setup-node\.sh ([^\n`]*)/g)].flatMap((match) => match[1]!.match(/--[a-z-]+/g) ?? []));
  for (const option of ['--allow', '--user']) {
    assert.ok(readme.includes(`\`${option} `) || readme.includes(`\`${option}\n`), `the README names ${option}`);
    shown.add(option);
  }
  assert.ok(shown.has('--key-file') && shown.has('--allow-list'), [...shown].join(' '));
  // `sh setup-node.sh --help`, in the prose: exit 0, checked above.
  shown.delete('--help');
  for (const option of shown) {
    assert.match(help.stdout, new RegExp(`^ {2}${option} `, 'm'), `--help documents ${option}`);
    const given = await run('sh', [SCRIPT, option]);
    assert.equal(given.stderr, `setup-node: ${option} needs a value\n(run sh setup-node.sh --help for usage)\n`, `the script takes ${option}`);
  }
});

test('bysu config allow-list prints the commands of each node of a two-node config; refuses an unknown node and a run: the wrapper could never match', async () => {
  await withTempDir(async (dir) => {
    const configFile = path.join(dir, 'bysu.yaml');
    const write = (apps: unknown[]) => writeFile(configFile, stringify({
      repository: path.join(dir, 'repo'),
      nodes: [{ name: 'db1', host: '10.0.0.11' }, { name: 'db2', host: '10.0.0.12' }],
      apps,
    }));
    const bysu = (args: string[]) => run(BYSU_BIN, ['-c', configFile, ...args], { cwd: dir });
    await write([
      { name: 'shop', node: 'db1', parts: [{ file: 'shop.sql', run: 'pg_dump --no-owner shop' }, { file: 'uploads.tar', run: 'tar -C /srv/shop -cf - uploads' }],
        drill: { node: 'db2', steps: [{ run: 'psql -q -d scratch', stdin: 'shop.sql' }] } },
      { name: 'wiki', node: 'db2', parts: [{ file: 'wiki.sql', run: "pg_dump wiki | gzip -c # 'quoted'" }] },
    ]);
    const db1 = await bysu(['config', 'allow-list', 'db1']);
    assert.equal(db1.code, 0, db1.stderr);
    assert.equal(db1.stdout, '# node db1: the commands BYSU may run there (bysu config allow-list db1)\n# shop\npg_dump --no-owner shop\ntar -C /srv/shop -cf - uploads\n');
    const db2 = await bysu(['config', 'allow-list', 'db2']);
    assert.equal(db2.code, 0, db2.stderr);
    assert.equal(db2.stdout, "# node db2: the commands BYSU may run there (bysu config allow-list db2)\n# shop (drill)\npsql -q -d scratch\n# wiki\npg_dump wiki | gzip -c # 'quoted'\n");

    const unknown = await bysu(['config', 'allow-list', 'db9']);
    assert.equal(unknown.code, 2);
    assert.equal(unknown.stdout, '');
    assert.equal(unknown.stderr, 'bysu: unknown node "db9" (configured: db1, db2)\n');

    await write([{ name: 'shop', node: 'db1', parts: [{ file: 'shop.sql', run: 'pg_dump shop\n' }, { file: 'ok.sql', run: 'pg_dump ok' }] }]);
    const newline = await bysu(['config', 'allow-list', 'db1']);
    assert.equal(newline.code, 2);
    assert.equal(newline.stdout, '', 'nothing printed: a partial list would not do');
    assert.equal(newline.stderr, 'bysu: config: apps[shop].parts[shop.sql].run: holds a newline at its end (a YAML block scalar `|` keeps one; `|-` does not): '
      + 'bysu-allow refuses every command that holds a control character, so the node could never run it; write it on one line (a longer one: a script on the node, and its path here)\n');
    const empty = await bysu(['config', 'allow-list', 'db2']);
    assert.equal(empty.code, 1);
    assert.match(empty.stderr, /^bysu: no app and no drill runs on node "db2"/);

    const help = await bysu(['config', 'allow-list', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Example \(node db1, from the BYSU checkout on the backup server\):\n {2}bysu config allow-list db1 > db1\.allowed-commands\n/);
    assert.match(help.stdout, /Exit status: 0 printed, 1 no app or drill runs on the node/);
    assert.match((await bysu(['config', '--help'])).stdout, /^\s+allow-list <node>\s+print the commands a node may run/m);
  });
});
