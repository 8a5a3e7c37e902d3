/**
 * Failures that must always be loud, with real processes: a job whose worker
 * dies (kill -9) at every start, ad hoc and made by the job scheduler; a job
 * failed through maxStartedAttempts; a command the node refuses (126) or
 * cannot find (127); a command that fails with an empty stderr. Each must end
 * failed once, with the failure record, one webhook and the /fail ping, and
 * a reason an operator can act on.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { Job } from 'bullmq';
import { Redis } from 'ioredis';
import { SNAPSHOT_QUEUE } from '../../src/queue/jobs.ts';
import { MAX_STARTED_ATTEMPTS } from '../../src/workers/node-job.ts';
import { PROJECT_ROOT, waitForLog, withCluster, withSnapshotQueue, type TestCluster } from '../helpers/cluster.ts';
import { recordFault } from '../helpers/fault-report.ts';
import { startHttpRecorder, type HttpRecorder } from '../helpers/http-recorder.ts';
import { waitUntil } from '../helpers/processes.ts';

/** Writes a byte a second for ever, and dies of SIGPIPE once the worker that reads it is gone. */
const ENDLESS_PART = 'while :; do printf x; sleep 1; done';
/** Dead workers are noticed within seconds; node slots to spare, so that the leases dead workers leave never hold the job back. */
const FAST_STALLS = { lockDuration: '3s', stalledInterval: '1s', perNode: 10, perWorker: 1, busyNodeDelay: '300ms' };
/** The kills after which a job must have ended failed: BYSU's maxStalledCount is 2, so the third stall fails it. */
const KILLS_ALLOWED = 5;

interface StatusReport { apps: { app: string; state: string; lastFailure: { reason: string; jobId: string; attempts: number } | null }[] }

async function statusOf(cluster: TestCluster): Promise<{ code: number | null; report: StatusReport; table: string }> {
  const json = await cluster.bysu(['status', '--json']);
  const table = await cluster.bysu(['status']);
  return { code: json.code, report: JSON.parse(json.stdout) as StatusReport, table: table.stdout };
}

/** The job ids of the "part started" lines in a worker's JSON log. */
function startedJobIds(output: string): string[] {
  return output.split('\n').filter((line) => line.includes('"msg":"part started"')).map((line) => String((JSON.parse(line) as { jobId: unknown }).jobId));
}

const hooks = (recorder: HttpRecorder, app: string, event: string) =>
  recorder.requests.filter((request) => request.path === '/hook' && (request.body as { app?: string }).app === app && (request.body as { event?: string }).event === event);


/**
 * Start a worker; each time it starts the job (the first job to start, when
 * jobId is not given) kill it with -9 and start another, until a worker says
 * the job failed for good or KILLS_ALLOWED kills are done. Return the job id,
 * the kills and the last worker (still running).
 */
async function killAtEveryStart(cluster: TestCluster, jobId?: string): Promise<{ jobId: string; kills: number; worker: ReturnType<TestCluster['startWorker']> }> {
  let kills = 0;
  let tracked = jobId;
  for (;;) {
    const worker = cluster.startWorker();
    await waitForLog(worker, 'worker started');
    const outcome = await waitUntil(`job ${tracked ?? '(first)'} to start again or fail for good`, async () => {
      const output = worker.output();
      if (tracked !== undefined && output.includes('failed for good') && output.includes(`"jobId":"${tracked}"`)) return 'failed';
      const started = startedJobIds(output);
      tracked ??= started[0];
      return tracked !== undefined && started.includes(tracked) ? 'started' : null;
    }, 60_000).catch(async (error: Error) => {
      const job = tracked === undefined ? undefined : await withSnapshotQueue(cluster, async (queue) => ({ state: await queue.getJobState(tracked!), job: (await Job.fromId(queue, tracked!))?.toJSON() }));
      throw new Error(`${error.message} (after ${kills} kills; the job: ${JSON.stringify(job)}); the worker's log:\n${worker.output().slice(-3000)}`);
    });
    if (outcome === 'failed' || kills >= KILLS_ALLOWED) return { jobId: tracked!, kills, worker };
    const exited = once(worker, 'exit');
    worker.kill('SIGKILL');
    await exited;
    kills += 1;
  }
}

/**
 * Given the job and the recorder, assert it ended failed, loudly: record, status, one webhook, the /fail ping.
 * With `laterJobsMayFail`, the app's jobs that the scheduler made after this one hang and are killed too, so
 * one of them may fail for good after it and be the app's last failure; it must then be a failed job as well.
 */
