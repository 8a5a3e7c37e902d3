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
 * batches come from one pool per process, shared fairly: each part being
 * written may hold its share of BATCHES_PER_PROCESS (between
 * MIN_BATCHES_PER_FILE and BATCHES_PER_FILE), so memory is bounded whatever
 * the size of the parts, and no part starves another. The stream finishes
 * only once the thread has fsynced and closed the file; `result` then holds
 * its sha256 and size. One thread per process serves every part.
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
/** The most batches one part may hold (filling, queued, being written): 1 MiB, enough to keep one stream flowing. */
export const BATCHES_PER_FILE = 8;
/** What every part may hold however many are written at once: one filling while one is written. */
export const MIN_BATCHES_PER_FILE = 2;
/** Batches of the whole process, shared by the parts written at once (more only with more than 8 parts: 2 each). */
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

/**
 * The process's batches: allocated on demand, reused, and shared fairly among
 * the parts being written. A part that has less than its share and finds no
 * free batch queues; returned batches go to the longest-waiting part first.
 */
class BatchPool {
  private readonly free: ArrayBuffer[] = [];
  private allocated = 0;
  private readonly waiting: (() => void)[] = [];
  /** Parts being written: the shares are counted from it. */
  files = 0;

  /** How many batches one part may hold now. */
  share(): number {
    return Math.min(BATCHES_PER_FILE, Math.max(MIN_BATCHES_PER_FILE, Math.floor(BATCHES_PER_PROCESS / Math.max(1, this.files))));
  }

  /** How many batches there may be now. */
  private size(): number {
    return Math.max(BATCHES_PER_PROCESS, MIN_BATCHES_PER_FILE * this.files);
  }

  /** Whether take() would return a batch now. */
  available(): boolean {
    return this.free.length > 0 || this.allocated < this.size();
  }

  /** A batch, or null when none is free and the pool is at its size. */
  take(): ArrayBuffer | null {
    const buffer = this.free.pop();
    if (buffer !== undefined) return buffer;
    if (this.allocated >= this.size()) return null;
    this.allocated += 1;
    return new ArrayBuffer(BATCH_BYTES);
  }

  /** Return a batch; parts that wait are woken, longest first, while batches may be had. */
  give(buffer: ArrayBuffer): void {
    // After a crowd of parts the pool shrinks back: a batch beyond its size now is dropped.
    if (this.allocated > this.size()) this.allocated -= 1;
    else this.free.push(buffer);
    this.offer();
  }

  /** Call wake once when a batch may be had; at once if one may be had now. */
  wait(wake: () => void): void {
    this.waiting.push(wake);
    this.offer();
  }

  cancel(wake: () => void): void {
    const index = this.waiting.indexOf(wake);
    if (index >= 0) this.waiting.splice(index, 1);
  }

  isWaiting(wake: () => void): boolean {
    return this.waiting.includes(wake);
  }

  /** Fewer parts now: drop free batches beyond the pool's size. */
  trim(): void {
    while (this.allocated > this.size() && this.free.length > 0) {
      this.free.pop();
      this.allocated -= 1;
    }
  }

  /** Batches that will never come back (they were on a thread that died); the room they leave is offered to waiters. */
  lost(count: number): void {
    this.allocated -= count;
    this.offer();
  }

