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
import { mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, beforeEach, test } from 'node:test';
import { StorageError } from '../../../src/errors.ts';
import { BATCH_BYTES, BATCHES_PER_FILE, BATCHES_PER_PROCESS, batchPoolUsage, createPartFile, MIN_BATCHES_PER_FILE, terminatePartWriterThread, type PartFile } from '../../../src/repository/part-writer.ts';

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

/** A source that never waits and never ends (until destroyed). */
function endless(): Readable {
  const chunk = randomBytes(64 * 1024);
  return new Readable({
    read() {
      this.push(chunk);
    },
  });
}

/** Descriptors of this process open on files under dir. */
async function openUnder(where: string): Promise<string[]> {
  const targets = await Promise.all((await readdir('/proc/self/fd')).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')));
  return targets.filter((target) => target.startsWith(where));
}

for (const parts of [8, 20]) {
  test(`${parts} parts at once share the process pool: at most max(${BATCHES_PER_PROCESS}, ${MIN_BATCHES_PER_FILE} per part) batches`, async () => {
    const inputs = Array.from({ length: parts }, (_, index) => randomBytes(BATCH_BYTES * 6 + index));
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
    const bound = Math.max(BATCHES_PER_PROCESS, MIN_BATCHES_PER_FILE * parts);
    assert.ok(most <= bound, `${most} batches allocated, at most ${bound}`);
  });
}

test('a part that starts next to two fast ones gets its share at once instead of waiting for them to end', async () => {
  const fast = [createPartFile(path.join(dir, 'fast1.bin'), 0o600), createPartFile(path.join(dir, 'fast2.bin'), 0o600)];
  const running = fast.map((sink) => pipeline(endless(), sink).catch(() => 'stopped'));
  try {
    await new Promise((resolve) => setTimeout(resolve, 200));
    const data = randomBytes(4 * 1024 * 1024);
    const late = createPartFile(path.join(dir, 'late.bin'), 0o600);
    let timer: NodeJS.Timeout | undefined;
    const verdict = await Promise.race([
      pipeline(chunked(data, 64 * 1024), late).then(() => 'done'),
      new Promise((resolve) => (timer = setTimeout(() => resolve('starved'), 20_000))),
    ]);
    clearTimeout(timer);
    assert.equal(verdict, 'done', 'the late part finished while the fast ones were still writing');
    assert.equal(late.result!.sha256, createHash('sha256').update(data).digest('hex'));
    assert.ok(fast.every((sink) => !sink.writableFinished), 'the fast parts were still running');
  } finally {
    for (const sink of fast) sink.destroy();
    await Promise.all(running);
    await Promise.all(fast.map((sink) => sink.closeFile()));
  }
});

test('destroyed while its closing fsync runs, a part is closed by the time closeFile() returns', async () => {
  const sink = createPartFile(path.join(dir, 'closing.bin'), 0o600);
  // As a stall timer or a shutdown would, right after the stream ended.
  const final = sink._final.bind(sink);
  sink._final = (callback) => {
    final(callback);
    setImmediate(() => sink.destroy(new Error('aborted during the closing fsync')));
  };
  const data = Buffer.alloc(32 * 1024 * 1024, 1);
  await pipeline(chunked(data, 1 << 20), sink).catch(() => undefined);
  await sink.closeFile();
  assert.deepEqual(await openUnder(dir), [], 'no descriptor open on the part');
});

test('the thread dies while several parts write and wait for batches: all fail, the pool is whole again, new parts work', async () => {
  const sinks: PartFile[] = [0, 1, 2, 3].map((index) => createPartFile(path.join(dir, `dying${index}.bin`), 0o600));
  const runs = sinks.map((sink) => pipeline(endless(), sink).then(() => null, (error: Error) => error));
  await new Promise((resolve) => setTimeout(resolve, 300));
  await terminatePartWriterThread();
  for (const error of await Promise.all(runs)) assert.ok(error instanceof StorageError, `${error?.name}: ${error?.message}`);
  await Promise.all(sinks.map((sink) => sink.closeFile()));
  const usage = batchPoolUsage();
  assert.equal(usage.free, usage.allocated, `no batch counted twice or lost: ${JSON.stringify(usage)}`);
  const inputs = [0, 1, 2].map(() => randomBytes(3 * 1024 * 1024));
  const next = inputs.map((_, index) => createPartFile(path.join(dir, `after-death${index}.bin`), 0o600));
  await Promise.all(inputs.map((data, index) => pipeline(chunked(data, 64 * 1024), next[index]!)));
  for (const [index, data] of inputs.entries()) assert.equal(next[index]!.result!.sha256, createHash('sha256').update(data).digest('hex'));
  assert.ok(batchPoolUsage().allocated <= BATCHES_PER_PROCESS, JSON.stringify(batchPoolUsage()));
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

test('the thread dies while many parts open and close: afterwards no descriptor of theirs is open', async () => {
  for (let round = 0; round < 20; round += 1) {
    await pipeline(Readable.from([Buffer.from('x')]), createPartFile(path.join(dir, `warm${round}.bin`), 0o600));
    const sinks = Array.from({ length: 200 }, (_, index) => createPartFile(path.join(dir, `r${round}-${index}.sql`), 0o600));
    const runs = sinks.map((sink) => pipeline(Readable.from([Buffer.alloc(10)]), sink).catch(() => undefined));
    // Let the thread get some way into the opens and closes: a different way each round.
    for (const started = Date.now(); Date.now() - started < round % 5;);
    await new Promise((resolve) => setImmediate(resolve));
    await terminatePartWriterThread();
    await Promise.all(runs);
    await Promise.all(sinks.map((sink) => sink.closeFile()));
    assert.deepEqual(await openUnder(dir), [], `round ${round}: descriptors left open`);
  }
});
