/**
 * runDrill against a drill node that logs BYSU in and then goes silent (a
 * fake ssh2 server): it never answers the channel open or the exec request.
 * The drill must end at its timeout (a failed drill result is written) or at
 * the abort (a shutdown: no result, the job goes back), promptly, with the
 * connection closed.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { runDrill } from '../../../src/drill/run-drill.ts';
import { AbortedError, LimitExceededError } from '../../../src/errors.ts';
import { createLogger } from '../../../src/log.ts';
import { initRepository } from '../../../src/repository/marker.ts';
import type { DrillJobData } from '../../../src/queue/jobs.ts';
import { SnapshotAttempt } from '../../../src/repository/attempt.ts';
import { MANIFEST_FORMAT } from '../../../src/repository/layout.ts';
import { BYSU_VERSION } from '../../../src/version.ts';
import { fakeNodeIdentity, startFakeSshServer, within, type FakeSshServer } from '../../helpers/fake-ssh-server.ts';
import { withTempDir } from '../../helpers/processes.ts';

const TIMEOUT_MS = 3000;
/** What "promptly" allows beyond the deadline: timers, writing the result, a loaded machine. */
const MARGIN_MS = 2000;

/** Commit one small snapshot of app `mute` straight through the repository, so the drill has something to restore. */
async function commitSnapshot(repository: string): Promise<void> {
  const attempt = await SnapshotAttempt.open(repository, 'mute', 'seed', 1);
  const body = Buffer.from('CREATE TABLE t (x int);\n');
  const inspection = await attempt.writePart('dump.sql', Readable.from([body]), { maxBytes: 1 << 20, snapshotMaxBytes: 1 << 20, stallTimeoutMs: 5000 });
  const now = new Date().toISOString();
  await attempt.commit({
    format: MANIFEST_FORMAT, app: 'mute', node: 'db', host: '127.0.0.1', trigger: 'manual', jobId: 'seed', attempt: 1,
    startedAt: now, finishedAt: now, bytes: inspection.bytes, bysuVersion: BYSU_VERSION, warnings: [],
    parts: [{ file: 'dump.sql', run: 'pg_dump', bytes: inspection.bytes, sha256: inspection.sha256, exitCode: 0, durationMs: 1 }],
  }, async () => undefined);
}

function job(node: FakeSshServer, timeoutMs: number): DrillJobData {
  return {
    app: 'mute',
    trigger: 'manual',
    node: { name: 'mute', host: '127.0.0.1', port: node.port, user: 'bysu', hostKey: node.hostKey },
    steps: [{ run: 'psql -q scratch', stdin: 'dump.sql' }],
    limits: { timeoutMs, perNode: 1 },
  };
}

function context(repository: string, signal?: AbortSignal) {
  return {
    jobId: 'drill-1', repository, logger: createLogger('silent'), identity: fakeNodeIdentity(), connectTimeoutMs: 10_000,
    ...(signal ? { signal } : {}),
  };
}

for (const silentAt of ['session', 'exec'] as const) {
  const what = silentAt === 'session' ? 'the channel open' : 'the exec request';

  // Fails before the fix: the exec wait had no deadline ("still pending after 7000 ms").
  test(`a drill node that never answers ${what}: the drill fails at its timeout, says so in its result, and closes the connection`, async () => {
    await withTempDir(async (dir) => {
      const repository = path.join(dir, 'repo');
      await initRepository(repository);
      await commitSnapshot(repository);
      const node = await startFakeSshServer(silentAt);
      try {
        const started = Date.now();
        await assert.rejects(within(TIMEOUT_MS + 2 * MARGIN_MS, runDrill(job(node, TIMEOUT_MS), context(repository))), (error: unknown) => {
          assert.ok(error instanceof LimitExceededError, String(error));
          assert.match((error as Error).message, /drill of mute exceeded its timeout of 3000 ms/);
          return true;
        });
        const elapsed = Date.now() - started;
        assert.ok(elapsed >= TIMEOUT_MS - 50 && elapsed < TIMEOUT_MS + MARGIN_MS, `settled after ${elapsed} ms, the timeout is ${TIMEOUT_MS} ms`);
        const results = await readdir(path.join(repository, 'mute', '.drills'));
        assert.equal(results.length, 1);
        const result = JSON.parse(await readFile(path.join(repository, 'mute', '.drills', results[0]!), 'utf8'));
        assert.equal(result.passed, false);
        assert.match(result.error, /exceeded its timeout of 3000 ms/);
        await node.allClosed(3000);
      } finally {
        await node.close();
      }
    });
  });

  // Fails before the fix: a shutdown did not reach the exec wait ("still pending after 4000 ms").
  test(`a drill node that never answers ${what}: a shutdown ends the drill at once with its reason, and writes no result`, async () => {
    await withTempDir(async (dir) => {
      const repository = path.join(dir, 'repo');
      await initRepository(repository);
      await commitSnapshot(repository);
      const node = await startFakeSshServer(silentAt);
      try {
        const shutdown = new AbortController();
        const drill = runDrill(job(node, 60_000), context(repository, shutdown.signal));
        drill.catch(() => undefined);
        await node.silentRequestSeen(10_000);
        const abortedAt = Date.now();
        shutdown.abort(new AbortedError('worker is shutting down'));
        await assert.rejects(within(2 * MARGIN_MS, drill), /worker is shutting down/);
        assert.ok(Date.now() - abortedAt < MARGIN_MS, `settled ${Date.now() - abortedAt} ms after the abort`);
        assert.deepEqual(await readdir(path.join(repository, 'mute', '.drills')).catch(() => []), []);
        await node.allClosed(3000);
      } finally {
        await node.close();
      }
    });
  });
}
