/**
 * Attacks on the per-app summary that break what it promises (issue 13's
 * attack; each test fails on the code it was written against):
 * - `bysu verify` run as root over a repository the workers' user owns: the
 *   damaged snapshot it found must still make `bysu status` fail, whoever
 *   runs status afterwards (the workers' user cannot read root's 0600
 *   `.last-verify.json`, rebuilds the summary without it, and root then
 *   trusts that summary);
 * - a summary.json with the right source but wrong types must not take
 *   `bysu status` down for every app;
 * - a snapshot copied in by hand (`cp -a` creates the directory, then fills
 *   it) and read half-way must not stay missing from the summary once the
 *   copy is complete.
 * The workers' user is a bare uid (setpriv needs no passwd entry).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFile, chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { SnapshotAttempt } from '../../src/repository/attempt.ts';
import { initRepository } from '../../src/repository/marker.ts';
import { readAppSummary, scanAppSummary } from '../../src/repository/summary.ts';
import { BYSU_BIN, openCluster, type TestCluster } from '../helpers/cluster.ts';
import { run, withTempDir } from '../helpers/processes.ts';

/** Given a repository, an app and a start time, commit a one-part snapshot as a worker would; return its id. */
async function commitSnapshot(repository: string, app: string, startedAt: string): Promise<string> {
  const jobId = `job-${app}-${Date.parse(startedAt)}`;
  const attempt = await SnapshotAttempt.open(repository, app, jobId, 1);
  await attempt.writePart('a.sql', Readable.from([Buffer.from(`dump of ${app} at ${startedAt}\n`)]), { maxBytes: 1e6, snapshotMaxBytes: 1e6, stallTimeoutMs: 10_000 });
  const result = await attempt.commit({
    format: 'bysu-snapshot/1', app, node: 'db1', host: '127.0.0.1', trigger: 'manual', jobId, attempt: 1,
    startedAt, finishedAt: startedAt, bytes: 0, bysuVersion: 'test', warnings: [], parts: [],
  }, async () => undefined);
  return result.id;
}

const WORKERS_UID = '64123';
/** Whether the workers' user can run this checkout's bysu: not when it lies under a directory only root may enter (a `mktemp -d` clone). */
const workersCanRunBysu = () => spawnSync('setpriv', ['--reuid', WORKERS_UID, '--regid', WORKERS_UID, '--clear-groups', 'test', '-r', BYSU_BIN]).status === 0;
const rootOnly = process.getuid?.() !== 0 ? 'running bysu as another user needs root (CI runs as root)'
  : !workersCanRunBysu() ? `uid ${WORKERS_UID} cannot read ${BYSU_BIN} (the checkout is under a directory only root may enter): clone it where others may read it to run this test`
  : false;

describe('the summary under attack', () => {
  let cluster: TestCluster;
  let close: (() => Promise<void>) | undefined;
  let env: NodeJS.ProcessEnv;
  const status = async (asWorkers: boolean) => {
    const args = ['status', '--json'];
    const result = asWorkers
      ? await run('setpriv', ['--reuid', WORKERS_UID, '--regid', WORKERS_UID, '--clear-groups', BYSU_BIN, ...args], { env, cwd: cluster.dir })
      : await run(BYSU_BIN, args, { env, cwd: cluster.dir });
    return { ...result, apps: (JSON.parse(result.stdout || '{"apps":[]}') as { apps: { app: string; problems: string[] }[] }).apps };
  };

  before(async () => {
    ({ cluster, close } = await openCluster(['db1']));
    env = { ...process.env, BYSU_CONFIG: cluster.configFile, BYSU_LOG_FORMAT: 'json' };
    await cluster.writeConfig([
      { name: 'shop', node: 'db1', parts: [{ file: 'a.sql', run: 'echo dump' }] },
      { name: 'blog', node: 'db1', parts: [{ file: 'a.sql', run: 'echo dump' }] },
    ]);
    for (const app of ['shop', 'blog']) await commitSnapshot(cluster.repository, app, new Date(Date.now() - 60_000).toISOString());
  });

  after(async () => {
    await close?.();
  });

  test('a summary with the right source but wrong types does not take status down for every app', async () => {
    await readAppSummary(cluster.repository, 'blog'); // current
    const file = path.join(cluster.repository, 'blog', '.summary', 'summary.json');
    const original = await readFile(file, 'utf8');
    try {
      for (const damage of [{ lastVerify: { format: 'bysu-verify/1', app: 'blog', at: new Date().toISOString(), snapshots: 5 } }, { snapshots: [null] }]) {
        await writeFile(file, JSON.stringify({ ...JSON.parse(original), ...damage }));
        const result = await status(false);
        assert.doesNotMatch(result.stderr, /is not a function|Cannot read properties/, `one app's summary ${JSON.stringify(damage)} broke status for all: ${result.stderr}`);
        assert.deepEqual(result.apps.map((app) => app.app).sort(), ['blog', 'shop']);
      }
    } finally {
      await writeFile(file, original);
    }
  });

  test('verify run as root finds a damaged snapshot: status fails whoever runs it next', { skip: rootOnly }, async () => {
    const [newest] = (await scanAppSummary(cluster.repository, 'shop')).snapshots;
    await chmod(cluster.dir, 0o755);
    execFileSync('chown', ['-R', `${WORKERS_UID}:${WORKERS_UID}`, cluster.repository, cluster.configFile]);
    await appendFile(path.join(cluster.repository, 'shop', newest!.id, 'a.sql'), 'rot\n');
    const verified = await run(BYSU_BIN, ['verify', 'shop'], { env, cwd: cluster.dir });
    assert.equal(verified.code, 1, verified.stdout + verified.stderr);
    const damaged = (apps: { app: string; problems: string[] }[]) => apps.find((app) => app.app === 'shop')!.problems.some((problem) => problem.includes(`shop/${newest!.id}`));
    assert.ok(damaged((await status(false)).apps), 'root sees the damage right after its verify');
    // The dashboard, the scheduler's check and `sudo -u bysu bysu status` run as the workers' user.
    const workers = await status(true);
    const told = workers.apps.find((app) => app.app === 'shop')!.problems.filter((problem) => !problem.startsWith('no job scheduler'));
    assert.ok(damaged(workers.apps) || told.length > 0, `the workers' user is told of the damage, or that it cannot read the verify record: ${JSON.stringify(workers.apps)}`);
    assert.ok(damaged((await status(false)).apps), 'root still sees the damage after the workers\' user read the app');
  });
});

test('a snapshot copied in by hand, read half-way, is in the summary once the copy is complete', async () => {
  await withTempDir(async (dir) => {
    const repository = path.join(dir, 'repo');
    await initRepository(repository);
    const id = await commitSnapshot(repository, 'shop', '2026-11-30T02:00:00.000Z');
    const copy = path.join(repository, 'shop', '20261201T020000Z');
    await mkdir(copy); // `cp -a` creates the directory first…
    await readAppSummary(repository, 'shop'); // …a status or scrape reads meanwhile…
    execFileSync('cp', ['-a', `${path.join(repository, 'shop', id)}/.`, copy]); // …then it fills it
    assert.deepEqual(await readAppSummary(repository, 'shop'), await scanAppSummary(repository, 'shop'), 'the summary says what the files say');
    await rm(copy, { recursive: true });
  });
});
