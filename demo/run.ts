/**
 * `npm run demo`: BYSU's main job on this machine in one command. It starts
 * a private redis-server, three real OpenSSH sshd "nodes" on loopback with
 * sample apps (a PostgreSQL dump where a server answers at 127.0.0.1:5432,
 * a tar of a directory, and an app that fails so the failure path is
 * visible), `bysu init` on a new repository, `bysu up` (scheduler, workers,
 * dashboard with generated credentials), and snapshots everything with `bysu snapshot --all --wait`;
 * then checks the result with sha256sum and tar, the way an operator would,
 * and prints the status table and the dashboard URL. It keeps running until
 * Ctrl-C; `--once` exits after the first round: 0 only when the expected
 * outcome was seen.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import { randomBytes } from 'node:crypto';
import { BYSU_BIN } from '../test/helpers/cluster.ts';
import { freePort, run, spawnTracked, stopProcess, withTempDir } from '../test/helpers/processes.ts';
import { withRedis } from '../test/helpers/redis.ts';
import { withSshNodes } from '../test/helpers/sshd.ts';

const once = process.argv.includes('--once');
/**
 * Ctrl-C (or SIGTERM) at any moment: from the start, not only at the prompt, so that an interrupt mid-round
 * still stops bysu up (in its own process group, the terminal's SIGINT does not reach it) and cleans up.
 */
const interrupted = new AbortController();
process.once('SIGINT', () => interrupted.abort());
process.once('SIGTERM', () => interrupted.abort());
const onInterrupt = new Promise<void>((resolve) => interrupted.signal.addEventListener('abort', () => resolve(), { once: true }));
/** Bold on a terminal; plain text when the output is a file or a pipe, or NO_COLOR is set. */
const bold = process.stdout.isTTY === true && (process.env.NO_COLOR ?? '') === '' ? (text: string) => `\x1b[1m${text}\x1b[0m` : (text: string) => text;
const say = (text: string) => console.log(`\n${bold(`== ${text}`)}`);

async function postgresAnswers(): Promise<boolean> {
  const probe = await run('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-tAc', 'select 1', 'postgres']).catch(() => ({ code: 1 }));
  return probe.code === 0;
}

