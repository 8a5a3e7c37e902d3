/**
 * What a hostile node can make BYSU store or print: a tar of 50 entries whose
 * names are 256 KiB of control characters (the case, through a real
 * sshd node) must leave a small manifest.json, a small job return value in
 * Redis, and a `bysu status` line that is short and carries no terminal
 * escape sequence.
 */
import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import tar from 'tar-stream';
import { SNAPSHOT_QUEUE } from '../../src/queue/jobs.ts';
import { MAX_WARNING_BYTES, MAX_WARNINGS_PER_PART } from '../../src/repository/manifest.ts';
import { waitForLog, withCluster } from '../helpers/cluster.ts';
import { recordFault } from '../helpers/fault-report.ts';

/** The bound this test holds BYSU to, for a one-part snapshot. */
const STORED_BOUND_BYTES = 64 * 1024;
/**
 * The same archive before the fix (measured at commit 28b6645 with this
 * test's archive): every name stored whole, its control characters
 * JSON-escaped twice; `bysu status` printed the first warning whole, with a
 * raw C1 CSI in it. This test fails there at its first assertion on the
 * warnings (50, not 21).
 */
const BEFORE = { manifestBytes: 91_747_387, returnValueBytes: 91_746_688, statusLineChars: 1_572_958 };

const NAME_BYTES = 256 * 1024;
const ENTRIES = 50;

/** 50 absolute names of 256 KiB: escape sequences (ESC and the one-character C1 CSI), then U+0001 to the end. */
async function nameBomb(): Promise<Buffer> {
  const pack = tar.pack();
  for (let index = 0; index < ENTRIES; index += 1) {
    const head = `/${index}\u001b[2J\u009b31m\u001b]0;pwned\u0007`;
    pack.entry({ name: head + '\u0001'.repeat(NAME_BYTES - Buffer.byteLength(head)) }, 'x');
  }
  pack.finalize();
  return buffer(pack);
}

test('50 entries with 256 KiB names: manifest, job result and status stay small and escaped', async () => {
  await withCluster(['db1'], async (cluster) => {
    const archive = await nameBomb();
    await writeFile(path.join(cluster.nodes[0]!.dir, 'bomb.tar'), archive);
    await cluster.writeConfig([{ name: 'bomb', node: 'db1', attempts: 1, parts: [{ file: 'b.tar', run: 'cat "$NODE_DIR/bomb.tar"' }] }]);
    const worker = cluster.startWorker();
    await waitForLog(worker, 'worker started');
    const result = await cluster.bysu(['snapshot', 'bomb', '--wait'], { timeoutMs: 300_000 });
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, new RegExp(`bomb: committed .*${MAX_WARNINGS_PER_PART + 1} warnings`));

    const manifestFile = path.join(cluster.repository, 'bomb', 'latest', 'manifest.json');
    const manifestBytes = (await stat(manifestFile)).size;
    const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as { warnings: string[] };
    assert.equal(manifest.warnings.length, MAX_WARNINGS_PER_PART + 1);
    assert.equal(manifest.warnings.at(-1), `b.tar: … and ${ENTRIES - MAX_WARNINGS_PER_PART} more warnings`);
    for (const warning of manifest.warnings) {
      assert.ok(Buffer.byteLength(warning) <= MAX_WARNING_BYTES, `a warning of ${Buffer.byteLength(warning)} bytes`);
      assert.doesNotMatch(warning, /[\u0000-\u001f\u007f-\u009f]/, 'control characters are escaped');
    }
    assert.ok(manifestBytes < STORED_BOUND_BYTES, `manifest.json is ${manifestBytes} bytes`);

    // The job's return value as BullMQ stored it in Redis.
    const redis = new Redis(cluster.redis.url, { maxRetriesPerRequest: null });
    let returnBytes: number;
    try {
      const jobKeys = await redis.keys(`${cluster.prefix}:${SNAPSHOT_QUEUE}:*`);
      const values = await Promise.all(jobKeys.map(async (key) => (await redis.type(key)) === 'hash' ? redis.hget(key, 'returnvalue') : null));
      const stored = values.filter((value): value is string => value !== null && value.includes('"warnings"'));
      assert.equal(stored.length, 1, 'one completed snapshot job');
      returnBytes = Buffer.byteLength(stored[0]!);
    } finally {
      redis.disconnect();
    }
    assert.ok(returnBytes < STORED_BOUND_BYTES, `the job's return value is ${returnBytes} bytes`);

    // `bysu status` shows the first warning: cut, and with no escape sequence reaching the terminal.
    const status = await cluster.bysu(['status']);
    const line = status.stdout.split('\n').find((text) => text.startsWith('bomb')) ?? '';
    assert.match(line, /21 warning\(s\): b\.tar: entry "\/0\\u001b\[2J/);
    assert.doesNotMatch(status.stdout, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/, 'no control character but newlines in the output');
    assert.ok(line.length < 1024, `the status line is ${line.length} characters`);

    recordFault({
      kind: 'input',
      fault: `${ENTRIES} tar entries with ${NAME_BYTES / 1024} KiB control-character names (${(archive.length / 1e6).toFixed(1)} MB tar, via sshd)`,
      expected: `manifest.json and job return value < ${STORED_BOUND_BYTES / 1024} KiB; ${MAX_WARNINGS_PER_PART} warnings + 1 count line, each ≤ ${MAX_WARNING_BYTES} bytes; status escaped`,
      observed: `manifest.json ${manifestBytes} bytes, return value ${returnBytes} bytes, ${manifest.warnings.length} warnings, status line ${line.length} chars (before the fix: ${BEFORE.manifestBytes}, ${BEFORE.returnValueBytes}, 50, ${BEFORE.statusLineChars} with a raw CSI)`,
      pass: manifestBytes < STORED_BOUND_BYTES && returnBytes < STORED_BOUND_BYTES,
      tried: 1,
      rejected: 1,
    });
  });
});

