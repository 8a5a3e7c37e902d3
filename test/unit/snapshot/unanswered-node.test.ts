/**
 * takeSnapshot against a node that logs BYSU in and then goes silent (a fake
 * ssh2 server): it never answers the channel open, never answers the exec
 * request, or grants the command and sends nothing. Every such wait must end
 * with the snapshot's timeout (or its stallTimeout) or the abort, promptly,
 * with nothing left behind: no attempt directory, no open connection. In the
 * worker, the node slot is released in the `finally` after takeSnapshot
 * settles, so settling is what frees the slot.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { AbortedError, LimitExceededError } from '../../../src/errors.ts';
import { createLogger } from '../../../src/log.ts';
import { initRepository } from '../../../src/repository/marker.ts';
import type { SnapshotJobData } from '../../../src/queue/jobs.ts';
import { takeSnapshot } from '../../../src/snapshot/take-snapshot.ts';
import { fakeNodeIdentity, startFakeSshServer, within, type FakeSshServer, type SilentAt } from '../../helpers/fake-ssh-server.ts';
import { withTempDir } from '../../helpers/processes.ts';

const TIMEOUT_MS = 3000;
/** What "promptly" allows beyond the deadline: timers, the attempt's removal, a loaded machine. */
const MARGIN_MS = 2000;

function job(node: FakeSshServer, limits: Partial<SnapshotJobData['limits']> = {}): SnapshotJobData {
  return {
    app: 'mute',
    trigger: 'manual',
    node: { name: 'mute', host: '127.0.0.1', port: node.port, user: 'bysu', hostKey: node.hostKey },
    parts: [{ file: 'dump.sql', run: 'pg_dump shop', okExitCodes: [0] }],
    limits: { timeoutMs: TIMEOUT_MS, stallTimeoutMs: 60_000, maxBytes: 1 << 20, perNode: 1, ...limits },
    keep: 3,
    shrinkWarn: 0,
  };
}

async function withSilentNode(silentAt: SilentAt, fn: (node: FakeSshServer, repository: string) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const repository = path.join(dir, 'repo');
    await initRepository(repository);
    const node = await startFakeSshServer(silentAt);
    try {
      await fn(node, repository);
      // Nothing left: the connection is closed on the node's side too, and the attempt is gone.
      await node.allClosed(3000);
      assert.deepEqual(await readdir(path.join(repository, 'mute', '.incoming')), []);
    } finally {
      await node.close();
    }
  });
}

function context(repository: string, signal?: AbortSignal) {
  return {
    jobId: 'job-1',
    attempt: 1,
    repository,
    logger: createLogger('silent'),
    identity: fakeNodeIdentity(),
    connectTimeoutMs: 10_000,
    fence: async () => undefined,
    ...(signal ? { signal } : {}),
  };
}

for (const silentAt of ['session', 'exec'] as const) {
  const what = silentAt === 'session' ? 'the channel open' : 'the exec request';

  // Fails before the fix: the exec wait had no deadline, and takeSnapshot was "still pending after 7000 ms" (the issue saw 25 s).
  test(`a node that never answers ${what}: the snapshot fails at its timeout and closes the connection`, async () => {
    await withSilentNode(silentAt, async (node, repository) => {
      const started = Date.now();
      await assert.rejects(within(TIMEOUT_MS + 2 * MARGIN_MS, takeSnapshot(job(node), context(repository))), (error: unknown) => {
        assert.ok(error instanceof LimitExceededError, String(error));
        assert.match((error as Error).message, /snapshot of mute exceeded its timeout of 3000 ms/);
        return true;
      });
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= TIMEOUT_MS - 50 && elapsed < TIMEOUT_MS + MARGIN_MS, `settled after ${elapsed} ms, the timeout is ${TIMEOUT_MS} ms`);
      assert.equal(node.requests().sessions, 1, 'the login worked and the session was asked for');
    });
  });

  // Fails before the fix: a shutdown did not reach the exec wait ("still pending after 4000 ms").
  test(`a node that never answers ${what}: an abort (shutdown) ends the snapshot at once with its reason`, async () => {
    await withSilentNode(silentAt, async (node, repository) => {
      const shutdown = new AbortController();
      const snapshot = takeSnapshot(job(node, { timeoutMs: 60_000 }), context(repository, shutdown.signal));
      snapshot.catch(() => undefined);
      // Abort only once the node holds the request unanswered, so that it is that wait the abort must end.
      await node.silentRequestSeen(10_000);
      const abortedAt = Date.now();
      shutdown.abort(new AbortedError('worker is shutting down'));
      await assert.rejects(within(2 * MARGIN_MS, snapshot), /worker is shutting down/);
      assert.ok(Date.now() - abortedAt < MARGIN_MS, `settled ${Date.now() - abortedAt} ms after the abort`);
    });
  });
}

// Passes before the fix too: a granted command that sends nothing was already bounded by stallTimeout; kept so it stays so.
test('a node that grants the command and then sends nothing: the part fails at its stallTimeout', async () => {
  await withSilentNode('output', async (node, repository) => {
    // The message says which limit ended it: the stallTimeout (1 s), well before the snapshot's timeout (20 s).
    await assert.rejects(within(TIMEOUT_MS + 2 * MARGIN_MS, takeSnapshot(job(node, { stallTimeoutMs: 1000, timeoutMs: 20_000 }), context(repository))), (error: unknown) => {
      assert.ok(error instanceof LimitExceededError, String(error));
      assert.match((error as Error).message, /no data received for 1000 ms \(stallTimeout\)/);
      assert.doesNotMatch((error as Error).message, /exceeded its timeout/);
      return true;
    });
    assert.deepEqual(node.requests(), { sessions: 1, execs: 1 });
  });
});
