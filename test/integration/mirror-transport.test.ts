/**
 * The README's two ways for an offsite BYSU to reach its mirror source, run
 * from the committed files in contrib/mirror, so that the recipes cannot
 * drift from what works:
 *
 * - nginx-bysu-source.conf in a real nginx (its own prefix, pid, logs and
 *   temp paths in a temporary directory, on a free loopback port, with a
 *   self-signed certificate the offsite trusts through NODE_EXTRA_CA_CERTS):
 *   a snapshot is mirrored over https and passes `sha256sum -c`; nginx
 *   killed in the middle of a large file, then started again: the resume
 *   through it is answered 206 with only the missing bytes.
 * - bysu-mirror-tunnel.service's ssh command against a real sshd that
 *   accepts the tunnel key with authorized_keys.tunnel's options and
 *   sshd-bysu-tunnel.conf: a snapshot is mirrored through the forward, and
 *   the key runs no command, opens no forward elsewhere and no listening one.
 *
 * Only the placeholders of the committed files are replaced (ports, paths,
 * names, the key); a placeholder that is no longer in a file fails the test.
 * The source is a real BYSU (sshd node, snapshot worker, dashboard with an
 * API token); the offsite copies with a `bysu worker mirror` process and
 * `bysu mirror <name> --wait`.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { partialDirectory } from '../../src/mirror/copy.ts';
import type { Manifest } from '../../src/repository/manifest.ts';
import { initRepository } from '../../src/repository/marker.ts';
import { openCluster, PROJECT_ROOT, waitForLog, type TestCluster } from '../helpers/cluster.ts';
import { freePort, run, spawnTracked, stopProcess, waitForPort, waitUntil } from '../helpers/processes.ts';
import { createClientKeys, sshdPath, startSshNode, type ClientKeys, type TestNode } from '../helpers/sshd.ts';

const CONTRIB = path.join(PROJECT_ROOT, 'contrib/mirror');
const TOKEN = 'mirror-transport-token-0123456789abcdef';
/** A schedule that does not fire during a test: the runs are the test's own (`bysu mirror --wait`). */
const NEVER = '0 0 1 1 *';
/** The large file cut in the middle: at the offsite's maxRate (8 MiB/s) it takes 4 s. */
const BIG = 32 * 1024 * 1024;

const NGINX_CANDIDATES = ['/usr/sbin/nginx', '/usr/bin/nginx'];
const nginxPath = () => NGINX_CANDIDATES.find((candidate) => existsSync(candidate)) ?? null;
const isRoot = process.getuid?.() === 0;
/** Skip the TLS tests only when nginx is missing and cannot be installed here (as root, before() installs it). */
const skipWithoutNginx = nginxPath() !== null || (isRoot && existsSync('/usr/bin/apt-get'))
  ? false
  : 'nginx is not installed: run `sudo apt-get install -y nginx` (as root on Debian the test installs it itself; it runs its own nginx on a free loopback port, never /etc/nginx or the nginx service)';

/**
 * Given a committed file's text, its name (for messages) and pairs of
 * placeholder and value, return the text with every placeholder replaced;
 * throw when a placeholder is not in it (the file changed: the test must too).
 */
function substitute(text: string, file: string, pairs: Array<[string, string]>): string {
  for (const [placeholder, value] of pairs) {
    assert.ok(text.includes(placeholder), `${file} no longer has ${JSON.stringify(placeholder)}: update this test with the file`);
    text = text.split(placeholder).join(value);
  }
  return text;
}

/** A line of the source's log about a file of a snapshot: served whole from an offset, or broken off. */
interface FileLogLine {
  msg: string;
  snapshot: string;
  file: string;
  from: number;
  bytes: number;
}

/** Given the source's dashboard process, return its log lines about files served or broken off. */
function fileLog(dashboard: { output: () => string }): FileLogLine[] {
  return dashboard.output().split('\n').filter((line) => line.startsWith('{') && line.includes('"api: file ')).map((line) => JSON.parse(line) as FileLogLine);
}

async function snapshotIds(repository: string, app: string): Promise<string[]> {
  return (await readdir(path.join(repository, app)).catch(() => [] as string[])).filter((entry) => /^\d{8}T\d{6}Z/.test(entry)).sort();
}