async function assertFailedLoudly(cluster: TestCluster, recorder: HttpRecorder, app: string, jobId: string, kills: number, laterJobsMayFail = false): Promise<string> {
  const state = await withSnapshotQueue(cluster, async (queue) => waitUntil(`job ${jobId} to end failed`, async () => {
    const current = await queue.getJobState(jobId);
    return current === 'failed' ? current : null;
  }, 20_000).catch(async () => queue.getJobState(jobId)));
  assert.equal(state, 'failed', `job ${jobId} is ${state} after ${kills} dead workers, not failed`);
  const failed = await recorder.waitFor((request) => request.path === '/hook' && (request.body as { event?: string }).event === 'failed');
  await recorder.waitFor((request) => request.path === `/ping/${app}/fail`);
  const status = await statusOf(cluster);
  const entry = status.report.apps.find((candidate) => candidate.app === app)!;
  assert.equal(status.code, 1);
  assert.equal(entry.state, 'failing');
  if (laterJobsMayFail && entry.lastFailure !== null && entry.lastFailure.jobId !== jobId) {
    const named = entry.lastFailure.jobId;
    assert.match(named, /^repeat:/, `the last failure ${named} is another job made by the job scheduler`);
    assert.equal(await withSnapshotQueue(cluster, async (queue) => queue.getJobState(named)), 'failed', `the last failure names ${named}, which has failed too`);
  } else {
    assert.equal(entry.lastFailure?.jobId, jobId);
  }
  assert.match(entry.lastFailure!.reason, /stalled/);
  assert.match(status.table, new RegExp(`^${app}\\s+FAILING\\s.*stalled`, 'm'));
  assert.match((failed.body as { reason: string }).reason, /stalled/);
  await new Promise((resolve) => setTimeout(resolve, 2000)); // a second alert would come now
  assert.equal(hooks(recorder, app, 'failed').length, 1, 'one webhook for the failure');
  return entry.lastFailure!.reason;
}

// On the code before the fix this job already ended failed and alerted (BullMQ 6.7 marks it at the third
// stall and fails it with an UnrecoverableError at its next start); only the reason said nothing but
// "job stalled more than allowable limit". It guards the ad-hoc path the scheduled test below shares.
test('a job whose worker is killed at every start ends failed after maxStalledCount: record, one webhook, /fail ping', async () => {
  const recorder = await startHttpRecorder();
  try {
    await withCluster(['db1'], async (cluster) => {
      await cluster.writeConfig(
        [{ name: 'crashy', node: 'db1', attempts: 3, timeout: '10m', ping: `${recorder.url}/ping/crashy`, parts: [{ file: 'a.bin', run: ENDLESS_PART }] }],
        { concurrency: FAST_STALLS, shutdownGrace: '1s', notify: { webhook: `${recorder.url}/hook` } },
      );
      await cluster.bysu(['snapshot', 'crashy']);
      const { jobId, kills } = await killAtEveryStart(cluster);
      const reason = await assertFailedLoudly(cluster, recorder, 'crashy', jobId, kills);
      assert.equal(kills, 3, 'failed at the third stall (maxStalledCount 2)');
      assert.match(reason, /the worker running it died or froze past its lock 3 times/);
      recordFault({
        kind: 'fault', fault: 'worker killed (-9) at every start of an ad-hoc job', expected: 'failed after maxStalledCount (3 deaths); record, 1 webhook, /fail ping',
        observed: `failed after ${kills} kills; ${hooks(recorder, 'crashy', 'failed').length} webhook; reason: ${reason.split('\n')[0]!.slice(0, 90)}`, pass: true, lost: 0, partialVisible: 0,
      });
    });
  } finally {
    await recorder.close();
  }
});

