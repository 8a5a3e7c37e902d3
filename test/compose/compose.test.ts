/**
 * The docker compose stack, built and run for real: the Dockerfile as it is,
 * compose.yaml as it is plus an override that only adds a cluster node, and
 * the README's compose steps as written (extracted from README.md, so the docs
 * cannot drift from what works). Then what an operator relies on: a scheduled
 * and an ad-hoc snapshot in the named volume (sha256sum -c, owner and modes),
 * the dashboard on 127.0.0.1:3000, a Redis restart with a job queued, a
 * snapshot worker killed mid-transfer, a stop well within the grace period,
 * and down/up keeping every snapshot.
 *
 * Needs root (it starts dockerd when none runs) and Debian's docker.io,
 * docker-compose and debootstrap (installed when missing). No image can be
 * pulled here: the base images are stand-ins built by standins.sh.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PROJECT_ROOT } from '../helpers/cluster.ts';
import { composeCommand, composeSkipReason, DOCKER, ensureDockerDaemon, ensureStandinImages } from '../helpers/docker.ts';
import { run, waitUntil } from '../helpers/processes.ts';
import { createClientKeys } from '../helpers/sshd.ts';
import { readmeComposeSteps } from './readme-steps.ts';

const skip = composeSkipReason();
/** The slow app's one part: 24 chunks of 256 KiB half a second apart, about 12 s on the wire. */
const SLOW_RUN = "sh -c 'i=0; while [ $i -lt 24 ]; do head -c 262144 /dev/urandom; sleep 0.5; i=$((i+1)); done'";

interface Listed { id: string; trigger: string | null; parts: string[] }

/** A schedule (cron with seconds, UTC) that fires once a day at the time of `at`. */
const dailyAt = (at: Date) => `${at.getUTCSeconds()} ${at.getUTCMinutes()} ${at.getUTCHours()} * * *`;

async function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer().once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** Copy the checkout's files (tracked and untracked, not ignored) into dir: the build context and the README's working directory. */
async function copyCheckout(dir: string): Promise<void> {
  const files = await run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: PROJECT_ROOT });
  assert.equal(files.code, 0, `git ls-files: ${files.stderr}`);
  const pack = await run('bash', ['-c', `git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\\0' "$f"; done | tar --null -T - -cf - | tar -C "${dir}" -xf -`], { cwd: PROJECT_ROOT });
  assert.equal(pack.code, 0, `copying the checkout: ${pack.stderr}`);
}