interface Offsite {
  repository: string;
  /** Run `bysu mirror <name> --wait`; resolves with its output and exit code. */
  mirrorNow(): Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/**
 * Given the cluster (whose redis-server it shares under a prefix of its own),
 * a mirror's name and settings and the environment of its worker, make an
 * offsite BYSU: its repository (`bysu init`), its config, and a running
 * `bysu worker mirror`.
 */
async function startOffsite(cluster: TestCluster, name: string, mirror: Record<string, unknown>, workerEnv: NodeJS.ProcessEnv = {}): Promise<Offsite> {
  const repository = path.join(cluster.dir, `offsite-${name}`);
  await initRepository(repository);
  const configFile = path.join(cluster.dir, `offsite-${name}.yaml`);
  await writeFile(configFile, stringify({
    redis: { url: cluster.redis.url, prefix: `offsite-${name}` },
    repository,
    apps: [],
    mirrors: [{ name, tokenEnv: 'BYSU_HOME_TOKEN', schedule: NEVER, attempts: 1, ...mirror }],
  }));
  const env = { BYSU_CONFIG: configFile, BYSU_HOME_TOKEN: TOKEN };
  const worker = cluster.startProcess(['worker', 'mirror'], { ...env, ...workerEnv });
  await waitForLog(worker, 'mirror worker started');
  return { repository, mirrorNow: () => cluster.bysu(['mirror', name, '--wait'], { env, timeoutMs: 60_000 }) };
}

/** Given a directory holding a copy, assert that `sha256sum -c SHA256SUMS` passes there. */
async function assertSumsCheck(directory: string): Promise<void> {
  const check = await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: directory });
  assert.equal(check.code, 0, check.stdout + check.stderr);
  assert.match(check.stdout, /^manifest\.json: OK$/m);
}

