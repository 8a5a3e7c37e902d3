/**
 * The part writer on a real filesystem: what its thread writes is byte for
 * byte what went in, with the sha256 `sha256sum` computes, mode 0600, created
 * exclusively; memory per file stays within its batches however fast the
 * source; a failed or aborted file closes its descriptor; files written at
 * once keep their own bytes; a thread that dies fails the open files instead
 * of hanging them, and the next file gets a new thread.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, beforeEach, test } from 'node:test';
import { StorageError } from '../../../src/errors.ts';
import { BATCH_BYTES, BATCHES_PER_FILE, BATCHES_PER_PROCESS, batchPoolUsage, createPartFile, terminatePartWriterThread } from '../../../src/repository/part-writer.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'bysu-part-writer-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
  // Whatever a test did (failures, aborts, a dead thread), every batch is back in the pool once nothing is written.
  const usage = batchPoolUsage();
  assert.equal(usage.free, usage.allocated, `batches lost: ${JSON.stringify(usage)}`);
});

/** The given bytes as a stream of `chunkSize` pieces (the last one shorter). */
function chunked(data: Buffer, chunkSize: number): Readable {
  return Readable.from((function* pieces() {
    for (let offset = 0; offset < data.length; offset += chunkSize) yield data.subarray(offset, offset + chunkSize);
  })());
}

const openDescriptors = async () => (await readdir('/proc/self/fd')).length;

test('writes the bytes exactly, in any chunking; sha256 agrees with sha256sum; mode 0600', async () => {
  const data = randomBytes(3 * BATCH_BYTES + 12345);
  for (const chunkSize of [1 << 20, BATCH_BYTES, BATCH_BYTES + 1, 32 * 1024, 4093]) {
    const file = path.join(dir, `part-${chunkSize}.bin`);
    const sink = createPartFile(file, 0o600);
    await pipeline(chunked(data, chunkSize), sink);
    assert.deepEqual(sink.result, { sha256: createHash('sha256').update(data).digest('hex'), bytes: data.length }, `${chunkSize}-byte chunks`);
    assert.ok((await readFile(file)).equals(data), `${chunkSize}-byte chunks: same bytes on disk`);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const check = spawnSync('sha256sum', ['-c', '-'], { input: `${sink.result!.sha256}  ${file}\n`, encoding: 'utf8' });
    assert.equal(check.status, 0, check.stdout + check.stderr);
  }
});

test('an empty part is an empty file with the sha256 of nothing', async () => {
  const file = path.join(dir, 'empty.sql');
  const sink = createPartFile(file, 0o600);
  await pipeline(Readable.from([]), sink);
  assert.deepEqual(sink.result, { sha256: createHash('sha256').digest('hex'), bytes: 0 });
  assert.equal((await stat(file)).size, 0);
});

test('a file that exists already is never replaced: EEXIST from open, with code and syscall', async () => {
  const file = path.join(dir, 'taken.bin');
  await writeFile(file, 'keep me');
  const sink = createPartFile(file, 0o600);
  await assert.rejects(pipeline(Readable.from([Buffer.from('new')]), sink), (error: NodeJS.ErrnoException) => {
    assert.equal(error.code, 'EEXIST');
    assert.equal(error.syscall, 'open');
    return true;
  });
  assert.equal(await readFile(file, 'utf8'), 'keep me');
});

test('a missing directory fails with ENOENT, not a hang', async () => {
  const sink = createPartFile(path.join(dir, 'no-such-dir', 'part.bin'), 0o600);
  await assert.rejects(pipeline(Readable.from([Buffer.from('x')]), sink), { code: 'ENOENT' });
});

test('memory per file is bounded by its batches, however fast the source', async () => {
  const chunk = randomBytes(64 * 1024);
  const total = 64 * 1024 * 1024;
  let sent = 0;
  // A source that never waits: whatever the writer does not take must stay in the stream's buffers, not pile up in batches.
  const source = new Readable({
    read() {
      this.push(sent < total ? chunk : null);
      sent += chunk.length;
    },
  });
  const sink = createPartFile(path.join(dir, 'fast.bin'), 0o600);
  await pipeline(source, sink);
  assert.equal(sink.result!.bytes, total);
  assert.ok(sink.batchesAllocated <= BATCHES_PER_FILE, `${sink.batchesAllocated} batches allocated, at most ${BATCHES_PER_FILE}`);
  assert.ok(sink.batchesAllocated >= 2, 'batches overlap: one fills while another is written');
});