async function main(): Promise<number> {
  return withTempDir((dir) => withRedis((redis) => withSshNodes(dir, ['db', 'files', 'broken'], async ([db, files, broken], keys) => {
    say(`three sshd nodes on 127.0.0.1 ports ${db!.port}, ${files!.port}, ${broken!.port}; redis-server at ${redis.url}`);
    await mkdir(path.join(files!.dir, 'srv/uploads/2026'), { recursive: true });
    await writeFile(path.join(files!.dir, 'srv/uploads/2026/invoice-1.pdf'), Buffer.alloc(200_000, 1));
    await writeFile(path.join(files!.dir, 'srv/uploads/readme.txt'), 'customer uploads\n');
    const havePostgres = await postgresAnswers();
    const dump = havePostgres
      ? 'pg_dump -h 127.0.0.1 -U postgres --no-owner postgres'
      : "printf 'CREATE TABLE demo (id int);\\nINSERT INTO demo VALUES (1);\\n'";
    if (!havePostgres) console.log('(no PostgreSQL at 127.0.0.1:5432: the shop app prints a small SQL file instead of pg_dump)');

    const dashboardPort = Number(process.env.BYSU_DEMO_PORT ?? (await freePort()));
    const password = randomBytes(9).toString('base64url');
    const apiToken = randomBytes(18).toString('base64url');
    const configFile = path.join(dir, 'bysu.yaml');
    const repository = path.join(dir, 'repository');
    await writeFile(configFile, stringify({
      redis: { url: redis.url, prefix: 'demo' },
      repository,
      ssh: { user: db!.user, identityFile: keys.identityFile, knownHosts: keys.knownHostsFile },
      concurrency: { busyNodeDelay: '1s' },
      // A Ctrl-C also stops the demo's Redis and nodes at once: running jobs cannot finish, so waiting the
      // default minute for them would only delay the end.
      shutdownGrace: '5s',
      dashboard: { host: '127.0.0.1', port: dashboardPort, user: 'admin', password, apiToken },
      nodes: [db!, files!, broken!].map((node) => ({ name: node.name, host: node.host, port: node.port })),
      apps: [
        { name: 'shop', node: 'db', parts: [{ file: 'shop.sql', run: dump }] },
        { name: 'uploads', node: 'files', parts: [{ file: 'uploads.tar', run: 'tar -C "$NODE_DIR/srv" -cf - uploads' }] },
        { name: 'ledger', node: 'broken', attempts: 2, backoff: '2s', parts: [{ file: 'ledger.sql', run: "echo 'pg_dump: error: connection to server on socket failed: No such file or directory' >&2; exit 1" }] },
      ],
    }));
    say(`config ${configFile}`);

    const env = { ...process.env, BYSU_CONFIG: configFile, BYSU_LOG_LEVEL: 'warn' };
    // Once, as an operator does: the demo made this directory's parent itself, so there is no disk to miss.
    say('bysu init (creates the repository and its marker)');
    const init = await run(BYSU_BIN, ['init'], { env, stdio: ['pipe', 'inherit', 'inherit'] });
    if (init.code !== 0) throw new Error(`bysu init failed (exit ${init.code})`);
    // Its log goes to a file: on the terminal its lines would land in the middle of snapshot --wait's live line.
    const upLogFile = path.join(dir, 'bysu-up.log');
    say(`bysu up (scheduler, workers, dashboard; its log: ${upLogFile})`);
    // In a process group of its own: Ctrl-C reaches only the demo, which stops it with one SIGTERM (a SIGINT
    // from the terminal and then the demo's SIGTERM were two signals, and up exited at once on the second).
    const up = spawnTracked(BYSU_BIN, ['up'], { env, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let upLog = '';
    const logStream = createWriteStream(upLogFile, { flags: 'a' });
    // After a Ctrl-C the directory may be gone before up's last lines are written: those are dropped.
    logStream.on('error', () => undefined);
    up.stderr!.on('data', (chunk: Buffer) => {
      upLog += chunk.toString();
      logStream.write(chunk);
    });
    try {
      const deadline = Date.now() + 30_000;
      while (!(await fetch(`http://127.0.0.1:${dashboardPort}/healthz`).then((response) => response.ok, () => false))) {
        if (Date.now() > deadline || up.exitCode !== null) throw new Error(`bysu up did not start:\n${upLog}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      say('bysu snapshot --all --wait');
      const snapshot = await run(BYSU_BIN, ['snapshot', '--all', '--wait'], { env, stdio: ['pipe', 'inherit', 'inherit'] });
      if (interrupted.signal.aborted) {
        say('interrupted: stopping bysu up, the nodes and Redis; removing the demo directory');
        return 0;
      }
      const outcomeOk = snapshot.code === 1; // ledger is meant to fail
      let checksOk = true;
      for (const app of ['shop', 'uploads']) {
        const latest = await run(BYSU_BIN, ['latest', app], { env });
        const snapshotDir = latest.stdout.trim();
        say(`${app}: cd ${snapshotDir} && sha256sum -c SHA256SUMS`);
        const sums = await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: snapshotDir || dir });
        process.stdout.write(sums.stdout + sums.stderr);
        checksOk &&= latest.code === 0 && sums.code === 0;
      }
      say('tar -tvf uploads/latest/uploads.tar');
      const listing = await run('tar', ['-tvf', path.join(repository, 'uploads/latest/uploads.tar')]);
      process.stdout.write(listing.stdout + listing.stderr);
      checksOk &&= listing.code === 0;
      say('bysu status (exit 1: ledger is failing, as it should)');
      const status = await run(BYSU_BIN, ['status'], { env, stdio: ['pipe', 'inherit', 'inherit'] });
      checksOk &&= status.code === 1;
      const dashboardUrl = `http://127.0.0.1:${dashboardPort}/`;
      const dashboardOk = (await fetch(dashboardUrl, { headers: { authorization: `Basic ${Buffer.from(`admin:${password}`).toString('base64')}` } })).ok;
      say(`dashboard: ${dashboardUrl}  user admin  password ${password}`);
      console.log(`API:     curl -H 'Authorization: Bearer ${apiToken}' ${dashboardUrl}api/apps`);
      console.log(`metrics: curl ${dashboardUrl}metrics`);
      const ok = outcomeOk && checksOk && dashboardOk;
      say(ok ? 'expected outcome: shop and uploads committed and verified; ledger failed loudly; dashboard up' : 'UNEXPECTED outcome (see above)');
      if (once) return ok ? 0 : 1;
      console.log(`\nbysu up keeps running (snapshots every night at 03:00 UTC). In another terminal (npm run demo linked \`bysu\` to ${BYSU_BIN}; that path works too):\n  export BYSU_CONFIG=${configFile}\n  bysu status\n  bysu snapshot shop --wait\n  bysu restore shop --to /tmp/shop-restored\n  bysu verify --all\nPress Ctrl-C to stop and remove the demo.`);
      await onInterrupt;
      say('stopping: bysu up, the nodes and Redis; removing the demo directory');
      return 0;
    } finally {
      await stopProcess(up, 70_000);
      // Exit 1 with "second signal" in its log would mean it was cut short rather than stopped.
      if (!once || interrupted.signal.aborted) console.log(`bysu up stopped: exit ${up.exitCode ?? up.signalCode}${/second signal/.test(upLog) ? ' (cut short by a second signal)' : ''}`);
    }
  })));
}

process.exitCode = await main();