// Fails before the fix: BullMQ never fails a stalled job whose job scheduler exists, so the job was
// started again after every death ("job … is active after 5 dead workers, not failed"), for ever.
test('a job made by the job scheduler whose worker is killed at every start ends failed too', async () => {
  const recorder = await startHttpRecorder();
  try {
    await withCluster(['db1'], async (cluster) => {
      await cluster.writeConfig(
        [{ name: 'tick', node: 'db1', schedule: '*/2 * * * * *', attempts: 3, timeout: '10m', ping: `${recorder.url}/ping/tick`, parts: [{ file: 'a.bin', run: ENDLESS_PART }] }],
        // Each start of a scheduled job makes the next one, and they all hang: a worker takes them all, so that
        // the tracked one is never left waiting behind the others. Each kill leaves their node slots leased.
        { concurrency: { ...FAST_STALLS, global: 100, perWorker: 40, perNode: 400 }, shutdownGrace: '1s', notify: { webhook: `${recorder.url}/hook`, staleCheckInterval: '1h' } },
      );
      const scheduler = cluster.startProcess(['scheduler']);
      await waitForLog(scheduler, 'scheduler started');
      const { jobId, kills } = await killAtEveryStart(cluster);
      assert.match(jobId, /^repeat:/, 'a job made by the job scheduler');
      const reason = await assertFailedLoudly(cluster, recorder, 'tick', jobId, kills, true);
      assert.equal(kills, 3, 'failed at the third stall (maxStalledCount 2)');
      recordFault({
        kind: 'fault', fault: 'worker killed (-9) at every start of a scheduled job', expected: 'failed after maxStalledCount (3 deaths) like an ad-hoc job; record, 1 webhook, /fail ping',
        observed: `failed after ${kills} kills; ${hooks(recorder, 'tick', 'failed').length} webhook; reason: ${reason.split('\n')[0]!.slice(0, 90)}`, pass: true, lost: 0, partialVisible: 0,
      });
    });
  } finally {
    await recorder.close();
  }
});

// Fails before the fix: the worker alerted only for UnrecoverableError or attemptsMade >= attempts, and a job
// that BullMQ fails because it was started maxStartedAttempts times has neither ("no matching request").
test('a job failed because it was started maxStartedAttempts times is recorded, alerted and pinged', async () => {
  const recorder = await startHttpRecorder();
  try {
    await withCluster(['db1'], async (cluster) => {
      await cluster.writeConfig(
        [{ name: 'worn', node: 'db1', attempts: 3, ping: `${recorder.url}/ping/worn`, parts: [{ file: 'a.sql', run: 'echo "pg_dump: connection refused" >&2; exit 1' }] }],
        { notify: { webhook: `${recorder.url}/hook` } },
      );
      const enqueued = await cluster.bysu(['snapshot', 'worn']);
      const jobId = /\(job (\S+)\)/.exec(enqueued.stdout)?.[1];
      assert.ok(jobId, enqueued.stdout + enqueued.stderr);
      // A day of busy-node delays in one step: the job has used all its starts but one.
      const redis = new Redis(cluster.redis.url);
      await redis.hset(`${cluster.prefix}:${SNAPSHOT_QUEUE}:${jobId}`, 'ats', MAX_STARTED_ATTEMPTS - 1);
      redis.disconnect();
      const worker = cluster.startWorker();
      await waitForLog(worker, 'worker started');
      const job = await withSnapshotQueue(cluster, (queue) => waitUntil('the job to fail', async () => ((await queue.getJobState(jobId)) === 'failed' ? Job.fromId(queue, jobId) : null)));
      assert.equal(job?.attemptsMade, 1, 'one attempt of three, and no retry: the starts are used up');
      const hook = await recorder.waitFor((request) => request.path === '/hook' && (request.body as { event?: string }).event === 'failed');
      assert.match((hook.body as { reason: string }).reason, /connection refused[\s\S]*not retried: the job was started 10000 times, maxStartedAttempts 10000/);
      await recorder.waitFor((request) => request.path === '/ping/worn/fail');
      const status = await statusOf(cluster);
      assert.equal(status.report.apps[0]!.state, 'failing');
      recordFault({
        kind: 'fault', fault: 'job failed through maxStartedAttempts (a retryable error at the last start)', expected: 'recorded, 1 webhook, /fail ping',
        observed: `failed after ${job?.attemptsMade} attempt; ${hooks(recorder, 'worn', 'failed').length} webhook; status ${status.report.apps[0]!.state}`, pass: true, lost: 0, partialVisible: 0,
      });
    });
  } finally {
    await recorder.close();
  }
});

