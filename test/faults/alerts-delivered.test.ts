/**
 * Fault: the alert of a final failure must reach the webhook even when its
 * sender cannot finish the job: the worker is killed (-9) while the POST is
 * in flight, the webhook is down for longer than every retry, or the worker
 * is stopped (SIGTERM) just as the job fails. Each was found by attack after
 * issue 11's first fixes: the failure was recorded and `bysu status` said
 * FAILING, but no `failed` webhook was ever delivered.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { waitForLog, withCluster } from '../helpers/cluster.ts';
import { recordFault } from '../helpers/fault-report.ts';
import { startHttpRecorder, type HttpRecorder } from '../helpers/http-recorder.ts';
import { waitUntil } from '../helpers/processes.ts';

const failedHooks = (recorder: HttpRecorder, app: string) =>
  recorder.requests.filter((request) => request.path === '/hook' && (request.body as { app?: string; event?: string } | null)?.event === 'failed' && (request.body as { app: string }).app === app);

// Fails before the fix: the alert state was set to "failing" before delivery, so the dead sender's alert counted as
// sent: nothing ever re-sent it (the scheduler re-checked only stale apps, and the app's next failure was deduplicated).
test('the worker is killed (-9) while the failed webhook is in flight: the scheduler sends it once the delivery bound passes', async () => {
  const recorder = await startHttpRecorder();
  try {
    await withCluster(['db1'], async (cluster) => {
      // timeout 2s: a delivery (4 tries) is over within 2 s × 4 + 13 s + 1 s; after that a "sending" mark is stale.
      await cluster.writeConfig(
        [{ name: 'boom', node: 'db1', attempts: 1, schedule: '0 0 1 1 *', parts: [{ file: 'a.sql', run: 'echo broken >&2; exit 1' }] }],
        { notify: { webhook: `${recorder.url}/hook`, timeout: '2s', staleCheckInterval: '1s' } },
      );
      const scheduler = cluster.startProcess(['scheduler']);
      await waitForLog(scheduler, 'scheduler started');
      recorder.answer('hang');
      const worker = cluster.startWorker();
      await waitForLog(worker, 'worker started');
      await cluster.bysu(['snapshot', 'boom']);
      await waitUntil('the POST in flight', async () => failedHooks(recorder, 'boom').length === 1, 30_000);
      const exited = once(worker, 'exit');
      worker.kill('SIGKILL');
      await exited;
      const killedAt = Date.now();
      recorder.answer('ok');
      await waitUntil('the failure to be announced again', async () => failedHooks(recorder, 'boom').length >= 2, 60_000).catch(() => undefined);
      const delivered = failedHooks(recorder, 'boom').length - 1;
      const afterS = ((Date.now() - killedAt) / 1000).toFixed(1);
      await new Promise((resolve) => setTimeout(resolve, 3000)); // and no more than once
      const total = failedHooks(recorder, 'boom').length - 1;
      recordFault({
        kind: 'fault',
        fault: 'worker killed (-9) while its failed webhook is in flight',
        expected: 'the scheduler sends the alert once the delivery bound has passed; once',
        observed: `${total} delivered after the kill (the first ${afterS} s after it)`,
        pass: delivered === 1 && total === 1,
      });
      assert.equal(total, 1, `failed webhooks after the kill: ${total}`);
    });
  } finally {
    await recorder.close();
  }
});

// Fails before the fix: the notifier put the old state back "so that the next check alerts again", but no check ever
// re-reported a failing app: the alert waited for the app's next final failure (a day, or never for an ad-hoc app).
test('the webhook is down for longer than every retry, then back: the failed alert is sent once when it is back', async () => {
  const recorder = await startHttpRecorder();
  try {
    await withCluster(['db1'], async (cluster) => {
      await cluster.writeConfig(
        [{ name: 'down', node: 'db1', attempts: 1, schedule: '0 0 1 1 *', parts: [{ file: 'a.sql', run: 'echo broken >&2; exit 1' }] }],
        { notify: { webhook: `${recorder.url}/hook`, timeout: '2s', staleCheckInterval: '1s' } },
      );
      recorder.answer('down');
      const worker = cluster.startWorker();
      await waitForLog(worker, 'worker started');
      await cluster.bysu(['snapshot', 'down', '--wait']);
      await waitForLog(worker, 'delivery failed"', 60_000);
      const triesWhileDown = failedHooks(recorder, 'down').length;
      recorder.answer('ok');
      const scheduler = cluster.startProcess(['scheduler']);
      await waitForLog(scheduler, 'scheduler started');
      await waitUntil('the alert to be sent again', async () => failedHooks(recorder, 'down').length > triesWhileDown, 30_000).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 3000));
      const after = failedHooks(recorder, 'down').length - triesWhileDown;
      const status = await cluster.bysu(['status']);
      recordFault({
        kind: 'fault',
        fault: 'webhook down (503) past every retry, then back',
        expected: 'the failed alert sent once when it is back; status FAILING',
        observed: `${triesWhileDown} tries while down, ${after} delivered after; status exit ${status.code}`,
        pass: after === 1 && status.code === 1,
      });
      assert.equal(after, 1);
      assert.equal(status.code, 1);
    });
  } finally {
    await recorder.close();
  }
});

// Fails before the fix: the failed handler's record-and-alert was not awaited by close(), which closed the Redis
// connection under it ("cannot record the failure: Connection is closed"): status said FAILING, no webhook was sent.
test('a job fails for good during the SIGTERM grace period: recorded and alerted before the worker exits', async () => {
  const recorder = await startHttpRecorder();
  try {
    await withCluster(['db1'], async (cluster) => {
      await cluster.writeConfig(
        [{ name: 'term', node: 'db1', attempts: 1, parts: [{ file: 'a.sql', run: 'sleep 3; echo broken >&2; exit 1' }] }],
        { shutdownGrace: '30s', notify: { webhook: `${recorder.url}/hook` } },
      );
      const worker = cluster.startWorker();
      await waitForLog(worker, 'worker started');
      await cluster.bysu(['snapshot', 'term']);
      await waitForLog(worker, 'part started');
      const exited = once(worker, 'exit');
      worker.kill('SIGTERM');
      const [code] = await exited;
      const status = await cluster.bysu(['status']);
      const hooks = failedHooks(recorder, 'term').length;
      recordFault({
        kind: 'fault',
        fault: 'job fails for good during the SIGTERM grace period',
        expected: 'worker exits 0 after recording it; status FAILING; one failed webhook',
        observed: `worker exit ${code}; status exit ${status.code}; ${hooks} webhook(s)`,
        pass: code === 0 && status.code === 1 && hooks === 1,
      });
      assert.equal(code, 0);
      assert.equal(status.code, 1, status.stdout);
      assert.equal(hooks, 1);
    });
  } finally {
    await recorder.close();
  }
});