  /**
   * Wake waiters, longest first, while a batch may be had. A woken part that
   * cannot take one (its share shrank meanwhile) waits for one of its own to
   * come back; each waiter present now is woken at most once per call, so
   * this always ends.
   */
  private offer(): void {
    for (let turns = this.waiting.length; turns > 0 && this.available() && this.waiting.length > 0; turns -= 1) this.waiting.shift()!();
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
  /** Batches on the current thread, whoever's they are: written off if it dies. */
  private batchesOut = 0;

  /** Register a file and return its id; the thread keeps the process alive while any file is open. */
  attach(file: PartFile): number {
    const id = this.nextId++;
    this.files.set(id, file);
    pool.files = this.files.size;
    this.start().ref();
    return id;
  }

  detach(id: number): void {
    if (!this.files.delete(id)) return;
    pool.files = this.files.size;
    pool.trim();
    if (this.files.size === 0) this.worker?.unref();
  }

  send(message: object): void {
    this.start().postMessage(message);
  }

  sendBatch(id: number, buffer: ArrayBuffer, length: number): void {
    this.start().postMessage({ type: 'write', id, buffer, length }, [buffer]);
    this.batchesOut += 1;
  }

  /**
   * Stop the thread; files open on it fail with StorageError, the next file
   * starts a new one. A timer holds the event loop open until the thread's
   * 'exit' arrives: on Node 20, with nothing else pending, the loop sometimes
   * counted as empty between terminate() and 'exit', and the process ended
   * with this promise unsettled (9 of 80 runs of the "many parts open and
   * close" test's loop; 0 of 80 with the timer).
   */
  async terminate(): Promise<void> {
    if (this.worker === null) return;
    const holdLoopOpen = setInterval(() => undefined, 60_000);
    try {
      await this.worker.terminate();
    } finally {
      clearInterval(holdLoopOpen);
    }
  }

  private start(): Worker {
    if (this.worker !== null) return this.worker;
    // Its heap holds a few hashes and messages; the batches are outside it.
    const worker = new Worker(THREAD_URL, { resourceLimits: { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 4 } });
    worker.on('message', (message: ThreadMessage) => {
      if (message.type === 'written') this.batchesOut -= 1;
      const file = this.files.get(message.id);
      if (file !== undefined) file.receive(message);
      // A batch of a file that has ended (failed, aborted) comes back after the file let go: the pool's again.
      else if (message.type === 'written') pool.give(message.buffer);
    });
    let failure: Error | null = null;
    worker.on('error', (error) => {
      failure = error;
    });
    worker.on('exit', (code) => {
      if (this.worker !== worker) return;
      this.worker = null;
      const error = new StorageError(`the part writer thread stopped (${failure ? failure.message : `exit code ${code}`})`, { cause: failure });
      const orphans = [...this.files.values()];
      this.files.clear();
      pool.files = 0;
      // First every file is dead, so that none woken below writes on; then the lost batches; then each fails.
      for (const file of orphans) file.markDead(error);
      const lost = this.batchesOut;
      this.batchesOut = 0;
      pool.lost(lost);
      for (const file of orphans) file.threadDied(error);
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

/** For tests: the process's batches allocated and free now. */
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
  private current: Uint8Array | null = null;
  private filled = 0;
  /** The callback waiting for the thread's answer to open, finish or abort. */
  private waitingForAnswer: ((error?: Error | null) => void) | null = null;
  /** A write waiting for a batch (of its own coming back, or from the pool). */
  private waitingForBatch: ((error?: Error | null) => void) | null = null;
  /** Set once nothing more of this file goes to the thread (it let go of it, or died). */
  private threadDone = false;
  /** Set once release() has run: detached, batch given back. */
  private released = false;
  /** Why a write woken after the thread died fails. */
  private deadWith: Error | null = null;

  constructor(readonly target: string, private readonly mode: number) {
    super({ highWaterMark: BATCH_BYTES });
  }

  /** The most batches this file held at once (its share: at most BATCHES_PER_FILE). */
  get batchesAllocated(): number {
    return this.mostInUse;
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
    let onClose: (() => void) | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.once('close', (onClose = resolve))),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
    if (onClose) this.off('close', onClose);
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
    this.waitingForAnswer = () => callback(error);
    thread.send({ type: 'abort', id: this.id });
  }

  /** A message from the thread about this file. */
  receive(message: ThreadMessage): void {
    switch (message.type) {
      case 'opened':
        this.answered();
        break;
      case 'written':
        this.inUse -= 1;
        // Back to the pool, which wakes the longest waiter: this file's own write, or another part's.
        pool.give(message.buffer);
        // A write of ours that waited at its share may now queue for a batch like the others.
        if (this.waitingForBatch !== null && this.inUse < pool.share()) this.queueForBatch(this.waitingForBatch);
        break;
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

  /** The thread is gone (first of two steps): from now on nothing of this file is sent, and a woken write fails with `error`. */
  markDead(error: Error): void {
    this.threadDone = true;
    this.deadWith = error;
  }

  /** The thread is gone: nothing of this file can be trusted to be on disk. */
  threadDied(error: Error): void {
    this.release();
    this.failWith(error);
  }

  /** Copy chunk[offset…] into batches, sending each one that fills; wait for a batch when none may be had. */
  private copyIn(chunk: Buffer, offset: number, callback: (error?: Error | null) => void): void {
    if (this.threadDone) {
      callback(this.deadWith ?? new StorageError(`${this.target}: the part writer has let go of this file`));
      return;
    }
    while (offset < chunk.length) {
      if (this.current === null) {
        const buffer = this.takeBatch();
        if (buffer === null) {
          const retry = (error?: Error | null) => {
            // Woken once, by whichever comes first: a batch that may be had, or a failure.
            if (this.waitingForBatch !== retry) return;
            this.waitingForBatch = null;
            pool.cancel(retry);
            if (error) callback(error);
            else this.copyIn(chunk, offset, callback);
          };
          this.waitingForBatch = retry;
          // Below its share it queues at the pool; at its share, only a batch of its own coming back lets it queue.
          if (this.inUse < pool.share()) this.queueForBatch(retry);
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

  /** Queue the waiting write at the pool, keeping its place if it is queued already. */
  private queueForBatch(retry: () => void): void {
    if (!pool.isWaiting(retry)) pool.wait(retry);
  }

  /** A batch if this file is below its share and one is free (or may be allocated), else null. */
  private takeBatch(): ArrayBuffer | null {
    if (this.inUse >= pool.share()) return null;
    const buffer = pool.take();
    if (buffer === null) return null;
    this.inUse += 1;
    this.mostInUse = Math.max(this.mostInUse, this.inUse);
    return buffer;
  }

  private sendCurrent(): void {
    thread.sendBatch(this.id, this.current!.buffer as ArrayBuffer, this.filled);
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

  /** The thread has let go of the file: detach, and give back the batch that was filling. */
  private release(): void {
    if (this.released) return;
    this.released = true;
    this.threadDone = true;
    thread.detach(this.id);
    if (this.current !== null) {
      const buffer = this.current.buffer as ArrayBuffer;
      this.current = null;
      this.inUse -= 1;
      pool.give(buffer);
    }
  }
}
