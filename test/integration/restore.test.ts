/**
 * `bysu restore` and `bysu cat` as an operator uses them, after real
 * snapshots taken through a real sshd node: the restored directory passes
 * `sha256sum -c`, an extracted tar part holds what `tar -tf` lists, a file
 * flipped in the repository is refused with nothing left under the target's
 * name, unsafe archives are refused, `bysu cat shop shop.sql | psql` refreshes
 * a fresh PostgreSQL database, and both work with Redis stopped, never
 * connecting to it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { watch } from 'node:fs';
import { mkdir, open, readdir, readFile, readlink, stat, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { after, before, describe, test } from 'node:test';
import tar from 'tar-stream';
import { BYSU_BIN, openCluster, waitForLog, type TestCluster } from '../helpers/cluster.ts';
import { PG, postgresUnavailable, psql } from '../helpers/postgres.ts';
import { run, spawnTracked } from '../helpers/processes.ts';

const unavailable = await postgresUnavailable();
const suffix = randomBytes(4).toString('hex');
const SOURCE_DB = `bysu_restore_src_${suffix}`;
/** A part large enough that its copy lasts while the test interrupts it (hashed twice: about a second here). */
const BIG_BYTES = 300_000_000;

/** Given a directory, return every entry under it as `tar -tf` names them: relative, directories with a trailing slash. */
async function treeOf(root: string, prefix = ''): Promise<string[]> {
  const names: string[] = [];
  for (const entry of await readdir(path.join(root, prefix), { withFileTypes: true })) {
    const name = `${prefix}${entry.name}`;
    if (entry.isDirectory()) names.push(`${name}/`, ...(await treeOf(root, `${name}/`)));
    else names.push(name);
  }
  return names;
}

/** Given an archive's entries, return it packed with tar-stream (names and links exactly as given: no sanitising). */
async function craftTar(entries: { name: string; type?: 'file' | 'symlink' | 'directory'; linkname?: string; body?: string }[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const entry of entries) {
    const header = { name: entry.name, type: entry.type ?? 'file', ...(entry.linkname ? { linkname: entry.linkname } : {}) };
    if (header.type === 'file') pack.entry(header, entry.body ?? 'x\n');
    else pack.entry(header).end(() => undefined);
  }
  pack.finalize();
  return buffer(pack);
}

/** Hidden staging directories a restore may leave beside or inside a target. */
async function stagingLeftovers(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.includes('.bysu-restore-'));
}

