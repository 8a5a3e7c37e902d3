/**
 * A bound on how fast the repository is read: a verification that re-hashes
 * every kept snapshot must not take the disk from the snapshots being
 * written. One ReadThrottle is shared by every file one verification reads;
 * each file's stream passes through its `stream()`, which lets a chunk on
 * only once the bytes before it, at the bound, have had their time. Piped
 * with backpressure, the file is then read no faster than that: the reader
 * stays at most a chunk or two (1 MiB each, verifySnapshot's) ahead.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * How much of a late start is made up: a timer that fires late (and every
 * wait is rounded up to a whole millisecond) must not slow the read below
 * the bound, while time the reader spent idle must not become a burst.
 */
const CATCH_UP_MS = 20;

export class ReadThrottle {
  /** When the bytes let through so far have used up their time at the bound (ms since epoch). */
  private nextFree = 0;

  /**
   * Given the bound in bytes per second (0: none) and a signal that ends any
   * wait (with the signal's reason), keep them.
   */
  constructor(private readonly bytesPerSecond: number, private readonly signal?: AbortSignal) {
    if (!Number.isFinite(bytesPerSecond) || bytesPerSecond < 0) throw new Error(`bytesPerSecond must be 0 (no bound) or more, got ${bytesPerSecond}`);
  }

  /**
   * Given a number of bytes about to be passed on, wait until they are paid
   * for at the bound. Over any stretch of time the bytes passed stay under
   * the bound, give or take CATCH_UP_MS of it: a pause of the reader is not
   * saved up for a burst later, and a wait that overslept is made up.
   */
  async take(bytes: number): Promise<void> {
    if (this.bytesPerSecond === 0) return;
    const now = Date.now();
    this.nextFree = Math.max(now - CATCH_UP_MS, this.nextFree) + (bytes * 1000) / this.bytesPerSecond;
    const wait = this.nextFree - now;
    // Timers are coarse and a wait under a millisecond is not worth one; the debt stays in nextFree.
    if (wait >= 1) await sleep(Math.ceil(wait), undefined, this.signal ? { signal: this.signal } : {});
  }

  /** A pass-through stream paced by this throttle (pipe a file's read stream through it). */
  stream(): Transform {
    return new Transform({
      transform: (chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) => {
        this.take(chunk.length).then(() => callback(null, chunk), (error: unknown) => callback(error as Error));
      },
    });
  }
}
