/**
 * One run of a snapshot commit in its own process, for tests that stop a
 * committer between two steps: `node --import tsx commit-attempt.ts <repository>
 * <app> <jobId> <startedAt>` writes one small part and commits it. Prints one
 * JSON line: `{ "committed": id, "alreadyCommitted": bool }` or `{ "error": name,
 * "message": … }`, and exits 0 or 3 (CommitConflictError) or 1.
 * BYSU_TEST_STOP_IN_FENCE=<n> stops the process (SIGSTOP) inside the n-th call
 * of the commit's fence (1 is the one before the claim); pair it with
 * test/helpers/stop-before-publish.mjs to stop right before the rename(2).
 */
import { Readable } from 'node:stream';
import { CommitConflictError } from '../../src/errors.ts';
import { SnapshotAttempt } from '../../src/repository/attempt.ts';

const [repository, app, jobId, startedAt] = process.argv.slice(2);
if (!repository || !app || !jobId || !startedAt) {
  process.stderr.write('usage: commit-attempt.ts <repository> <app> <jobId> <startedAt>\n');
  process.exit(2);
}
const stopInFence = Number(process.env.BYSU_TEST_STOP_IN_FENCE ?? 0);
let fenceCalls = 0;
const fence = async () => {
  fenceCalls += 1;
  if (fenceCalls === stopInFence) {
    process.stderr.write(`test: stopping in fence call ${fenceCalls}\n`);
    process.kill(process.pid, 'SIGSTOP');
  }
};

try {
  const attempt = await SnapshotAttempt.open(repository, app, jobId, 1);
  await attempt.writePart('a.sql', Readable.from([Buffer.from(`dump of ${jobId} from ${process.pid}\n`)]), { maxBytes: 1e6, snapshotMaxBytes: 1e6, stallTimeoutMs: 10_000 });
  try {
    const result = await attempt.commit({
      format: 'bysu-snapshot/1', app, node: 'db1', host: '127.0.0.1', trigger: 'manual', jobId, attempt: 1,
      startedAt, finishedAt: startedAt, bytes: 0, bysuVersion: 'test', warnings: [], parts: [],
    }, fence);
    process.stdout.write(`${JSON.stringify({ committed: result.id, alreadyCommitted: result.alreadyCommitted })}\n`);
  } finally {
    await attempt.discard();
  }
} catch (error) {
  process.stdout.write(`${JSON.stringify({ error: (error as Error).name, message: (error as Error).message })}\n`);
  process.exitCode = error instanceof CommitConflictError ? 3 : 1;
}
