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
 * A file that failed is closed here at once (once its fdatasync has settled);
 * later messages for it are answered (buffers go back) but do nothing.
 */
import { createHash } from 'node:crypto';
import { close, constants, fdatasync, fsync, open, writeSync } from 'node:fs';
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
 *   failed: boolean,
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
 * Resolve once no write or fdatasync of the file is running: closing the fd
 * under one could hand its number to another file first.
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
 * Mark the file failed, tell the main thread why, close it when idle.
 * @param {number} id @param {OpenFile} file @param {unknown} error
 */
function fail(id, file, error) {
  if (file.failed) return;
  file.failed = true;
  files.delete(id);
  port.postMessage({ type: 'error', id, error: describe(error) });
  idle(file).then(() => close(file.fd, () => undefined));
}

/** @param {number} id @param {string} target @param {number} mode */
function openFile(id, target, mode) {
  // O_EXCL: a part file never replaces anything (and with O_CREAT it follows no symlink).
  open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode, (error, fd) => {
    if (error !== null) {
      port.postMessage({ type: 'error', id, error: describe(error) });
      return;
    }
    files.set(id, { fd, hash: createHash('sha256'), bytes: 0, sinceWriteback: 0, pending: 0, whenIdle: [], failed: false });
    port.postMessage({ type: 'opened', id });
  });
}

/** @param {number} id @param {ArrayBuffer} buffer @param {number} length */
function writeBatch(id, buffer, length) {
  const file = files.get(id);
  if (file !== undefined && !file.failed) {
    const data = new Uint8Array(buffer, 0, length);
    try {
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
  if (file.sinceWriteback < WRITEBACK_BYTES || file.failed) return;
  file.sinceWriteback = 0;
  file.pending += 1;
  // Its errors (EIO, ENOSPC on writeback) are reported again by the closing fsync.
  fdatasync(file.fd, () => settled(file));
}

/** @param {number} id */
async function finish(id) {
  const file = files.get(id);
  if (file === undefined) return;
  // From here on the file is finish's to close: an abort that comes now finds nothing to do.
  files.delete(id);
  await idle(file);
  if (file.failed) return;
  fsync(file.fd, (error) => {
    if (error !== null) {
      fail(id, file, error);
      return;
    }
    // Linux releases the fd even when close reports an error: never close it twice.
    close(file.fd, (closeError) => {
      if (closeError !== null) port.postMessage({ type: 'error', id, error: describe(closeError) });
      else port.postMessage({ type: 'finished', id, sha256: file.hash.digest('hex'), bytes: file.bytes });
    });
  });
}

/** @param {number} id */
async function abort(id) {
  const file = files.get(id);
  if (file !== undefined) {
    file.failed = true;
    files.delete(id);
    await idle(file);
    await new Promise((resolve) => close(file.fd, resolve));
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