test('twenty parts at once share the process pool: never more than BATCHES_PER_PROCESS batches', async () => {
  const inputs = Array.from({ length: 20 }, (_, index) => randomBytes(BATCH_BYTES * 6 + index));
  let most = 0;
  const sampler = setInterval(() => (most = Math.max(most, batchPoolUsage().allocated)), 1);
  try {
    const sinks = inputs.map((_, index) => createPartFile(path.join(dir, `many${index}.bin`), 0o600));
    await Promise.all(inputs.map((data, index) => pipeline(chunked(data, 64 * 1024), sinks[index]!)));
    for (const [index, data] of inputs.entries()) assert.equal(sinks[index]!.result!.sha256, createHash('sha256').update(data).digest('hex'), `file ${index}`);
  } finally {
    clearInterval(sampler);
  }
  most = Math.max(most, batchPoolUsage().allocated);
  assert.ok(most <= BATCHES_PER_PROCESS, `${most} batches allocated, at most ${BATCHES_PER_PROCESS}`);
});

test('files written at once keep their own bytes and hashes', async () => {
  const inputs = Array.from({ length: 8 }, (_, index) => randomBytes(BATCH_BYTES * 2 + index * 1000));
  const sinks = inputs.map((_, index) => createPartFile(path.join(dir, `p${index}.bin`), 0o600));
  await Promise.all(inputs.map((data, index) => pipeline(chunked(data, 30_000 + index), sinks[index]!)));
  for (const [index, data] of inputs.entries()) {
    assert.equal(sinks[index]!.result!.sha256, createHash('sha256').update(data).digest('hex'), `file ${index}`);
    assert.ok((await readFile(path.join(dir, `p${index}.bin`))).equals(data), `file ${index} on disk`);
  }
});

test('a source that fails mid-part aborts the file: the error comes through, its descriptor is closed', async () => {
  const before = await openDescriptors();
  const failing = Readable.from((async function* pieces() {
    yield randomBytes(BATCH_BYTES * 3);
    throw new Error('the connection dropped');
  })());
  const sink = createPartFile(path.join(dir, 'cut.bin'), 0o600);
  await assert.rejects(pipeline(failing, sink), /the connection dropped/);
  assert.equal(sink.result, null, 'no result for an aborted file');
  // A failing pipeline does not wait for the thread to close the file; closeFile() does.
  await sink.closeFile();
  assert.equal(sink.closed, true);
  assert.equal(await openDescriptors(), before);
  // The thread goes on serving other files.
  const next = createPartFile(path.join(dir, 'next.bin'), 0o600);
  await pipeline(Readable.from([Buffer.from('after the failure\n')]), next);
  assert.equal(next.result!.bytes, 18);
});

test('a writer thread that dies fails the open files with StorageError; the next file gets a new thread', async () => {
  let sent = 0;
  const endless = new Readable({
    read() {
      sent += 1;
      // Stop the thread once the file is well under way.
      if (sent === 40) void terminatePartWriterThread();
      this.push(randomBytes(64 * 1024));
    },
  });
  const sink = createPartFile(path.join(dir, 'orphan.bin'), 0o600);
  await assert.rejects(pipeline(endless, sink), (error: Error) => {
    assert.ok(error instanceof StorageError, `${error.name}: ${error.message}`);
    assert.match(error.message, /part writer thread stopped/);
    return true;
  });
  const data = randomBytes(BATCH_BYTES + 7);
  const next = createPartFile(path.join(dir, 'after.bin'), 0o600);
  await pipeline(Readable.from([data]), next);
  assert.equal(next.result!.sha256, createHash('sha256').update(data).digest('hex'));
});