describe('bysu restore and bysu cat', () => {
  let cluster: TestCluster;
  let close: (() => Promise<void>) | undefined;
  /** The two snapshots of shop, oldest first. */
  let ids: string[] = [];
  let snapshotDir: string;

  before(async () => {
    ({ cluster, close } = await openCluster(['db1']));
    const node = cluster.nodes[0]!;
    await mkdir(path.join(node.dir, 'uploads/img'), { recursive: true });
    await writeFile(path.join(node.dir, 'uploads/img/logo.png'), Buffer.alloc(70_000, 7));
    await writeFile(path.join(node.dir, 'uploads/readme.txt'), 'uploads\n');
    // A relative link that climbs but stays inside: extracted as it is.
    await symlink('../readme.txt', path.join(node.dir, 'uploads/img/readme-link'));
    await writeFile(path.join(node.dir, 'names.tar'), await craftTar([{ name: 'ok.txt' }, { name: '../escaped.txt' }, { name: '/tmp/absolute.txt' }, { name: 'etc', type: 'symlink', linkname: '/etc' }, { name: 'up', type: 'symlink', linkname: '../..' }]));
    // `d -> .` is harmless and `e -> d/..` looks like `.`, but through d it is the parent: only resolving on disk shows it.
    await writeFile(path.join(node.dir, 'chain.tar'), await craftTar([{ name: 'd', type: 'symlink', linkname: '.' }, { name: 'e', type: 'symlink', linkname: 'd/..' }]));
    let dump = "printf 'CREATE TABLE orders (id int primary key, customer text);\\nINSERT INTO orders VALUES (1, $$ada$$), (2, $$grace$$);\\n'";
    if (!unavailable) {
      assert.equal((await psql('postgres', `CREATE DATABASE ${SOURCE_DB}`)).code, 0);
      const setup = await psql(SOURCE_DB, "CREATE TABLE orders (id int primary key, customer text); INSERT INTO orders VALUES (1, 'ada'), (2, 'grace');");
      assert.equal(setup.code, 0, setup.stderr);
      dump = `pg_dump ${PG.join(' ')} --no-owner ${SOURCE_DB}`;
    }
    await cluster.writeConfig([
      {
        name: 'shop',
        node: 'db1',
        parts: [
          { file: 'shop.sql', run: dump },
          { file: 'uploads.tar', run: 'tar -C "$NODE_DIR" -cf - uploads' },
          { file: 'uploads.tgz', run: 'tar -C "$NODE_DIR" -czf - uploads' },
        ],
      },
      { name: 'evil', node: 'db1', parts: [{ file: 'names.tar', run: 'cat "$NODE_DIR/names.tar"' }, { file: 'chain.tar', run: 'cat "$NODE_DIR/chain.tar"' }] },
      { name: 'big', node: 'db1', parts: [{ file: 'big.bin', run: `head -c ${BIG_BYTES} /dev/zero` }] },
    ]);
    const worker = cluster.startWorker();
    await waitForLog(worker, 'snapshot worker started');
    for (let round = 0; round < 2; round += 1) {
      const taken = await cluster.bysu(['snapshot', 'shop', '--wait']);
      assert.equal(taken.code, 0, taken.stdout + taken.stderr);
    }
    for (const app of ['evil', 'big']) {
      const taken = await cluster.bysu(['snapshot', app, '--wait']);
      assert.equal(taken.code, 0, taken.stdout + taken.stderr);
    }
    ids = (await readdir(path.join(cluster.repository, 'shop'))).filter((name) => /^\d{8}T\d{6}Z(?:-\d+)?/.test(name)).sort();
    assert.equal(ids.length, 2);
    snapshotDir = path.join(cluster.repository, 'shop', ids[1]!);
    assert.equal(await readlink(path.join(cluster.repository, 'shop', 'latest')), ids[1]);
  });

  after(async () => {
    await close?.();
    if (!unavailable) await psql('postgres', `DROP DATABASE IF EXISTS ${SOURCE_DB}`);
  });

  test('restore without options: ./<app>-<newest id> with every part, manifest.json and SHA256SUMS; sha256sum -c passes in it', async () => {
    const result = await cluster.bysu(['restore', 'shop']);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const target = path.join(cluster.dir, `shop-${ids[1]}`);
    assert.match(result.stdout, new RegExp(`^restored shop/${ids[1]} \\(taken .* on db1\\) into ${target.replace(/[.]/g, '\\.')}$`, 'm'));
    assert.match(result.stdout, /^ {2}shop\.sql +\S+ \S*B, checked against SHA256SUMS$/m);
    assert.match(result.stdout, new RegExp(`^next:\\n {2}createdb shop && psql -v ON_ERROR_STOP=1 shop < ${target.replace(/[.]/g, '\\.')}/shop\\.sql$`, 'm'));
    assert.match(result.stdout, /tar -C <destination> -xf .*uploads\.tar$/m);
    const sums = await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: target });
    assert.equal(sums.code, 0, sums.stdout + sums.stderr);
    assert.deepEqual(sums.stdout.trim().split('\n').sort(), ['manifest.json: OK', 'shop.sql: OK', 'uploads.tar: OK', 'uploads.tgz: OK']);
    assert.deepEqual((await readdir(target)).sort(), (await readdir(snapshotDir)).sort(), 'the same files as the snapshot');
    assert.equal(await readFile(path.join(target, 'SHA256SUMS'), 'utf8'), await readFile(path.join(snapshotDir, 'SHA256SUMS'), 'utf8'));
    assert.equal((await stat(target)).mode & 0o777, 0o700, 'a restore holds dumps: 0700 like the repository');
    assert.equal((await stat(path.join(target, 'shop.sql'))).mode & 0o777, 0o600);
    assert.deepEqual(await stagingLeftovers(cluster.dir), []);
    // A second restore to the same place is refused: the directory is not empty.
    const again = await cluster.bysu(['restore', 'shop']);
    assert.equal(again.code, 2, again.stdout + again.stderr);
    assert.match(again.stderr, new RegExp(`^bysu: refusing to restore into ${target.replace(/[.]/g, '\\.')}: it is not empty \\(5 entries: "SHA256SUMS", "manifest\\.json", "shop\\.sql", …\\); choose a new or empty directory with --to\\n$`));
  });

  test('--snapshot picks an older snapshot, --part one file, --to an existing empty directory', async () => {
    const target = path.join(cluster.dir, 'empty-target');
    await mkdir(target);
    const result = await cluster.bysu(['restore', 'shop', '--snapshot', ids[0]!, '--part', 'shop.sql', '--to', target]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.deepEqual((await readdir(target)).sort(), ['SHA256SUMS', 'manifest.json', 'shop.sql']);
    assert.equal(JSON.parse(await readFile(path.join(target, 'manifest.json'), 'utf8')).id, ids[0]);
    const sums = await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: target });
    assert.equal(sums.code, 0, sums.stdout + sums.stderr);
    assert.deepEqual(sums.stdout.trim().split('\n').sort(), ['manifest.json: OK', 'shop.sql: OK'], 'its SHA256SUMS lists what it holds');
  });

  test('--extract: a tar part becomes the tree tar -tf lists, a .tgz too, relative links inside kept; two parts holding the same files clash', async () => {
    for (const part of ['uploads.tar', 'uploads.tgz']) {
      const target = path.join(cluster.dir, `extracted-${part}`);
      const result = await cluster.bysu(['restore', 'shop', '--part', part, '--extract', '--to', target]);
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.match(result.stdout, new RegExp(`^ {2}${part.replace('.', '\\.')} +extracted \\(5 entries, .* archive\\), checked against SHA256SUMS$`, 'm'));
      assert.match(result.stdout, /the files of uploads\.(tar|tgz) are in .*: look, then copy them into place/);
      const listing = await run('tar', ['-tf', path.join(snapshotDir, part)]);
      assert.equal(listing.code, 0);
      assert.deepEqual((await treeOf(target)).sort(), listing.stdout.trim().split('\n').sort());
      assert.deepEqual(await readFile(path.join(target, 'uploads/img/logo.png')), Buffer.alloc(70_000, 7));
      assert.equal(await readlink(path.join(target, 'uploads/img/readme-link')), '../readme.txt');
      assert.equal(await readFile(path.join(target, 'uploads/img/readme-link'), 'utf8'), 'uploads\n');
    }
    // uploads.tar and uploads.tgz hold the same files: extracted together, the second may not overwrite the first.
    const both = path.join(cluster.dir, 'extracted-both');
    const clash = await cluster.bysu(['restore', 'shop', '--extract', '--to', both]);
    assert.equal(clash.code, 1, clash.stdout + clash.stderr);
    assert.match(clash.stderr, /^bysu: restoring shop\/\d{8}T\d{6}Z(?:-\d+)? failed: tar could not extract shop\/\d{8}T\d{6}Z(?:-\d+)?\/uploads\.tgz: exit status 2:\n.*Cannot open: File exists/);
    assert.match(clash.stderr, new RegExp(`nothing was restored into ${both}\\n$`));
    await assert.rejects(stat(both), { code: 'ENOENT' });
  });

  test('--extract refuses absolute names, "..", links pointing out, and a chain of links that leads out; nothing is written', async () => {
    const before = await readdir(cluster.dir);
    const names = await cluster.bysu(['restore', 'evil', '--part', 'names.tar', '--extract', '--to', path.join(cluster.dir, 'evil-names')]);
    assert.equal(names.code, 1, names.stdout + names.stderr);
    assert.match(names.stderr, /^bysu: refusing to extract evil\/\d{8}T\d{6}Z(?:-\d+)?\/names\.tar: 4 entries would land or point outside the target directory: "\.\.\/escaped\.txt" \(a "\.\." in its path\), "\/tmp\/absolute\.txt" \(an absolute path\), "etc" \(a symbolic link to the absolute path "\/etc"\), "up" \(a symbolic link to "\.\.\/\.\.", which points outside\)\. Restore it without --extract/);
    const chain = await cluster.bysu(['restore', 'evil', '--part', 'chain.tar', '--extract', '--to', path.join(cluster.dir, 'evil-chain')]);
    assert.equal(chain.code, 1, chain.stdout + chain.stderr);
    assert.match(chain.stderr, /^bysu: refusing the extraction of evil\/\d{8}T\d{6}Z(?:-\d+)?\/chain\.tar: "e" \(a symbolic link that leads outside, or loops\)/);
    assert.deepEqual((await readdir(cluster.dir)).sort(), before.sort(), 'no target, no staging directory, no escaped.txt beside them');
    // Without --extract the archive is only copied, as checked bytes: the operator can look at it with tar -tvf.
    const copied = await cluster.bysu(['restore', 'evil', '--part', 'names.tar', '--to', path.join(cluster.dir, 'evil-copy')]);
    assert.equal(copied.code, 0, copied.stdout + copied.stderr);
  });

  test('a byte flipped in the repository: restore and cat exit 1 naming the file; nothing is left under the target name', async () => {
    const file = path.join(snapshotDir, 'uploads.tar');
    const handle = await open(file, 'r+');
    const original = Buffer.alloc(1);
    try {
      await handle.read(original, 0, 1, 600);
      await handle.write(Buffer.from([original[0]! ^ 0xff]), 0, 1, 600);
      const target = path.join(cluster.dir, 'damaged');
      const result = await cluster.bysu(['restore', 'shop', '--to', target]);
      assert.equal(result.code, 1, result.stdout + result.stderr);
      assert.match(result.stderr, new RegExp(`^bysu: shop/${ids[1]}/uploads\\.tar: checksum mismatch: SHA256SUMS says [0-9a-f]{64}, the file has [0-9a-f]{64}\\. Nothing was restored into ${target}; bysu verify shop checks every snapshot, bysu list shop shows the others\\n$`));
      assert.equal(result.stdout, '');
      await assert.rejects(stat(target), { code: 'ENOENT' });
      assert.deepEqual(await stagingLeftovers(cluster.dir), []);
      // The other parts are fine: only the damaged one is refused.
      const other = await cluster.bysu(['restore', 'shop', '--part', 'shop.sql', '--to', target]);
      assert.equal(other.code, 0, other.stdout + other.stderr);

      const cat = await cluster.bysu(['cat', 'shop', 'uploads.tar']);
      assert.equal(cat.code, 1);
      assert.equal(cat.stdout, '', 'nothing of a damaged file reaches stdout');
      assert.match(cat.stderr, new RegExp(`^bysu: shop/${ids[1]}/uploads\\.tar: checksum mismatch: .*\\. Nothing was written to stdout`));
    } finally {
      await handle.write(original, 0, 1, 600);
      await handle.close();
    }
  });

  test('Ctrl-C during the copy: exit 1 saying nothing was restored; no target, no staging directory left', async () => {
    const parent = path.join(cluster.dir, 'interrupted');
    await mkdir(parent);
    const target = path.join(parent, 'big');
    const child = spawnTracked(BYSU_BIN, ['restore', 'big', '--to', target], { env: { ...process.env, BYSU_CONFIG: cluster.configFile } });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    // The staging directory appears once the first pass has checked the file: the copy is under way.
    // Once: its removal is an event too, and a second Ctrl-C after the cleanup would end the process by the signal.
    let interrupted = false;
    const watcher = watch(parent, (_event, name) => {
      if (interrupted || !String(name).includes('.bysu-restore-')) return;
      interrupted = true;
      child.kill('SIGINT');
    });
    try {
      const code = await exited;
      assert.equal(code, 1, stderr);
      assert.match(stderr, new RegExp(`^bysu: big/\\d{8}T\\d{6}Z: interrupted by SIGINT: nothing was restored into ${target}\\n$`));
    } finally {
      watcher.close();
    }
    assert.deepEqual(await readdir(parent), []);
  });

  test('usage errors exit 2 and say what to do: unknown id, bad id, unknown part or file, unknown app, SHA256SUMS', async () => {
    const cases: [string[], RegExp][] = [
      [['restore', 'shop', '--snapshot', '20000101T000000Z'], /^bysu: shop has no complete snapshot 20000101T000000Z; see its snapshots with: bysu list shop$/],
      [['restore', 'shop', '--snapshot', 'yesterday'], /^bysu: --snapshot "yesterday" is not a snapshot id \(they look like 20261126T021500Z\); see shop's with: bysu list shop$/],
      [['cat', 'shop', 'shop.sql', '--snapshot', '20000101T000000Z'], /^bysu: shop has no complete snapshot 20000101T000000Z; see its snapshots with: bysu list shop$/],
      [['restore', 'shop', '--part', 'nope.sql'], new RegExp(`^bysu: shop/${'\\d{8}T\\d{6}Z(?:-\\d+)?'} has no part "nope\\.sql" \\(its parts: shop\\.sql, uploads\\.tar, uploads\\.tgz\\)$`)],
      [['cat', 'shop', 'nope.sql'], /^bysu: shop\/\d{8}T\d{6}Z(?:-\d+)? has no file "nope\.sql" \(its files: shop\.sql, uploads\.tar, uploads\.tgz, manifest\.json\)$/],
      [['cat', 'shop', 'SHA256SUMS'], /^bysu: SHA256SUMS is what the other files are checked against, so bysu cat cannot check it; read it as it is: cat .*\/SHA256SUMS$/],
      [['restore', 'nosuchapp'], /^bysu: unknown app "nosuchapp" \(configured: shop, evil, big;/],
      [['restore', 'shop', '--to', path.join('/nonexistent-parent', 'x')], /^bysu: cannot restore into \/nonexistent-parent\/x: its parent \/nonexistent-parent does not exist/],
    ];
    for (const [args, message] of cases) {
      const result = await cluster.bysu(args);
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stdout}${result.stderr}`);
      assert.match(result.stderr.trim(), message, args.join(' '));
      assert.equal(result.stdout, '', `${args.join(' ')} writes nothing to stdout`);
    }
  });

  test('cat writes the file byte for byte; manifest.json too', async () => {
    for (const file of ['uploads.tgz', 'manifest.json']) {
      const piped = await run('bash', ['-o', 'pipefail', '-c', `"${BYSU_BIN}" cat shop ${file} | sha256sum`], { env: { ...process.env, BYSU_CONFIG: cluster.configFile } });
      assert.equal(piped.code, 0, piped.stderr);
      const expected = (await run('sha256sum', [path.join(snapshotDir, file)])).stdout.split(' ')[0];
      assert.equal(piped.stdout.split(' ')[0], expected, file);
    }
  });

  test('bysu cat shop shop.sql | psql is a whole staging refresh', { skip: unavailable ? `no PostgreSQL answers at 127.0.0.1:5432 as postgres (${unavailable})` : false }, async () => {
    const staging = `bysu_staging_${suffix}`;
    try {
      assert.equal((await psql('postgres', `CREATE DATABASE ${staging}`)).code, 0);
      const refresh = await run('bash', ['-o', 'pipefail', '-c', `"${BYSU_BIN}" cat shop shop.sql | psql ${PG.join(' ')} -v ON_ERROR_STOP=1 -q -d ${staging}`], { env: { ...process.env, BYSU_CONFIG: cluster.configFile } });
      assert.equal(refresh.code, 0, refresh.stdout + refresh.stderr);
      const rows = await psql(staging, 'SELECT customer FROM orders ORDER BY id');
      assert.equal(rows.stdout.trim(), 'ada\ngrace');
    } finally {
      await psql('postgres', `DROP DATABASE IF EXISTS ${staging}`);
    }
  });

  test('restore and cat never connect to Redis', async () => {
    let connections = 0;
    const listener = net.createServer((socket) => {
      connections += 1;
      socket.destroy();
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    try {
      const env = { BYSU_REDIS_URL: `redis://127.0.0.1:${(listener.address() as net.AddressInfo).port}/0` };
      const restored = await cluster.bysu(['restore', 'shop', '--part', 'shop.sql', '--to', path.join(cluster.dir, 'no-redis-1')], { env });
      assert.equal(restored.code, 0, restored.stdout + restored.stderr);
      const cat = await cluster.bysu(['cat', 'shop', 'manifest.json'], { env });
      assert.equal(cat.code, 0, cat.stderr);
      assert.equal(connections, 0, 'not one connection to what the config names as Redis');
    } finally {
      listener.close();
    }
  });

  test('with Redis stopped: restore and cat still work', async () => {
    await cluster.redis.stop();
    try {
      const target = path.join(cluster.dir, 'no-redis-2');
      const restored = await cluster.bysu(['restore', 'shop', '--to', target]);
      assert.equal(restored.code, 0, restored.stdout + restored.stderr);
      assert.equal((await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: target })).code, 0);
      const cat = await cluster.bysu(['cat', 'shop', 'manifest.json']);
      assert.equal(cat.code, 0, cat.stderr);
      assert.equal(JSON.parse(cat.stdout).id, ids[1]);
    } finally {
      await cluster.redis.start();
    }
  });
});
