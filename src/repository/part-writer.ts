/**
 * Part files are hashed and written on a worker thread, off the event loop
 * that runs ssh2. Measured on the 2-core machines (BENCHMARKS.md): with both
 * on the event loop, sha256 (0.6–0.9 s per GiB) and fs.WriteStream, whose
 * every 32 KiB chunk is a round trip through libuv's threadpool (1.1–1.5 s of
 * system time per GiB, against 0.3 s for the same bytes in large writes from
 * one thread), held one stream at 220–310 MiB/s while ssh2 alone reads 1 GiB/s.
 *
 * A PartFile is a Writable: chunks are copied into batches of BATCH_BYTES,
 * which travel to the thread and back (transferred, never copied). The
 * batches come from one pool per process (BATCHES_PER_PROCESS, 2 MiB), at most
 * BATCHES_PER_FILE to a file, so memory is bounded whatever the size or number
 * of parts. The stream finishes only once the thread has fsynced and closed
 * the file; `result` then holds its sha256 and size. One thread per process
 * serves every part being written.
 */
import { Writable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { StorageError } from '../errors.ts';

/**
 * Bytes per batch sent to the thread. Measured (median of 5 × 1 GiB): 128 KiB
 * costs the least CPU; 64 KiB adds messages, 512 KiB and 1 MiB add 0.6–1.3 CPU
 * seconds per GiB (the batches no longer stay in the CPU caches between the copy
 * here and the hash and write there).
 */
export const BATCH_BYTES = 128 * 1024;
/** Batches one file may have in use (filling, queued, being written): 1 MiB, enough to keep one stream flowing. */
export const BATCHES_PER_FILE = 8;
/** Batches of the whole process, shared by the parts being written at once: 2 MiB. */
export const BATCHES_PER_PROCESS = 16;

const THREAD_URL = new URL('./part-writer-thread.js', import.meta.url);

interface ThreadError {
  message: string;
  code?: string;
  syscall?: string;
  errno?: number;
  path?: string;
}

type ThreadMessage =
  | { type: 'opened' | 'aborted'; id: number }
  | { type: 'written'; id: number; buffer: ArrayBuffer }
  | { type: 'finished'; id: number; sha256: string; bytes: number }
  | { type: 'error'; id: number; error: ThreadError };

/** Rebuild an fs error from the thread, with code and syscall, so that storageError() can name it. */
function errorFromThread(error: ThreadError): NodeJS.ErrnoException {
  const rebuilt: NodeJS.ErrnoException = new Error(error.message);
  if (error.code !== undefined) rebuilt.code = error.code;
  if (error.syscall !== undefined) rebuilt.syscall = error.syscall;
  if (error.errno !== undefined) rebuilt.errno = error.errno;
  if (error.path !== undefined) rebuilt.path = error.path;
  return rebuilt;
}

/** The process's batches: allocated on demand up to BATCHES_PER_PROCESS, reused, handed to waiting files in turn. */
class BatchPool {
  private readonly free: ArrayBuffer[] = [];
  private allocated = 0;
  private readonly waiting: (() => void)[] = [];

  /** A batch, or null when all are in use (then wait()). */
  take(): ArrayBuffer | null {
    const buffer = this.free.pop();
    if (buffer !== undefined) return buffer;
    if (this.allocated >= BATCHES_PER_PROCESS) return null;
    this.allocated += 1;
    return new ArrayBuffer(BATCH_BYTES);
  }

  /** Return a batch; the file that has waited longest may take it. */
  give(buffer: ArrayBuffer): void {
    this.free.push(buffer);
    this.waiting.shift()?.();
  }

  /** Call wake once when a batch has come back. */
  wait(wake: () => void): void {
    this.waiting.push(wake);
  }

  cancel(wake: () => void): void {
    const index = this.waiting.indexOf(wake);
    if (index >= 0) this.waiting.splice(index, 1);
  }

  /** Batches that will never come back (they were on a thread that died). */
  lost(count: number): void {
    this.allocated -= count;
    for (let index = 0; index < count; index += 1) this.waiting.shift()?.();
  }

  /** For tests: batches allocated and free right now. */
  get usage(): { allocated: number; free: number } {
    return { allocated: this.allocated, free: this.free.length };
  }
}

const pool = new BatchPool();

/** The process's writer thread: started with the first file, kept (unreferenced) while idle, replaced if it dies. */
class WriterThread {
  private worker: Worker | null = null;
  private readonly files = new Map<number, PartFile>();
  private nextId = 1;

  /** Register a file and return its id; the thread keeps the process alive while any file is open. */
  attach(file: PartFile): number {
    const id = this.nextId++;
    this.files.set(id, file);
    this.start().ref();
    return id;
  }

  detach(id: number): void {
    this.files.delete(id);
    if (this.files.size === 0) this.worker?.unref();
  }

  send(message: object, transfer: ArrayBuffer[] = []): void {
    this.start().postMessage(message, transfer);
  }

  /** Stop the thread; files open on it fail with StorageError, the next file starts a new one. */
  async terminate(): Promise<void> {
    await this.worker?.terminate();
  }

  private start(): Worker {
    if (this.worker !== null) return this.worker;
    // Its heap holds a few hashes and messages; the batches are outside it.
    const worker = new Worker(THREAD_URL, { resourceLimits: { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 4 } });
    worker.on('message', (message: ThreadMessage) => {
      const file = this.files.get(message.id);
      if (file !== undefined) file.receive(message);
      // A batch of a file that failed (or was aborted) comes back after the file let go: it is the pool's again.
      else if (message.type === 'written') pool.give(message.buffer);
    });
    let failure: Error | null = null;
    worker.on('error', (error) => {
      failure = error;
    });
    worker.on('exit', (code) => {
      if (this.worker === worker) this.worker = null;
      const error = new StorageError(`the part writer thread stopped (${failure ? failure.message : `exit code ${code}`})`, { cause: failure });
      for (const file of [...this.files.values()]) file.threadDied(error);
    });
    this.worker = worker;
    return worker;
  }
}

const thread = new WriterThread();

/**
 * Stop the writer thread (tests use it to prove that a dying thread fails the
 * files open on it instead of hanging them). Resolves when it has stopped.
 */
export function terminatePartWriterThread(): Promise<void> {
  return thread.terminate();
}

/** For tests: the process's batches allocated (≤ BATCHES_PER_PROCESS) and free now. */
export function batchPoolUsage(): { allocated: number; free: number } {
  return pool.usage;
}

/** Given a path and a file mode, create the file exclusively (it must not exist) and return a stream that writes it. */
export function createPartFile(target: string, mode: number): PartFile {
  return new PartFile(target, mode);
}

/** A part file being written by the writer thread (see the module comment). */
export class PartFile extends Writable {
  /** The file's sha256 (hex) and size, once the stream has finished: fsynced and closed. */
  result: { sha256: string; bytes: number } | null = null;
  private id = 0;
  /** Batches this file holds: the one filling and those on the thread. */
  private inUse = 0;
  private mostInUse = 0;
  /** The most batches this file held at once (≤ BATCHES_PER_FILE). */
  get batchesAllocated(): number {
    return this.mostInUse;
  }
  private current: Uint8Array | null = null;
  private filled = 0;
  /** The callback waiting for the thread's answer to open, finish or abort. */
  private waitingForAnswer: ((error?: Error | null) => void) | null = null;
  /** A write waiting for a batch to come back. */
  private waitingForBatch: ((error?: Error | null) => void) | null = null;
  /** Set once the thread has no state for this file any more (finished, failed, aborted or dead). */
  private threadDone = false;

  constructor(readonly target: string, private readonly mode: number) {
    super({ highWaterMark: BATCH_BYTES });
  }

  /**
   * Destroy the stream unless it has finished, and resolve once the thread has
   * closed the file (a pipeline that fails does not wait for that), or after
   * timeoutMs if the thread does not answer (a hung disk).
   */
  async closeFile(timeoutMs = 30_000): Promise<void> {
    if (this.closed) return;
    if (!this.destroyed) this.destroy();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise((resolve) => this.once('close', resolve)),
      new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
  }

  override _construct(callback: (error?: Error | null) => void): void {
    this.id = thread.attach(this);
    this.waitingForAnswer = callback;
    thread.send({ type: 'open', id: this.id, path: this.target, mode: this.mode });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.copyIn(chunk, 0, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.filled > 0) this.sendCurrent();
    this.waitingForAnswer = callback;
    thread.send({ type: 'finish', id: this.id });
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.threadDone || this.id === 0) {
      callback(error);
      return;
    }
    // Whatever waited is superseded by the destroy; the thread closes the file and says so.
    if (this.waitingForBatch !== null) pool.cancel(this.waitingForBatch);
    this.waitingForBatch = null;
    this.waitingForAnswer = () => {
      this.release();
      callback(error);
    };
    thread.send({ type: 'abort', id: this.id });
  }

  /** A message from the thread about this file. */
  receive(message: ThreadMessage): void {
    switch (message.type) {
      case 'opened':
        this.answered();
        break;
      case 'written': {
        this.inUse -= 1;
        // Our own write first, if it waits only for this file's limit; then whoever waits on the pool.
        const waiting = this.waitingForBatch;
        if (waiting !== null) {
          this.free = message.buffer;
          waiting();
        } else {
          pool.give(message.buffer);
        }
        break;
      }
      case 'finished':
        this.result = { sha256: message.sha256, bytes: message.bytes };
        this.release();
        this.answered();
        break;
      case 'aborted':
        this.release();
        this.answered();
        break;
      case 'error':
        this.release();
        this.failWith(errorFromThread(message.error));
        break;
    }
  }

  /** The thread is gone: nothing of this file can be trusted to be on disk, and its batches there are lost. */
  threadDied(error: Error): void {
    const lost = this.inUse - (this.current === null ? 0 : 1);
    this.release();
    this.failWith(error);
    // Last: this wakes files waiting for a batch, and this one must not be among those that go on.
    pool.lost(lost);
  }

  /** Copy chunk[offset…] into batches, sending each one that fills; wait for a free batch when all are in use. */
  private copyIn(chunk: Buffer, offset: number, callback: (error?: Error | null) => void): void {
    if (this.threadDone) {
      callback(new StorageError(`${this.target}: written to after the part writer let go of it`));
      return;
    }
    while (offset < chunk.length) {
      if (this.current === null) {
        const buffer = this.takeBatch();
        if (buffer === null) {
          const retry = (error?: Error | null) => {
            // Woken once, by whichever comes first: a batch of its own, one from the pool, or a failure.
            if (this.waitingForBatch !== retry) return;
            this.waitingForBatch = null;
            pool.cancel(retry);
            if (error) callback(error);
            else this.copyIn(chunk, offset, callback);
          };
          this.waitingForBatch = retry;
          // At its own limit, only its own batches coming back can help; else any batch of the pool.
          if (this.inUse < BATCHES_PER_FILE) pool.wait(retry);
          return;
        }
        this.current = new Uint8Array(buffer);
        this.filled = 0;
      }
      const take = Math.min(chunk.length - offset, BATCH_BYTES - this.filled);
      this.current.set(chunk.subarray(offset, offset + take), this.filled);
      this.filled += take;
      offset += take;
      if (this.filled === BATCH_BYTES) this.sendCurrent();
    }
    callback();
  }

  /** A batch handed back directly by receive('written'), for the write that waited for it. */
  private free: ArrayBuffer | null = null;

  private takeBatch(): ArrayBuffer | null {
    let buffer: ArrayBuffer | null = this.free;
    this.free = null;
    if (buffer === null) {
      if (this.inUse >= BATCHES_PER_FILE) return null;
      buffer = pool.take();
      if (buffer === null) return null;
    }
    this.inUse += 1;
    this.mostInUse = Math.max(this.mostInUse, this.inUse);
    return buffer;
  }

  private sendCurrent(): void {
    const buffer = this.current!.buffer as ArrayBuffer;
    thread.send({ type: 'write', id: this.id, buffer, length: this.filled }, [buffer]);
    this.current = null;
    this.filled = 0;
  }

  private answered(error?: Error): void {
    const waiting = this.waitingForAnswer;
    this.waitingForAnswer = null;
    waiting?.(error);
  }

  /** Fail whatever waits on the thread (which errors the stream), or else destroy the stream. */
  private failWith(error: Error): void {
    if (this.waitingForAnswer !== null) this.answered(error);
    // A write waiting for a batch clears itself when woken.
    else if (this.waitingForBatch !== null) this.waitingForBatch(error);
    else this.destroy(error);
  }

  /** The thread has let go of the file: detach, and give back the batch that was filling, and one handed back for a write. */
  private release(): void {
    if (this.threadDone) return;
    this.threadDone = true;
    thread.detach(this.id);
    if (this.current !== null) {
      pool.give(this.current.buffer as ArrayBuffer);
      this.current = null;
      this.inUse -= 1;
    }
    if (this.free !== null) {
      pool.give(this.free);
      this.free = null;
    }
  }
}
