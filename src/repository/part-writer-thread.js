// @ts-check
/**
 * The part writer's thread (see part-writer.ts): it opens part files, hashes
 * and writes (writeSync: this thread exists to wait on the disk) the batches
 * the main thread sends it, starts writeback as it goes, and fsyncs and closes
 * each file at its end. Measured: writing from here beats handing each batch
 * on to libuv's threadpool (2.34 s against 2.57 s per GiB, median of 5).
 * Plain JavaScript because worker threads do not inherit tsx's loader; typed
 * by JSDoc and checked by tsc.
 *
 * Messages in:  { type: 'open', id, path, mode } | { type: 'write', id, buffer, length }
 *               | { type: 'finish', id } | { type: 'abort', id }
 * Messages out: { type: 'opened' | 'aborted', id } | { type: 'written', id, buffer }
 *               | { type: 'finished', id, sha256, bytes } | { type: 'error', id, error }
 * Every batch goes back ('written'), whatever became of its file. A file ends
 * once, with 'finished' or 'error', and only after its descriptor is closed;
 * 'aborted' too comes only once it is closed. So when the main thread hears of
 * a file's end, nothing here will touch the file again.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, fdatasync, fsync, openSync, writeSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';

/**
 * Every this many bytes of a file, an fdatasync is started (without waiting
 * for it) so that the kernel writes the file out while it arrives, and the
 * fsync at its end has only the tail left to write.
 */
const WRITEBACK_BYTES = 64 * 1024 * 1024;

/**
 * @typedef {{
 *   fd: number,
 *   hash: import('node:crypto').Hash,
 *   bytes: number,
 *   sinceWriteback: number,
 *   pending: number,
 *   whenIdle: (() => void)[],
 *   state: 'open' | 'finishing' | 'ended',
 *   writebackError: NodeJS.ErrnoException | null,
 *   closing: Promise<NodeJS.ErrnoException | null> | null,
 *   ended: Promise<void>,
 *   markEnded: () => void,
 * }} OpenFile
 */

/** @type {Map<number, OpenFile>} */
const files = new Map();
if (parentPort === null) throw new Error('part-writer-thread.js runs as a worker thread only');
const port = parentPort;

/**
 * Given an error from fs, return what the main thread needs to rebuild it.
 * @param {unknown} error
 */
function describe(error) {
  const failure = /** @type {NodeJS.ErrnoException} */ (error);
  return { message: String(failure?.message ?? error), code: failure?.code, syscall: failure?.syscall, errno: failure?.errno, path: failure?.path };
}

/**
 * Resolve once no fdatasync of the file is running: closing the fd under one
 * could hand its number to another file first.
 * @param {OpenFile} file
 * @returns {Promise<void>}
 */
function idle(file) {
  return file.pending === 0 ? Promise.resolve() : new Promise((resolve) => file.whenIdle.push(resolve));
}

/** @param {OpenFile} file */
function settled(file) {
  file.pending -= 1;
  if (file.pending === 0) for (const resolve of file.whenIdle.splice(0)) resolve();
}

/**
 * Close the file's descriptor, once, when it is idle; resolves with close's error, if any.
 * (Linux releases the fd even when close reports an error: it is never closed twice.)
 * closeSync, like openSync, because a thread that dies closes the descriptors it
 * holds, but not one whose asynchronous close was still queued: that one leaked.
 * @param {OpenFile} file
 * @returns {Promise<NodeJS.ErrnoException | null>}
 */
function closeOnce(file) {
  file.closing ??= idle(file).then(() => {
    try {
      closeSync(file.fd);
      return null;
    } catch (error) {
      return /** @type {NodeJS.ErrnoException} */ (error);
    }
  });
  return file.closing;
}

/**
 * End the file with an error: close it, then tell the main thread why.
 * @param {number} id @param {OpenFile} file @param {unknown} error
 */
function fail(id, file, error) {
  if (file.state === 'ended') return;
  file.state = 'ended';
  void closeOnce(file).then(() => {
    files.delete(id);
    port.postMessage({ type: 'error', id, error: describe(error) });
    file.markEnded();
  });
}

/** @param {number} id @param {string} target @param {number} mode */
function openFile(id, target, mode) {
  let fd;
  try {
    // O_EXCL: a part file never replaces anything (and with O_CREAT it follows no symlink).
    fd = openSync(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  } catch (error) {
    port.postMessage({ type: 'error', id, error: describe(error) });
    return;
  }
  /** @type {() => void} */
  let markEnded = () => undefined;
  const ended = new Promise((resolve) => (markEnded = () => resolve(undefined)));
  files.set(id, { fd, hash: createHash('sha256'), bytes: 0, sinceWriteback: 0, pending: 0, whenIdle: [], state: 'open', writebackError: null, closing: null, ended, markEnded });
  port.postMessage({ type: 'opened', id });
}

/** @param {number} id @param {ArrayBuffer} buffer @param {number} length */
function writeBatch(id, buffer, length) {
  const file = files.get(id);
  if (file !== undefined && file.state === 'open') {
    const data = new Uint8Array(buffer, 0, length);
    try {
      if (file.writebackError !== null) throw file.writebackError;
      file.hash.update(data);
      for (let offset = 0; offset < length;) offset += writeSync(file.fd, data, offset, length - offset);
      file.bytes += length;
      startWritebackIfDue(file, length);
    } catch (error) {
      fail(id, file, error);
    }
  }
  port.postMessage({ type: 'written', id, buffer }, [buffer]);
}

/** @param {OpenFile} file @param {number} length */
function startWritebackIfDue(file, length) {
  file.sinceWriteback += length;
  if (file.sinceWriteback < WRITEBACK_BYTES) return;
  file.sinceWriteback = 0;
  file.pending += 1;
  fdatasync(file.fd, (error) => {
    // Kept, and fatal: Linux reports a writeback error once per open file, so the closing fsync would not see it again.
    if (error !== null) file.writebackError ??= error;
    settled(file);
  });
}

/** @param {number} id */
async function finish(id) {
  const file = files.get(id);
  if (file === undefined || file.state !== 'open') return; // it failed: its 'error' is on its way
  file.state = 'finishing';
  await idle(file);
  if (file.writebackError !== null) {
    fail(id, file, file.writebackError);
    return;
  }
  fsync(file.fd, async (error) => {
    if (error !== null) {
      fail(id, file, error);
      return;
    }
    const closeError = await closeOnce(file);
    file.state = 'ended';
    files.delete(id);
    if (closeError) port.postMessage({ type: 'error', id, error: describe(closeError) });
    else port.postMessage({ type: 'finished', id, sha256: file.hash.digest('hex'), bytes: file.bytes });
    file.markEnded();
  });
}

/** @param {number} id */
async function abort(id) {
  const file = files.get(id);
  if (file !== undefined) {
    if (file.state === 'open') {
      // Nothing more is written; it ends without a report of its own ('aborted' says it all).
      file.state = 'ended';
      await closeOnce(file);
      files.delete(id);
      file.markEnded();
    } else {
      // Finishing or failing: let that run to its close.
      await file.ended;
    }
  }
  port.postMessage({ type: 'aborted', id });
}

port.on('message', (/** @type {any} */ message) => {
  switch (message.type) {
    case 'open':
      openFile(message.id, message.path, message.mode);
      break;
    case 'write':
      writeBatch(message.id, message.buffer, message.length);
      break;
    case 'finish':
      void finish(message.id);
      break;
    case 'abort':
      void abort(message.id);
      break;
    default:
      throw new Error(`part writer thread: unknown message ${JSON.stringify(message.type)}`);
  }
});