describe('docker compose: the image built and the stack run for real', { skip }, () => {
  let work = '';
  let project = '';
  let dockerd: { stop: () => Promise<void> } | undefined;
  const env: NodeJS.ProcessEnv = { ...process.env };
  let compose: string[] = [];
  let port = 3000;
  const timings: Record<string, number> = {};
  /** The containers' logs from before a `down` (which removes them), for test-artifacts/compose.log. */
  let earlierLogs = '';

  /** Run compose with args in the project; throw with its output unless it exits 0 (or `allowFail`). */
  async function dc(args: string[], options: { allowFail?: boolean } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const result = await run(compose[0]!, [...compose.slice(1), ...args], { cwd: project, env });
    if (!options.allowFail && result.code !== 0) throw new Error(`${compose.join(' ')} ${args.join(' ')} exited ${result.code}:\n${result.stdout}\n${result.stderr}`);
    return result;
  }
  /** bysu inside the dashboard container. */
  const bysu = (args: string[], options: { allowFail?: boolean } = {}) => dc(['exec', '-T', 'dashboard', '/app/bin/bysu.js', ...args], options);
  const inVolume = (script: string) => dc(['exec', '-T', 'dashboard', 'sh', '-c', script]);
  const redisCli = async (...args: string[]) => (await dc(['exec', '-T', 'redis', 'redis-cli', '--raw', ...args])).stdout.trim();
  const listed = async (app: string): Promise<Listed[]> => JSON.parse((await bysu(['list', app, '--json'])).stdout) as Listed[];
  const containers = async (service: string) => (await dc(['ps', '-q', service])).stdout.trim().split('\n').filter(Boolean);
  const get = (url: string, headers: Record<string, string> = {}) => fetch(`http://127.0.0.1:${port}${url}`, { headers, signal: AbortSignal.timeout(10_000) });
  /** Replace config/bysu.yaml by a new file with `edit` applied to its text, as an editor or `mv` does (a new inode). */
  const replaceConfig = (edit: (text: string) => string) => {
    const file = path.join(project, 'config', 'bysu.yaml');
    writeFileSync(`${file}.new`, edit(readFileSync(file, 'utf8')), { mode: 0o644 });
    renameSync(`${file}.new`, file);
  };
  /** What the README's steps wrote into .env: the dashboard's password and the API token. */
  const secrets = { password: '', token: '' };
  const basic = () => ({ authorization: `Basic ${Buffer.from(`admin:${secrets.password}`).toString('base64')}` });

  /** Check every snapshot of app as a person would, inside the volume: sha256sum -c, tar -tf, the dump's lines, owner and modes. */
  async function checkSnapshots(app: string, triggers: string[]): Promise<void> {
    const snapshots = await listed(app);
    assert.deepEqual(snapshots.map((entry) => entry.trigger).sort(), [...triggers].sort());
    for (const snapshot of snapshots) {
      const check = await inVolume(`cd /var/lib/bysu/${app}/${snapshot.id} && sha256sum -c SHA256SUMS && tar -tf uploads.tar && grep -c INSERT shop.sql`);
      assert.match(check.stdout, /^shop\.sql: OK$/m);
      assert.match(check.stdout, /^uploads\.tar: OK$/m);
      assert.match(check.stdout, /^uploads\/a\.dat$/m);
      assert.match(check.stdout, /^2000$/m, 'every line of the dump');
    }
    // Every file and directory of the app belongs to the image's user and is closed to others.
    const modes = (await inVolume(`find /var/lib/bysu/${app} -printf "%U %m %y %p\\n"`)).stdout.trim().split('\n');
    for (const line of modes) {
      const [uid, mode, type, file] = line.split(' ');
      assert.equal(uid, '1000', `owner of ${file}`);
      if (type === 'f') assert.equal(mode, '600', `mode of ${file}`);
      if (type === 'd') assert.equal(mode, '700', `mode of ${file}`);
    }
  }

  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'bysu-compose-'));
    dockerd = await ensureDockerDaemon(path.join(work, 'logs'));
    let started = Date.now();
    await ensureStandinImages();
    timings.standins = Date.now() - started;
    compose = composeCommand();
    project = path.join(work, 'bysu');
    mkdirSync(project);
    await copyCheckout(project);
    if (!(await portIsFree(3000))) port = 3100 + Math.floor(Math.random() * 800);
    Object.assign(env, {
      COMPOSE_PROJECT_NAME: `bysutest${process.pid}`,
      // The README's commands read compose.yaml; the override only adds the node container.
      COMPOSE_FILE: 'compose.yaml:compose.test.yaml',
      BYSU_HOST_PORT: String(port),
      // Compose v1 builds through the docker CLI, as v2 always does; the CLI's build cache then holds
      // the steps the test's own build ran (docker-py's builds miss it, and this daemon's default
      // network reaches no registry).
      COMPOSE_DOCKER_CLI_BUILD: '1',
      DOCKER_BUILDKIT: '0',
      PATH: `${path.dirname(DOCKER)}:${process.env.PATH}`,
    });
    // The node: its host key, BYSU's key pair, the allow-list setup-node.sh installs.
    const keys = await createClientKeys(path.join(work, 'keys'));
    const nodeSetup = path.join(project, 'node-setup');
    mkdirSync(nodeSetup);
    const keygen = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'node1', '-f', path.join(nodeSetup, 'ssh_host_ed25519_key')]);
    assert.equal(keygen.code, 0, keygen.stderr);
    copyFileSync(`${keys.identityFile}.pub`, path.join(nodeSetup, 'id_ed25519.pub'));
    copyFileSync(path.join(PROJECT_ROOT, 'test/compose/node-start.sh'), path.join(nodeSetup, 'start.sh'));
    const hostKey = readFileSync(path.join(nodeSetup, 'ssh_host_ed25519_key.pub'), 'utf8').split(' ').slice(0, 2).join(' ');
    writeFileSync(keys.knownHostsFile, `node1 ${hostKey}\n`);
    writeFileSync(path.join(project, 'compose.test.yaml'), [
      '# The compose test adds one cluster node to compose.yaml; nothing else differs.',
      'services:',
      '  node1:',
      '    image: bysu-test/node:bookworm',
      '    entrypoint: ["sh", "/node-setup/start.sh"]',
      '    volumes:',
      '      - ./node-setup:/node-setup:ro',
      '      - ./contrib/node:/bysu-node:ro',
      '',
    ].join('\n'));

    // The README's steps, as written: the ssh directory and the config copied, then (after the
    // operator's edit, which is the test's config) the stack started and asked for its status.
    const steps = readmeComposeSteps(readFileSync(path.join(PROJECT_ROOT, 'README.md'), 'utf8'), {
      identityFile: keys.identityFile, knownHosts: keys.knownHostsFile, compose,
    });
    const prepare = await run('bash', ['-euo', 'pipefail', '-c', steps.prepare], { cwd: project, env });
    assert.equal(prepare.code, 0, `the README's preparing steps:\n${steps.prepare}\n${prepare.stdout}\n${prepare.stderr}`);
    const dotenv = readFileSync(path.join(project, '.env'), 'utf8');
    secrets.password = /^BYSU_DASHBOARD_PASSWORD=(\S+)$/m.exec(dotenv)?.[1] ?? '';
    secrets.token = /^BYSU_API_TOKEN=(\S+)$/m.exec(dotenv)?.[1] ?? '';
    assert.ok(secrets.password.length >= 32 && secrets.token.length >= 48, `.env holds a password and a token: ${dotenv.replace(/=.*/g, '=…')}`);
    // Build the Dockerfile before the README's `up --build`, which then finds every step in the
    // cache: this daemon has no default bridge, so only a build on the host's network reaches the
    // npm registry; and the scheduled snapshot below is timed from the moment the stack starts.
    started = Date.now();
    const build = await run(DOCKER, ['build', '--network', 'host', '-t', 'bysu:latest', '.'], { cwd: project, env });
    assert.equal(build.code, 0, `docker build:\n${build.stdout.slice(-4000)}\n${build.stderr}`);
    timings.build = Date.now() - started;
    // The operator's edit: nodes and apps. The shop's schedule is far from now here; the scheduled snapshot's test
    // moves it to a time just ahead once the stack runs (CI at 9226852: the stack took 79 s to start, and a time set a
    // minute ahead here had passed, so the next run was tomorrow's).
    const shopSchedule = dailyAt(new Date(Date.now() + 12 * 3600_000));
    writeFileSync(path.join(project, 'config', 'bysu.yaml'), [
      'concurrency:',
      '  lockDuration: 10s',
      '  stalledInterval: 5s',
      'shutdownGrace: 20s',
      'nodes:',
      '  - name: node1',
      '    host: node1',
      'apps:',
      '  - name: shop',
      '    node: node1',
      `    schedule: "${shopSchedule}"`,
      '    parts:',
      '      - file: shop.sql',
      '        run: cat /srv/shop/shop.sql',
      '      - file: uploads.tar',
      '        run: tar -C /srv/shop -cf - uploads',
      '  - name: slow',
      '    node: node1',
      '    attempts: 2',
      '    parts:',
      '      - file: random.bin',
      `        run: ${JSON.stringify(SLOW_RUN)}`,
      '',
    ].join('\n'));
    // The node's allow-list, as the README makes it: `bysu config allow-list node1` on the backup server.
    const allow = await run(compose[0]!, [...compose.slice(1), 'run', '--rm', '--no-deps', '-T', 'scheduler', 'config', 'allow-list', 'node1'], { cwd: project, env });
    assert.equal(allow.code, 0, `bysu config allow-list node1: ${allow.stdout}\n${allow.stderr}`);
    writeFileSync(path.join(nodeSetup, 'allowed-commands'), allow.stdout);
    started = Date.now();
    // At a terminal, as an operator types them (compose's exec wants one): `script` gives them a pty.
    writeFileSync(path.join(work, 'start.sh'), steps.start);
    const start = await run('script', ['-qec', `bash -euo pipefail ${path.join(work, 'start.sh')}`, '/dev/null'], { cwd: project, env });
    timings.up = Date.now() - started;
    // What matters is that status ran and answered (its exit status depends on the apps' states).
    assert.match(start.stdout, /shop/, `the README's starting steps:\n${steps.start}\n${start.stdout}\n${start.stderr}`);
    await dc(['up', '-d', 'node1']);
  });

  after(async () => {
    if (project) {
      const logs = await dc(['logs', '--no-color', '--timestamps'], { allowFail: true });
      mkdirSync(path.join(PROJECT_ROOT, 'test-artifacts'), { recursive: true });
      writeFileSync(path.join(PROJECT_ROOT, 'test-artifacts', 'compose.log'), `${earlierLogs}${logs.stdout}\n${logs.stderr}`);
      await dc(['down', '-v', '--remove-orphans', '--timeout', '30'], { allowFail: true });
    }
    console.log(`compose timings (ms): ${JSON.stringify(timings)}`);
    await dockerd?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('runs all nine services and the node; init marked the volume and exited 0', async () => {
    const ps = await dc(['ps', '--all']);
    for (const service of ['redis', 'scheduler', 'snapshot-worker', 'retention-worker', 'drill-worker', 'verify-worker', 'mirror-worker', 'dashboard']) {
      assert.ok((await containers(service)).length >= 1, `${service} runs:\n${ps.stdout}`);
    }
    assert.equal((await containers('snapshot-worker')).length, 2, `two snapshot-worker replicas:\n${ps.stdout}`);
    const init = (await dc(['ps', '-q', '--all', 'init'])).stdout.trim();
    assert.ok(init, 'the init container exists');
    const exit = await run(DOCKER, ['inspect', '--format', '{{.State.ExitCode}}', init]);
    assert.equal(exit.stdout.trim(), '0', 'bysu init exited 0');
    const marker = await inVolume('cat /var/lib/bysu/.bysu-repository');
    assert.match(marker.stdout, /bysu-repository\/1/);
  });

  it('an ad-hoc snapshot (exec … snapshot --wait) commits into the volume, checked by sha256sum -c, owned by uid 1000, 0600/0700', async () => {
    const adhoc = await bysu(['snapshot', 'shop', '--wait'], { allowFail: true });
    assert.equal(adhoc.code, 0, `snapshot shop --wait:\n${adhoc.stdout}\n${adhoc.stderr}`);
    assert.match(adhoc.stdout, /committed/);
    await checkSnapshots('shop', ['manual']);
  });

  it('the dashboard on 127.0.0.1: /healthz, basic auth, the overview, /metrics, /api with a token, and a healthy healthcheck', async () => {
    assert.equal((await get('/healthz')).status, 200);
    assert.equal((await get('/')).status, 401, 'the overview refuses a visitor without credentials');
    const overview = await get('/', basic());
    assert.equal(overview.status, 200);
    assert.match(await overview.text(), /shop/);
    assert.equal((await get('/board/', basic())).status, 200, 'Bull Board');
    const metrics = await (await get('/metrics')).text();
    assert.match(metrics, /bysu_app_last_success_timestamp_seconds\{app="shop"\} [1-9]/);
    assert.equal((await get('/api/apps')).status, 401, '/api refuses a request without the token');
    const api = await get('/api/apps', { authorization: `Bearer ${secrets.token}` });
    assert.equal(api.status, 200);
    const apps = JSON.stringify(await api.json());
    assert.match(apps, /"shop"/);
    const dashboard = (await containers('dashboard'))[0]!;
    await waitUntil('the dashboard healthcheck turns healthy', async () =>
      (await run(DOCKER, ['inspect', '--format', '{{.State.Health.Status}}', dashboard])).stdout.trim() === 'healthy', 90_000);
  });

  it('the scheduled snapshot commits at its time, checked the same way', async () => {
    // The operator moves the shop's schedule to 30 s from now and sends SIGHUP to the scheduler. Its job scheduler's
    // next run (its score in the repeat set) must be that time: a reload slower than 30 s would plan tomorrow's, and
    // the test tries again with a new time rather than wait for a run that cannot come.
    const nextRun = async () => Number(await redisCli('ZSCORE', 'bysu:snapshot:repeat', 'app-shop'));
    let at = new Date(0);
    for (let attempt = 1; ; attempt++) {
      const planned = await nextRun();
      at = new Date(Math.ceil((Date.now() + 30_000) / 1000) * 1000);
      replaceConfig((text) => text.replace(/^( {4}schedule: )".*"$/m, `$1"${dailyAt(at)}"`));
      await dc(['kill', '-s', 'SIGHUP', 'scheduler']);
      const next = await waitUntil('the scheduler re-planned the shop', async () => { const score = await nextRun(); return score !== planned ? score : undefined; }, 60_000);
      if (next === at.getTime()) break;
      assert.ok(attempt < 3, `the scheduler planned the shop's next run at ${new Date(next).toISOString()}, not at ${at.toISOString()}, three times`);
    }
    const scheduled = await waitUntil('the scheduled snapshot of shop', async () => (await listed('shop')).find((entry) => entry.trigger === 'schedule'), 150_000);
    assert.ok(scheduled.id >= at.toISOString().replace(/[-:]|\.\d+/g, ''), `the snapshot ${scheduled.id} was taken at or after ${at.toISOString()}`);
    assert.deepEqual(scheduled.parts, ['shop.sql', 'uploads.tar']);
    await checkSnapshots('shop', ['manual', 'schedule']);
  });

  it('docker compose restart redis with a job queued: the job runs once after it, and the job schedulers survive (AOF)', async () => {
    const before = (await listed('shop')).length;
    // Nobody to take the job, and nobody to re-create a lost job scheduler: what is there after the restart was kept by Redis.
    await dc(['stop', 'scheduler', 'snapshot-worker']);
    const schedulersBefore = (await redisCli('ZRANGE', 'bysu:snapshot:repeat', '0', '-1')).split('\n').filter(Boolean).sort();
    assert.ok(schedulersBefore.length >= 2, `job schedulers before: ${schedulersBefore.join(', ')}`);
    const queued = JSON.parse((await bysu(['snapshot', 'shop', '--json'])).stdout) as Array<{ jobId: string }>;
    const jobId = queued[0]!.jobId;
    await dc(['restart', 'redis']);
    await waitUntil('Redis answers again', async () => (await dc(['exec', '-T', 'redis', 'redis-cli', 'ping'], { allowFail: true })).stdout.includes('PONG'), 60_000);
    const schedulersAfter = (await redisCli('ZRANGE', 'bysu:snapshot:repeat', '0', '-1')).split('\n').filter(Boolean).sort();
    assert.deepEqual(schedulersAfter, schedulersBefore, 'the job schedulers survived the restart');
    assert.ok((await redisCli('LRANGE', 'bysu:snapshot:wait', '0', '-1')).split('\n').includes(jobId), 'the queued job survived the restart');
    await dc(['start', 'scheduler', 'snapshot-worker']);
    await waitUntil('the queued job commits', async () => (await listed('shop')).length === before + 1, 120_000);
    // BullMQ 6 keeps the attempts started as `ats` and made as `atm` in the job's hash.
    assert.equal(await redisCli('HGET', `bysu:snapshot:${jobId}`, 'ats'), '1', 'the job was started once');
    await new Promise((resolve) => setTimeout(resolve, 5000));
    assert.equal((await listed('shop')).length, before + 1, 'and committed once');
  });

  it('a snapshot worker killed with SIGKILL during a transfer: the other replica finishes the job, once', async () => {
    const queued = JSON.parse((await bysu(['snapshot', 'slow', '--json'])).stdout) as Array<{ jobId: string }>;
    const jobId = queued[0]!.jobId;
    // The replica that transfers is the one with an established connection to port 22 (0016) in its /proc/net/tcp.
    const transferring = await waitUntil('a replica connected to the node', async () => {
      for (const id of await containers('snapshot-worker')) {
        const tcp = await run(DOCKER, ['exec', id, 'cat', '/proc/net/tcp', '/proc/net/tcp6']);
        if (tcp.stdout.split('\n').some((line) => { const f = line.trim().split(/\s+/); return f[2]?.endsWith(':0016') && f[3] === '01'; })) return id;
      }
      return undefined;
    }, 60_000);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    // SIGKILL from the host to the replica's process, as the kernel's OOM killer would send it: Docker
    // sees a crash, so restart: unless-stopped brings the replica back. (`docker kill` counts as a stop
    // by hand, after which Docker leaves the container stopped until `docker compose up -d`.)
    const pid = (await run(DOCKER, ['inspect', '--format', '{{.State.Pid}}', transferring])).stdout.trim();
    assert.match(pid, /^[1-9]\d*$/);
    process.kill(Number(pid), 'SIGKILL');
    const done = await waitUntil('the job finished by the other replica', async () => {
      const finished = await redisCli('HGET', `bysu:snapshot:${jobId}`, 'finishedOn');
      return finished ? finished : undefined;
    }, 180_000);
    assert.ok(Number(done) > 0);
    assert.equal(await redisCli('HGET', `bysu:snapshot:${jobId}`, 'failedReason'), '', 'the job did not fail');
    const snapshots = await listed('slow');
    assert.equal(snapshots.length, 1, `one snapshot of slow: ${JSON.stringify(snapshots)}`);
    const check = await inVolume(`cd /var/lib/bysu/slow/${snapshots[0]!.id} && sha256sum -c SHA256SUMS && stat -c %s random.bin`);
    assert.match(check.stdout, /^random\.bin: OK$/m);
    assert.match(check.stdout, /^6291456$/m, 'random.bin has every byte');
    // restart: unless-stopped brings the killed replica back.
    await waitUntil('the killed replica runs again', async () =>
      (await run(DOCKER, ['inspect', '--format', '{{.State.Running}}', transferring])).stdout.trim() === 'true', 60_000);
  });

  it('config/bysu.yaml replaced by a new file (as an editor or mv does it) and SIGHUP: every service reloads the new file', async () => {
    replaceConfig((text) => `${text}  - name: added\n    node: node1\n    parts:\n      - file: added.sql\n        run: cat /srv/shop/shop.sql\n`);
    await dc(['kill', '-s', 'SIGHUP']);
    // The scheduler made the new app's job scheduler; the dashboard answers with it.
    await waitUntil('the scheduler reloaded the new file', async () => (await redisCli('ZRANGE', 'bysu:snapshot:repeat', '0', '-1')).split('\n').includes('app-added'), 60_000);
    await waitUntil('the dashboard reloaded the new file', async () => {
      const api = await get('/api/apps', { authorization: `Bearer ${secrets.token}` });
      return api.status === 200 && JSON.stringify(await api.json()).includes('"added"');
    }, 60_000);
    const reloads = async () => (await dc(['logs', '--no-color', 'snapshot-worker'])).stdout.split('\n').filter((line) => line.includes('"msg":"config reloaded"')).length;
    await waitUntil('both snapshot-worker replicas reloaded a changed file', async () => (await reloads()) === 2, 30_000);
  });

  it('docker compose stop completes well within stop_grace_period, and down/up keeps every snapshot', async () => {
    const kept = async () => (await inVolume('find /var/lib/bysu -path "*/.incoming" -prune -o -name SHA256SUMS -print | sort')).stdout;
    const before = await kept();
    assert.ok(before.split('\n').filter(Boolean).length >= 4, `snapshots before: ${before}`);
    let started = Date.now();
    await dc(['stop']);
    timings.stop = Date.now() - started;
    assert.ok(timings.stop < 60_000, `docker compose stop took ${timings.stop} ms; the grace period is 120 s`);
    const logs = await dc(['logs', '--no-color', '--timestamps'], { allowFail: true });
    earlierLogs = `# before docker compose down\n${logs.stdout}\n${logs.stderr}\n# after docker compose up -d again\n`;
    await dc(['down']);
    started = Date.now();
    await dc(['up', '-d']);
    timings.upAgain = Date.now() - started;
    assert.equal(await kept(), before, 'every snapshot is still in the volume');
    const status = await bysu(['list', '--all', '--json']);
    assert.equal((JSON.parse(status.stdout) as Listed[]).length, before.split('\n').filter(Boolean).length);
    const check = await inVolume('cd /var/lib/bysu && for s in */*/SHA256SUMS; do (cd "$(dirname "$s")" && sha256sum --quiet -c SHA256SUMS) || exit 1; done && echo all-ok');
    assert.match(check.stdout, /all-ok/);
  });
});
