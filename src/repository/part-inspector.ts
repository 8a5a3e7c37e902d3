/**
 * Everything BYSU learns from a part's bytes as they pass: count, sha256 and,
 * for tar parts, archive validity. Used when writing a snapshot and again by
 * `bysu verify`, so both judge a file the same way.
 */
import { createHash, type Hash } from 'node:crypto';
import { Writable } from 'node:stream';
import { createGunzip, type Gunzip } from 'node:zlib';
import { InvalidArchiveError } from '../errors.ts';
import { archiveKind } from './layout.ts';
import { TarValidator, type TarEntry, type TarSummary } from './tar-validator.ts';

export interface Inspection {
  bytes: number;
  sha256: string;
  /** Present for tar parts. */
  tar?: TarSummary;
  /** With `keepHashingInvalidArchives`: why the archive is invalid. */
  archiveProblem?: string;
}

export interface InspectorOptions {
  /**
   * Hash the bytes. Off when writing a snapshot: the part writer's thread
   * hashes them there, off the event loop (finishArchive() then, not finish()).
   * @defaultValue true
   */
  hash?: boolean;
  /**
   * Go on hashing after the archive is known to be invalid and report the
   * problem from finish() instead of throwing (verify wants both facts).
   * @defaultValue false
   */
  keepHashingInvalidArchives?: boolean;
  /** For tar parts: called with each entry as its header is read (see TarValidator). */
  onTarEntry?: (entry: TarEntry) => void;
}

export class PartInspector {
  bytes = 0;
  private readonly hash: Hash | null;
  private readonly tar: TarValidator | null;
  private readonly gunzip: Gunzip | null = null;
  private gunzipDone: Promise<void> = Promise.resolve();
  private archiveError: Error | null = null;

  constructor(file: string, private readonly options: InspectorOptions = {}) {
    this.hash = options.hash === false ? null : createHash('sha256');
    const kind = archiveKind(file);
    this.tar = kind ? new TarValidator(options.onTarEntry ? { onEntry: options.onTarEntry } : {}) : null;
    if (kind === 'tar.gz') {
      const gunzip = createGunzip();
      gunzip.on('data', (data: Buffer) => this.validate(data));
      gunzip.on('error', (error) => {
        this.archiveError ??= new InvalidArchiveError(`not a valid gzip stream: ${error.message}`);
      });
      // zlib may end by itself (zero padding after the last member): remember it, whenever it happens.
      this.gunzipDone = new Promise((resolve) => {
        gunzip.once('end', resolve);
        gunzip.once('close', resolve);
      });
      this.gunzip = gunzip;
    }
  }

  /**
   * Given the next chunk, account for it. Resolves once a gzipped chunk has
   * been inflated (so memory stays bounded); throws InvalidArchiveError as soon
   * as the archive is known to be bad.
   */
  update(chunk: Buffer): Promise<void> | void {
    this.bytes += chunk.length;
    this.hash?.update(chunk);
    if (this.gunzip) {
      const gunzip = this.gunzip;
      return new Promise((resolve, reject) => {
        const settle = () => {
          gunzip.off('error', settle);
          if (this.archiveError && !this.options.keepHashingInvalidArchives) reject(this.archiveError);
          else resolve();
        };
        if (this.archiveError || gunzip.destroyed) {
          settle();
          return;
        }
        if (gunzip.writableEnded || gunzip.readableEnded) {
          // After the gzip stream ended only zero padding may follow (as gzip itself accepts).
          if (chunk.some((byte) => byte !== 0)) this.archiveError = new InvalidArchiveError('not a valid gzip stream: data after its end');
          settle();
          return;
        }
        // zlib does not call the write callback when the stream is not gzip at all: its error settles it.
        gunzip.once('error', settle);
        gunzip.write(chunk, settle);
      });
    }
    if (this.tar) this.validate(chunk);
    if (this.archiveError && !this.options.keepHashingInvalidArchives) throw this.archiveError;
  }

  /** Call at the end of the stream; throws InvalidArchiveError when a tar part is incomplete. */
  async finish(): Promise<Inspection> {
    if (this.hash === null) throw new Error('PartInspector: finish() needs hashing on; use finishArchive()');
    const sha256 = this.hash.digest('hex');
    return { ...(await this.finishArchive()), sha256 };
  }

  /** finish() without the hash (for an inspector made with `hash: false`). */
  async finishArchive(): Promise<Omit<Inspection, 'sha256'>> {
    if (this.gunzip) {
      if (!this.gunzip.destroyed && !this.archiveError) {
        this.gunzip.end();
        await this.gunzipDone;
      }
      if (!this.gunzip.destroyed) this.gunzip.destroy();
    }
    const result: Omit<Inspection, 'sha256'> = { bytes: this.bytes };
    if (this.tar && !this.archiveError) {
      try {
        result.tar = this.tar.finish();
      } catch (error) {
        this.archiveError = error as Error;
      }
    }
    if (this.archiveError) {
      if (!this.options.keepHashingInvalidArchives) throw this.archiveError;
      result.archiveProblem = this.archiveError.message;
    }
    return result;
  }

  /** Release resources after a failure. */
  discard(): void {
    this.gunzip?.destroy();
  }

  private validate(data: Buffer): void {
    if (this.archiveError) return;
    try {
      this.tar!.write(data);
    } catch (error) {
      this.archiveError = error as Error;
      this.gunzip?.destroy();
    }
  }
}

/**
 * The first bytes of a stream, kept for error messages: a command that fails
 * with an empty stderr often said why on stdout (`This account is currently
 * not available.`). Copies at most `limit` bytes, whatever the stream's size.
 */
export class StreamHead {
  /** Every byte seen, kept or not. */
  total = 0;
  private readonly chunks: Buffer[] = [];
  private kept = 0;

  constructor(readonly limit: number) {}

  add(chunk: Buffer): void {
    this.total += chunk.length;
    if (this.kept >= this.limit) return;
    // A copy: a slice would keep the whole (possibly large) chunk alive.
    const piece = Buffer.from(chunk.subarray(0, this.limit - this.kept));
    this.chunks.push(piece);
    this.kept += piece.length;
  }

  /** The kept bytes (at most `limit`). */
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** A Writable that inspects everything written to it (for verify). */
export function inspectingSink(inspector: PartInspector): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      try {
        const pending = inspector.update(chunk);
        if (pending) pending.then(() => callback(), callback);
        else callback();
      } catch (error) {
        callback(error as Error);
      }
    },
  });
}