describe('the mirror recipes of contrib/mirror, run', () => {
  let cluster: TestCluster;
  let close: (() => Promise<void>) | undefined;
  let dashboard: ReturnType<TestCluster['startProcess']>;
  let dashboardPort = 0;

  const takeSnapshot = async (app: string) => {
    const result = await cluster.bysu(['snapshot', app, '--wait']);
    assert.equal(result.code, 0, result.stdout + result.stderr);
  };

  before(async () => {
    ({ cluster, close } = await openCluster(['db1']));
    dashboardPort = await freePort();
    await cluster.writeConfig([
      { name: 'site', node: 'db1', parts: [
        { file: 'site.sql', run: "seq 1 2000 | sed 's/.*/INSERT INTO t VALUES (&);/'" },
        { file: 'blob.bin', run: 'head -c 300000 /dev/urandom' },
      ] },
      { name: 'shop', node: 'db1', parts: [
        { file: 'shop.sql', run: "seq 1 100 | sed 's/.*/INSERT INTO t VALUES (&);/'" },
        { file: 'big.bin', run: `head -c ${BIG} /dev/urandom` },
      ] },
    ], { dashboard: { host: '127.0.0.1', port: dashboardPort, apiToken: TOKEN } });
    cluster.startWorker();
    dashboard = cluster.startProcess(['dashboard']);
    await waitForLog(dashboard, 'dashboard started');
    await takeSnapshot('site');
  });

  after(async () => {
    await close?.();
  });

  describe('TLS: nginx-bysu-source.conf in front of the source', { skip: skipWithoutNginx }, () => {
    let dir = '';
    let nginxPort = 0;
    let nginx: ChildProcess | undefined;
    let nginxOutput = '';
    let certificate = '';
    let offsite: Offsite;
    const nginxArgs = () => ['-p', `${dir}/`, '-c', path.join(dir, 'nginx.conf'), '-e', 'stderr'];

    /** Start nginx as its own process group (a kill of the group takes its workers too); resolve when it listens. */
    const startNginx = async () => {
      nginxOutput = '';
      nginx = spawnTracked(nginxPath()!, nginxArgs(), { detached: true });
      nginx.stderr!.on('data', (chunk: Buffer) => (nginxOutput += chunk.toString()));
      await waitForPort(nginxPort).catch((error: unknown) => {
        throw new Error(`nginx did not start: ${nginxOutput}`, { cause: error });
      });
    };
    /** Kill nginx, master and workers, at once (SIGKILL): the link cut as by a crash, nothing closed cleanly. */
    const killNginx = async () => {
      const exited = new Promise((resolve) => nginx!.once('exit', resolve));
      process.kill(-nginx!.pid!, 'SIGKILL');
      await exited;
    };
    /**
     * GET a path through nginx over https, trusting the test's certificate, as a client that knows the source by
     * its name (SNI and Host backup1.test, as backup1.example.com in the README) rather than by 127.0.0.1.
     */
    const get = (urlPath: string, headers: Record<string, string> = {}) => new Promise<{ status: number; body: string }>((resolve, reject) => {
      https.get({ host: '127.0.0.1', servername: 'backup1.test', port: nginxPort, path: urlPath, ca: certificate, headers: { host: 'backup1.test', ...headers } }, (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => resolve({ status: response.statusCode!, body }));
      }).on('error', reject);
    });

    before(async () => {
      if (nginxPath() === null) {
        // Root on Debian (else skipWithoutNginx skipped): installed as scripts/setup.sh installs packages. Under
        // systemd the package starts its own service (port 80), as redis-server's does; this test never uses it.
        const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
        const install = () => run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'nginx'], { env });
        let installed = await install();
        if (installed.code !== 0) {
          await run('apt-get', ['update', '-qq'], { env });
          installed = await install();
        }
        assert.equal(installed.code, 0, `apt-get install -y nginx: ${installed.stdout}${installed.stderr}`);
      }
      dir = path.join(cluster.dir, 'nginx');
      await mkdir(dir, { recursive: true });
      nginxPort = await freePort();
      // A self-signed certificate for the name the offsite's url uses (127.0.0.1): what a CA would sign for backup1.
      const made = await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
        '-subj', '/CN=backup1.test', '-addext', 'subjectAltName=DNS:backup1.test,IP:127.0.0.1',
        '-keyout', path.join(dir, 'privkey.pem'), '-out', path.join(dir, 'fullchain.pem')]);
      assert.equal(made.code, 0, made.stderr);
      certificate = await readFile(path.join(dir, 'fullchain.pem'), 'utf8');
      // The committed server block with only its placeholders replaced ...
      const file = 'contrib/mirror/nginx-bysu-source.conf';
      const server = substitute(await readFile(path.join(PROJECT_ROOT, file), 'utf8'), file, [
        ['listen 443 ssl;', `listen 127.0.0.1:${nginxPort} ssl;`],
        ['server_name backup1.example.com;', 'server_name backup1.test;'],
        ['/etc/letsencrypt/live/backup1.example.com/fullchain.pem', path.join(dir, 'fullchain.pem')],
        ['/etc/letsencrypt/live/backup1.example.com/privkey.pem', path.join(dir, 'privkey.pem')],
        ['proxy_pass http://127.0.0.1:3000;', `proxy_pass http://127.0.0.1:${dashboardPort};`],
      ]);
      await writeFile(path.join(dir, 'bysu-source.conf'), server);
      // ... included in the http block of an nginx of this test's own: nothing in /etc/nginx, /var/log/nginx or
      // /var/lib/nginx (Debian's compiled-in paths) is read or written. The access log says what nginx answered.
      await writeFile(path.join(dir, 'nginx.conf'), [
        'daemon off;',
        `pid ${path.join(dir, 'nginx.pid')};`,
        // As root, the workers would run as nobody, who cannot enter the test's private directory.
        ...(isRoot ? ['user root;'] : []),
        'worker_processes 1;',
        'events { worker_connections 64; }',
        'http {',
        '  log_format transfer \'$status $body_bytes_sent $request_uri\';',
        `  access_log ${path.join(dir, 'access.log')} transfer;`,
        ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `  ${kind}_temp_path ${path.join(dir, `${kind}_temp`)};`),
        `  include ${path.join(dir, 'bysu-source.conf')};`,
        '}',
      ].join('\n'));
      const checked = await run(nginxPath()!, ['-t', ...nginxArgs()]);
      assert.equal(checked.code, 0, `nginx -t: ${checked.stderr}`);
      await startNginx();
      offsite = await startOffsite(cluster, 'tls', { url: `https://127.0.0.1:${nginxPort}`, maxRate: '8MiB' }, { NODE_EXTRA_CA_CERTS: path.join(dir, 'fullchain.pem') });
    });

    after(async () => {
      if (nginx && nginx.exitCode === null && nginx.signalCode === null) {
        await stopProcess(nginx);
        try {
          process.kill(-nginx.pid!, 'SIGKILL'); // a worker the master left behind, if any
        } catch {
          // none: the group is gone
        }
      }
    });

    test('a snapshot arrives over https and passes sha256sum -c; the certificate is checked; only /api is served', async () => {
      // Node checks the certificate: the test process, which does not trust it, is refused.
      await assert.rejects(fetch(`https://127.0.0.1:${nginxPort}/api/apps`), (error: Error & { cause?: Error }) => {
        assert.match(String(error.cause?.message), /self[- ]signed certificate/);
        return true;
      });
      assert.equal((await get('/')).status, 404, 'the dashboard\'s pages are not served through the proxy');
      assert.equal((await get('/board/')).status, 404, 'nor Bull Board');
      assert.equal((await get('/api/apps')).status, 401, 'the API wants its token');
      const apps = await get('/api/apps', { authorization: `Bearer ${TOKEN}` });
      // The dashboard has no password, so it answers only a loopback Host: nginx must not pass on the one it was sent.
      assert.equal(apps.status, 200, `the source answers a request for backup1.test through the proxy: ${apps.body}`);
      assert.deepEqual((JSON.parse(apps.body) as { apps: Array<{ app: string }> }).apps.map((app) => app.app).sort(), ['shop', 'site']);

      const copied = await offsite.mirrorNow();
      assert.equal(copied.code, 0, copied.stdout + copied.stderr);
      assert.match(copied.stdout, /^tls: site: 1 snapshot\(s\) copied/m);
      const [id] = await snapshotIds(cluster.repository, 'site');
      assert.deepEqual(await snapshotIds(offsite.repository, 'site'), [id]);
      await assertSumsCheck(path.join(offsite.repository, 'site', id!));
      const manifest = JSON.parse(await readFile(path.join(offsite.repository, 'site', id!, 'manifest.json'), 'utf8')) as Manifest;
      assert.equal(manifest.mirroredFrom?.url, `https://127.0.0.1:${nginxPort}`);
      assert.match(await readFile(path.join(dir, 'access.log'), 'utf8'), new RegExp(`^200 300000 /api/apps/site/snapshots/${id}/blob\\.bin$`, 'm'));
    });

    test('nginx killed in the middle of a large file: the source sees the cut, and the resume through nginx is a 206 of only the missing bytes', async () => {
      await takeSnapshot('shop');
      const [id] = await snapshotIds(cluster.repository, 'shop');
      const partialBig = path.join(partialDirectory(offsite.repository, 'shop', id!), 'big.bin');
      const cutRun = offsite.mirrorNow();
      // 4 MiB of the 32 arrived (half a second at maxRate): nginx dies, its workers with it.
      await waitUntil('4 MiB of big.bin on the offsite\'s disk', async () => ((await stat(partialBig).catch(() => null))?.size ?? 0) >= 4 * 1024 * 1024, 30_000);
      await killNginx();
      const cut = await cutRun;
      assert.equal(cut.code, 1, `the cut run fails: ${cut.stdout}${cut.stderr}`);
      const kept = (await stat(partialBig)).size;
      assert.ok(kept > 0 && kept < BIG, `a part of big.bin is kept offsite (${kept} bytes)`);
      // proxy_buffering off: nginx passed the file on as it read it, so its death cut the source's download too. With
      // buffering, nginx would have read the whole file at once into /var/lib/nginx/proxy, and the source would
      // have logged it served whole to a mirror that had 4 MiB of it.
      const brokeOff = await waitUntil('the source\'s log of the cut', async () => fileLog(dashboard).find((line) => line.snapshot === id && line.file === 'big.bin'), 10_000);
      assert.match(brokeOff.msg, /^api: file download broke off/, `the source logged the cut, not a whole file served: ${JSON.stringify(brokeOff)}`);
      assert.equal(brokeOff.from, 0);
      assert.ok(brokeOff.bytes < BIG, `the source sent ${brokeOff.bytes} of ${BIG} bytes before the cut`);

      await startNginx();
      const resumed = await offsite.mirrorNow();
      assert.equal(resumed.code, 0, resumed.stdout + resumed.stderr);
      const said = /^tls: shop: 1 snapshot\(s\) copied \(\S+; (\d+) bytes received, (\d+) kept from an interrupted run\)/m.exec(resumed.stdout);
      assert.ok(said, `the run says what it kept: ${resumed.stdout}`);
      const total = (await stat(path.join(cluster.repository, 'shop', id!, 'big.bin'))).size + (await stat(path.join(cluster.repository, 'shop', id!, 'shop.sql'))).size;
      assert.equal(Number(said[1]) + Number(said[2]), total, 'received and kept make the snapshot');
      assert.ok(Number(said[2]) >= kept, 'what big.bin had on disk was kept');
      // The Range reached the source through nginx, which answered the mirror 206 with the rest only.
      const served = fileLog(dashboard).filter((line) => line.snapshot === id && line.file === 'big.bin' && line.msg === 'api: file served');
      assert.deepEqual(served.map(({ from, bytes }) => ({ from, bytes })), [{ from: kept, bytes: BIG - kept }], 'the source served big.bin from the offset kept');
      assert.match(await readFile(path.join(dir, 'access.log'), 'utf8'), new RegExp(`^206 ${BIG - kept} /api/apps/shop/snapshots/${id}/big\\.bin$`, 'm'), 'nginx answered 206 with the missing bytes');
      await assertSumsCheck(path.join(offsite.repository, 'shop', id!));
      assert.deepEqual(await readFile(path.join(offsite.repository, 'shop', id!, 'big.bin')), await readFile(path.join(cluster.repository, 'shop', id!, 'big.bin')));
    });
  });

  describe('SSH tunnel: bysu-mirror-tunnel.service to a source that restricts the key as authorized_keys.tunnel and sshd-bysu-tunnel.conf say', () => {
    let keys: ClientKeys;
    let source: TestNode;
    let tunnel: ChildProcess | undefined;
    let tunnelOutput = '';
    let localPort = 0;
    /** The options every ssh of these tests gives: this key, this known_hosts, no questions. */
    const sshOptions = () => ['-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${keys.knownHostsFile}`, '-o', 'IdentitiesOnly=yes', '-i', keys.identityFile, '-p', String(source.port)];

    before(async () => {
      // The source host's sshd, with a key of the offsite's own.
      keys = await createClientKeys(path.join(cluster.dir, 'tunnel-client'));
      source = await startSshNode('backup1', cluster.dir, keys);
      const keyFile = 'contrib/mirror/authorized_keys.tunnel';
      const keyLines = (await readFile(path.join(PROJECT_ROOT, keyFile), 'utf8')).split('\n').filter((line) => line.trim() !== '' && !line.startsWith('#'));
      assert.equal(keyLines.length, 1, `${keyFile} has one key line`);
      const placeholderKey = /ssh-ed25519 \S+ \S+$/.exec(keyLines[0]!)?.[0];
      assert.ok(placeholderKey, `${keyFile}: the line ends with a key`);
      await writeFile(path.join(source.dir, 'authorized_keys'), `${substitute(keyLines[0]!, keyFile, [
        [placeholderKey, keys.publicKey],
        ['127.0.0.1:3000', `127.0.0.1:${dashboardPort}`],
      ])}\n`, { mode: 0o600 });
      // The sshd drop-in, at the end of the node's sshd_config (the tunnel user here is the test's own user).
      const dropInFile = 'contrib/mirror/sshd-bysu-tunnel.conf';
      await appendFile(path.join(source.dir, 'sshd_config'), `\n${substitute(await readFile(path.join(PROJECT_ROOT, dropInFile), 'utf8'), dropInFile, [
        ['Match User tunnel', `Match User ${source.user}`],
        ['127.0.0.1:3000', `127.0.0.1:${dashboardPort}`],
      ])}`);
      const checked = await run(sshdPath(), ['-t', '-f', path.join(source.dir, 'sshd_config')]);
      assert.equal(checked.code, 0, `sshd -t with ${dropInFile}: ${checked.stderr}`);
      await source.stop();
      await source.start();

      // The unit's ssh command as committed; only the host, port, user, key, known_hosts and forward's ports replaced.
      const unitFile = 'contrib/mirror/bysu-mirror-tunnel.service';
      const execStart = /^ExecStart=(.+)$/m.exec(await readFile(path.join(PROJECT_ROOT, unitFile), 'utf8'))?.[1];
      assert.ok(execStart && !/["'\\$%]/.test(execStart), `${unitFile}: an ExecStart= of plain words`);
      localPort = await freePort();
      const [command, ...args] = substitute(execStart, unitFile, [
        ['-i /etc/bysu/tunnel_ed25519', `-i ${keys.identityFile}`],
        ['UserKnownHostsFile=/etc/bysu/tunnel_known_hosts', `UserKnownHostsFile=${keys.knownHostsFile}`],
        ['-L 127.0.0.1:3001:127.0.0.1:3000', `-L 127.0.0.1:${localPort}:127.0.0.1:${dashboardPort}`],
        ['tunnel@backup1', `-p ${source.port} ${source.user}@127.0.0.1`],
      ]).split(/\s+/);
      tunnel = spawnTracked(command!, args);
      tunnel.stderr!.on('data', (chunk: Buffer) => (tunnelOutput += chunk.toString()));
      await waitForPort(localPort).catch((error: unknown) => {
        throw new Error(`the tunnel did not open: ${tunnelOutput}`, { cause: error });
      });
    });

    after(async () => {
      if (tunnel) await stopProcess(tunnel);
      await source?.stop();
    });

    test('a snapshot arrives through the tunnel and passes sha256sum -c', async () => {
      const offsite = await startOffsite(cluster, 'tunnel', { url: `http://127.0.0.1:${localPort}`, apps: ['site'] });
      const copied = await offsite.mirrorNow();
      assert.equal(copied.code, 0, copied.stdout + copied.stderr + tunnelOutput);
      assert.match(copied.stdout, /^tunnel: site: 1 snapshot\(s\) copied/m);
      const [id] = await snapshotIds(cluster.repository, 'site');
      assert.deepEqual(await snapshotIds(offsite.repository, 'site'), [id]);
      await assertSumsCheck(path.join(offsite.repository, 'site', id!));
      assert.equal(tunnel!.exitCode, null, `the tunnel is still up: ${tunnelOutput}`);
    });

    test('the tunnel key runs no command, and opens no forward but the dashboard\'s: not to another port, not a listening one', async () => {
      // A command: the forced /bin/false runs instead, and nothing else.
      const marker = path.join(cluster.dir, 'tunnel-ran-a-command');
      const command = await run('ssh', [...sshOptions(), `${source.user}@127.0.0.1`, `touch ${marker}`], { timeout: 20_000 });
      assert.notEqual(command.code, 0, `the command was not run: ${command.stderr}`);
      assert.ok(!existsSync(marker), 'no file was touched on the source');

      // A forward to another port on the source: a server there that counts who reaches it.
      let reached = 0;
      const canary = net.createServer((socket) => {
        reached += 1;
        socket.end('reached\n');
      });
      await new Promise<void>((resolve) => canary.listen(0, '127.0.0.1', resolve));
      const canaryPort = (canary.address() as net.AddressInfo).port;
      const otherLocal = await freePort();
      const elsewhere = spawnTracked('ssh', ['-N', '-o', 'ExitOnForwardFailure=yes', ...sshOptions(), '-L', `127.0.0.1:${otherLocal}:127.0.0.1:${canaryPort}`, `${source.user}@127.0.0.1`]);
      let elsewhereOutput = '';
      elsewhere.stderr!.on('data', (chunk: Buffer) => (elsewhereOutput += chunk.toString()));
      try {
        await waitForPort(otherLocal);
        const received = await new Promise<string>((resolve) => {
          let data = '';
          const socket = net.connect(otherLocal, '127.0.0.1');
          socket.on('data', (chunk: Buffer) => (data += chunk.toString()));
          socket.on('close', () => resolve(data)).on('error', () => undefined);
        });
        assert.equal(received, '', 'nothing came back through a forward to another port');
        await waitUntil('ssh to say the forward was refused', async () => /administratively prohibited/.test(elsewhereOutput), 10_000);
        assert.equal(reached, 0, 'the other port was never reached');
      } finally {
        await stopProcess(elsewhere);
        await new Promise((resolve) => canary.close(resolve));
      }

      // A listening forward on the source's loopback (ssh -R), where it could pose as a stopped dashboard.
      const listenPort = await freePort();
      const listening = await run('ssh', ['-N', '-o', 'ExitOnForwardFailure=yes', ...sshOptions(), '-R', `127.0.0.1:${listenPort}:127.0.0.1:${dashboardPort}`, `${source.user}@127.0.0.1`], { timeout: 15_000 });
      assert.equal(listening.code, 255, `ssh -R is refused and ssh exits: ${listening.stderr}`);
      assert.match(listening.stderr, /remote port forwarding failed/);
    });
  });
});
