/**
 * Part files are hashed and written on a worker thread, off the event loop
 * that runs ssh2. Measured on the 2-core machines (BENCHMARKS.md): with both
 * on the event loop, sha256 (0.6–0.9 s per GiB) and fs.WriteStream, whose
 * every 32 KiB chunk is a round trip through libuv's threadpool (1.1–1.5 s of
 * system time per GiB, against 0.3 s for the same bytes in large writes from
 * one thread), held one stream at 220–310 MiB/s while ssh2 alone reads 1 GiB/s.
 *
 * A PartFile is a Writable: chunks are copied into batches of BATCH_BYTES,
 * which travel to the thread and back (transferred, never copied), at most
 * BATCHES_PER_FILE of them per file, so memory per part is bounded whatever
 * its size. The stream finishes only once the thread has fsynced and closed
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
/** Batches one file may have in use (filling, queued, being written): 1 MiB per part. */
export const BATCHES_PER_FILE = 8;

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
    worker.on('message', (message: ThreadMessage) => this.files.get(message.id)?.receive(message));
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

/** Given a path and a file mode, create the file exclusively (it must not exist) and return a stream that writes it. */
export function createPartFile(target: string, mode: number): PartFile {
  return new PartFile(target, mode);
}

/** A part file being written by the writer thread (see the module comment). */
export class PartFile extends Writable {
  /** The file's sha256 (hex) and size, once the stream has finished: fsynced and closed. */
  result: { sha256: string; bytes: number } | null = null;
  private id = 0;
  private readonly free: ArrayBuffer[] = [];
  private batches = 0;
  /** The most batches this file had in use at once (≤ BATCHES_PER_FILE: its memory bound). */
  get batchesAllocated(): number {
    return this.batches;
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
        this.free.push(message.buffer);
        const waiting = this.waitingForBatch;
        this.waitingForBatch = null;
        waiting?.();
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

  /** The thread is gone: nothing of this file can be trusted to be on disk. */
  threadDied(error: Error): void {
    this.release();
    this.failWith(error);
  }

  /** Copy chunk[offset…] into batches, sending each one that fills; wait for a free batch when all are in use. */
  private copyIn(chunk: Buffer, offset: number, callback: (error?: Error | null) => void): void {
    while (offset < chunk.length) {
      if (this.current === null) {
        const buffer = this.free.pop() ?? (this.batches < BATCHES_PER_FILE ? (this.batches++, new ArrayBuffer(BATCH_BYTES)) : null);
        if (buffer === null) {
          this.waitingForBatch = (error) => (error ? callback(error) : this.copyIn(chunk, offset, callback));
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
    const waiting = this.waitingForAnswer ?? this.waitingForBatch;
    this.waitingForAnswer = null;
    this.waitingForBatch = null;
    if (waiting !== null) waiting(error);
    else this.destroy(error);
  }

  private release(): void {
    if (this.threadDone) return;
    this.threadDone = true;
    thread.detach(this.id);
  }
}