// Fails before the fix: both were retried as if a retry could help ("FAILED after 3 attempt(s)").
test('a command the node refuses (126) or cannot find (127) is tried once, with a reason that says so', async () => {
  await withCluster(['db1'], async (cluster) => {
    const node = cluster.nodes[0]!;
    const allowed = path.join(node.dir, 'allowed-commands');
    await writeFile(allowed, "echo dump\nbysu-no-such-dump --all\n");
    const wrapper = path.join(PROJECT_ROOT, 'contrib/node/bysu-allow');
    await writeFile(path.join(node.dir, 'authorized_keys'), `restrict,command="${wrapper} ${allowed}" ${cluster.keys.publicKey}\n`);
    await cluster.writeConfig([
      { name: 'refused', node: 'db1', attempts: 3, backoff: '1s', parts: [{ file: 'a.sql', run: 'pg_dump shop' }] },
      { name: 'missing', node: 'db1', attempts: 3, backoff: '1s', parts: [{ file: 'a.sql', run: 'bysu-no-such-dump --all' }] },
    ]);
    const worker = cluster.startWorker();
    await waitForLog(worker, 'worker started');
    const result = await cluster.bysu(['snapshot', 'refused', 'missing', '--wait']);
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(result.stdout, /refused: FAILED after 1 attempt\(s\): part a\.sql: the node refused the command \(exit 126 from the forced-command wrapper: .*allowed-commands on db1\?.*\); not retried\nstderr .*\nbysu-allow: command not in/);
    assert.match(result.stdout, /missing: FAILED after 1 attempt\(s\): part a\.sql: command not found on the node db1 \(exit 127\); not retried\nstderr .*\n.*bysu-no-such-dump: (command )?not found/);
    const attempts = await withSnapshotQueue(cluster, async (queue) => Promise.all((await queue.getJobs(['failed'])).map((job) => `${job.data.app} ${job.attemptsMade}/${job.opts.attempts}`)));
    assert.deepEqual(attempts.sort(), ['missing 1/3', 'refused 1/3']);
    recordFault({
      kind: 'fault', fault: 'command refused by the node (126) or not found (127)', expected: 'one attempt of 3, reason names the refusal',
      observed: `attempts used: ${attempts.sort().join(', ')}`, pass: true, lost: 0, partialVisible: 0,
    });
  });
});

// Fails before the fix: the reason was only "command exited with code 1 (accepted: 0)".
test('a command failing with an empty stderr: the reason carries the start of its stdout, bounded and on one line', async () => {
  await withCluster(['db1'], async (cluster) => {
    const nologin = "echo 'This account is currently not available.'; exit 1";
    await cluster.writeConfig([
      { name: 'nologin', node: 'db1', attempts: 1, parts: [{ file: 'db.sql', run: nologin }] },
      { name: 'nologintar', node: 'db1', attempts: 1, parts: [{ file: 'etc.tar', run: nologin }] },
      { name: 'chatty', node: 'db1', attempts: 1, parts: [{ file: 'db.sql', run: `printf 'ERROR:\\t"bad"\\033[31m\\n'; yes 'more lines' | head -c 100000; exit 2` }] },
    ]);
    const worker = cluster.startWorker();
    await waitForLog(worker, 'worker started');
    const result = await cluster.bysu(['snapshot', 'nologin', 'nologintar', 'chatty', '--wait']);
    assert.equal(result.code, 1, result.stdout + result.stderr);
    const reasons = await withSnapshotQueue(cluster, async (queue) => new Map((await queue.getJobs(['failed'])).map((job) => [job.data.app as string, job.failedReason])));
    assert.equal(reasons.get('nologin'), 'part db.sql: command exited with code 1 (accepted: 0); stderr was empty; the start of stdout (41 bytes): "This account is currently not available.\\n"');
    assert.match(reasons.get('nologintar')!, /; stderr was empty; the start of stdout \(41 bytes\): "This account is currently not available\.\\n"$/);
    const chatty = reasons.get('chatty')!;
    assert.match(chatty, /^part db\.sql: command exited with code 2 \(accepted: 0\); stderr was empty; the start of stdout \(first 512 of 100018 bytes\): "ERROR:\\t\\"bad\\"\\u001b\[31m\\nmore lines\\nmore/);
    assert.ok(!chatty.includes('\n') && chatty.length < 1000, `one bounded line: ${chatty.length} characters`);
    const table = (await cluster.bysu(['status'])).stdout;
    assert.match(table, /^nologin\s+FAILING\s.*This account is currently not available\./m);
    recordFault({
      kind: 'fault', fault: 'command fails with an empty stderr (nologin shell)', expected: 'reason carries the start of stdout, bounded (512 bytes), escaped, on one line',
      observed: `nologin: ${JSON.stringify(reasons.get('nologin')!.split('; ').slice(1).join('; '))}; 100 KB of stdout -> a ${chatty.length}-character reason`, pass: true, lost: 0, partialVisible: 0,
    });
  });
});