// Fails before the central bound in src/workers/node-job.ts (jobFailure): the stderr tail went into the job's
// failedReason, its stack trace and the app's failure record in Redis with its escape sequences raw, so every
// reader (the dashboard, the API, an alert, a terminal) received them; only `bysu status` escaped its own line.
test('a failing command\'s stderr full of escape sequences reaches Redis escaped', async () => {
  await withCluster(['db1'], async (cluster) => {
    const escapes = String.raw`printf '\033]0;pwned\007\033[2J\233' >&2; head -c 100000 /dev/zero | tr '\0' '\033' >&2; exit 1`;
    await cluster.writeConfig([{ name: 'noisy', node: 'db1', attempts: 1, parts: [{ file: 'n.sql', run: escapes }] }]);
    const worker = cluster.startWorker();
    await waitForLog(worker, 'worker started');
    const result = await cluster.bysu(['snapshot', 'noisy', '--wait']);
    assert.equal(result.code, 1, result.stdout + result.stderr);
    const redis = new Redis(cluster.redis.url, { maxRetriesPerRequest: null });
    const stored: string[] = [];
    const stackTraces: string[] = [];
    try {
      for (const key of await redis.keys(`${cluster.prefix}:*`)) {
        if ((await redis.type(key)) !== 'hash') continue;
        for (const [field, value] of Object.entries(await redis.hgetall(key))) {
          if (/failedReason|stacktrace|noisy/.test(field) && /n\.sql/.test(value)) stored.push(value);
          if (field === 'stacktrace') stackTraces.push(value);
        }
      }
    } finally {
      redis.disconnect();
    }
    assert.ok(stored.length >= 2, `failedReason and the failure record: found ${stored.length}`);
    // The job keeps no stack trace at all (Bull Board showed one per attempt); fails before stackTraceLimit 0.
    assert.deepEqual(stackTraces, ['[]'], 'the failed job\'s stack trace is empty');
    const raw = stored.filter((value) => /[\u001b\u0007\u009b]/.test(value));
    const largest = Math.max(...stored.map((value) => Buffer.byteLength(value)));
    recordFault({
      kind: 'input',
      fault: 'failing command: 100 KB of ESC and OSC/CSI sequences on stderr',
      expected: 'failedReason, stack trace and failure record in Redis escaped and bounded',
      observed: `${stored.length} stored reasons, ${raw.length} with a raw escape, largest ${largest} bytes`,
      pass: raw.length === 0 && largest < 16 * 1024,
      tried: 1,
      rejected: raw.length === 0 ? 1 : 0,
    });
    assert.equal(raw.length, 0, 'no raw escape sequence stored in Redis');
    assert.ok(largest < 16 * 1024, `a stored reason of ${largest} bytes`);
  });
});
