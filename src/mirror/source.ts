/**
 * The source of a mirror: another BYSU's read-only `/api`, reached with its
 * API token. Only what a mirror needs: the apps, an app's complete snapshots
 * with their files' sizes and sha256, and a file of a named snapshot, whole or
 * from an offset (`Range`, guarded by `If-Range` on the snapshot's ETag).
 * Every failure says which source and what to do; none of them is retried
 * here (the mirror job's attempts do that).
 */
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { NAME_PATTERN, PART_FILE_PATTERN, RESERVED_FILE_NAMES } from '../config/formats.ts';
import { BysuError } from '../errors.ts';
import { isSnapshotId, snapshotIdFor, snapshotIdTime } from '../repository/layout.ts';
import { escapeControls } from '../printable.ts';

/** A failure to talk to a mirror's source: unreachable, refused, or an answer that is not what BYSU serves. */
export class MirrorSourceError extends BysuError {
  readonly retryable: boolean;
  constructor(message: string, options: { retryable: boolean; cause?: unknown }) {
    super(message, options.cause === undefined ? {} : { cause: options.cause });
    this.retryable = options.retryable;
  }
}

/** The most a small file (manifest.json, SHA256SUMS, a listing) may be. */
export const MAX_SMALL_BYTES = 16 * 1024 * 1024;

export interface SourceApp {
  app: string;
  /** The source's `keep` for the app, when it says (a mirror's default). */
  keep: number | null;
  /** Set when the entry is not one a BYSU source lists (the name, made printable, is in `app`): why it is not copied. */
  refused?: string;
}

/** Given something a source sent, return it printable and short, for a message that names it. */
function shown(value: unknown): string {
  const text = typeof value === 'string' ? JSON.stringify(value) : String(JSON.stringify(value) ?? value);
  const printable = escapeControls(text);
  return printable.length > 80 ? `${printable.slice(0, 80)}…` : printable;
}

/** Given a listed file's entry, return what is wrong with it, or null. */
function fileProblem(file: Partial<SourceFile> | null | undefined): string | null {
  if (typeof file?.file !== 'string' || !PART_FILE_PATTERN.test(file.file)) return `its file name ${shown(file?.file)} is not a part's name`;
  if (RESERVED_FILE_NAMES.includes(file.file)) return `it lists ${file.file} as a part, a name BYSU writes itself`;
  if (!Number.isSafeInteger(file.bytes) || (file.bytes ?? -1) < 0) return `${file.file}'s size ${shown(file.bytes)} is not a size`;
  if (typeof file.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(file.sha256)) return `${file.file}'s sha256 ${shown(file.sha256)} is not one`;
  return null;
}

/** Given a listed snapshot's entry, return what is wrong with it, or null. */
function snapshotProblem(snapshot: Partial<SourceSnapshot>): string | null {
  if (typeof snapshot.id !== 'string' || !isSnapshotId(snapshot.id)) return `its id ${shown(snapshot.id)} is not a snapshot id`;
  // A date that is no date (month 13, February 30) would sort above every real one and escape the future check.
  const time = snapshotIdTime(snapshot.id);
  if (Number.isNaN(time.getTime()) || snapshotIdFor(time) !== snapshot.id.slice(0, snapshotIdFor(time).length)) return `its id ${shown(snapshot.id)} is not a real date and time`;
  if (typeof snapshot.finishedAt !== 'string') return `its finishedAt ${shown(snapshot.finishedAt)} is not a time`;
  if (typeof snapshot.bytes !== 'number') return `its bytes ${shown(snapshot.bytes)} is not a size`;
  if (!Array.isArray(snapshot.files)) return 'it has no list of files';
  for (const file of snapshot.files as Partial<SourceFile>[]) {
    const problem = fileProblem(file);
    if (problem !== null) return problem;
  }
  return null;
}

export interface SourceFile {
  file: string;
  bytes: number;
  sha256: string;
}

export interface SourceSnapshot {
  id: string;
  finishedAt: string;
  bytes: number;
  files: SourceFile[];
}

export interface Download {
  /** 206: the bytes from the offset asked for; 200: the whole file (the offset was not honoured). */
  status: 200 | 206;
  body: Readable;
}

/** Given a snapshot id and a file's size, return the ETag the source serves the file with (api.ts). */
export function sourceEtag(id: string, bytes: number): string {
  return `"${id}-${bytes}"`;
}

export class MirrorSource {
  /**
   * Given the source's name (for messages), its dashboard URL, its API token
   * and how long a request may wait for its answer to start, keep them.
   */
  constructor(readonly name: string, readonly url: string, private readonly token: string, private readonly timeoutMs = 30_000) {}

  private endpoint(path: string): string {
    return `${this.url.replace(/\/+$/, '')}/api${path}`;
  }

  /** Given a path under /api and headers, return the response; throw MirrorSourceError when no answer comes or it is an error. */
  private async request(path: string, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
    const url = this.endpoint(path);
    // Bounds the wait for the answer to start, not the body: a large file streams for as long as it takes.
    const unanswered = new AbortController();
    const timer = setTimeout(() => unanswered.abort(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
    let response: Response;
    try {
      response = await fetch(url, {
        // The bytes as stored: sizes, ranges and hashes are of those (fetch asks for gzip unless told).
        headers: { authorization: `Bearer ${this.token}`, 'accept-encoding': 'identity', ...headers },
        signal: signal ? AbortSignal.any([signal, unanswered.signal]) : unanswered.signal,
        redirect: 'error',
      });
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (unanswered.signal.aborted) {
        throw new MirrorSourceError(`mirror source ${this.name} (${url}) does not answer: ${(unanswered.signal.reason as Error).message}`, { retryable: true });
      }
      const cause = (error as Error & { cause?: Error }).cause;
      throw new MirrorSourceError(`mirror source ${this.name} (${url}) does not answer: ${cause?.message ?? (error as Error).message}; is it up and is mirrors[].url right?`, { retryable: true, cause: error });
    } finally {
      clearTimeout(timer);
    }
    if (response.ok) {
      // Sizes, ranges, resumes and hashes count the bytes as stored: an answer compressed anyway (a proxy that
      // ignores accept-encoding) would be decoded here and read as cut short, at every run.
      const encoding = response.headers.get('content-encoding');
      if (encoding !== null && encoding.trim().toLowerCase() !== 'identity') {
        await response.body?.cancel().catch(() => undefined);
        throw new MirrorSourceError(`mirror source ${this.name} answered ${url} compressed (content-encoding: ${encoding.slice(0, 40)}) although it was asked for the bytes as they are: turn compression off for /api on the proxy in between`, { retryable: false });
      }
      return response;
    }
    const body = await response.text().catch(() => '');
    const said = /"error":"([^"]{0,300})"/.exec(body)?.[1] ?? body.slice(0, 300);
    await response.body?.cancel().catch(() => undefined);
    if (response.status === 401 || response.status === 403) {
      throw new MirrorSourceError(`mirror source ${this.name} refused the token (HTTP ${response.status}${said ? `: ${said}` : ''}): the variable named by mirrors[].tokenEnv must hold the source's dashboard.apiToken`, { retryable: false });
    }
    throw new MirrorSourceError(`mirror source ${this.name} answered HTTP ${response.status} for ${url}${said ? `: ${said}` : ''}`, { retryable: response.status >= 500 || response.status === 429 || response.status === 404 });
  }

  /** Given a path, return its JSON (at most MAX_SMALL_BYTES). */
  private async json(path: string, signal?: AbortSignal): Promise<unknown> {
    const text = await this.small(await this.request(path, {}, signal), `/api${path}`);
    try {
      return JSON.parse(text);
    } catch {
      throw new MirrorSourceError(`mirror source ${this.name}: /api${path} is not JSON; is mirrors[].url the URL of a BYSU dashboard?`, { retryable: false });
    }
  }

  /**
   * Given the response of a small file or a listing, return its text: read
   * chunk by chunk, refused as soon as it passes MAX_SMALL_BYTES (a source
   * that sends without end must not fill this process's memory) or takes
   * longer than the request's timeout in all (one that sends a byte now and
   * then must not hold the mirror's run).
   */
  private async small(response: Response, what: string): Promise<string> {
    const declared = Number(response.headers.get('content-length') ?? '0');
    const tooLarge = () => new MirrorSourceError(`mirror source ${this.name}: ${what} is more than ${MAX_SMALL_BYTES} bytes, more than a BYSU source sends`, { retryable: false });
    if (declared > MAX_SMALL_BYTES || response.body === null) {
      await response.body?.cancel().catch(() => undefined);
      if (response.body === null) return '';
      throw tooLarge();
    }
    const reader = response.body.getReader();
    const chunks: Uint8Array[] = [];
    let bytes = 0;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      reader.cancel(new Error('timeout')).catch(() => undefined);
    }, this.timeoutMs);
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (timedOut) throw new Error('timeout');
        if (done) break;
        bytes += value.length;
        if (bytes > MAX_SMALL_BYTES) {
          await reader.cancel().catch(() => undefined);
          throw tooLarge();
        }
        chunks.push(value);
      }
    } catch (error) {
      if (error instanceof MirrorSourceError) throw error;
      throw new MirrorSourceError(`mirror source ${this.name}: ${what} did not arrive whole within ${this.timeoutMs} ms (${bytes} bytes)`, { retryable: true, cause: error });
    } finally {
      clearTimeout(timer);
    }
    // A cancel by the timer ends the reads as if done: a body cut short is not a listing.
    if (declared > 0 && bytes !== declared) throw new MirrorSourceError(`mirror source ${this.name}: ${what} ended after ${bytes} of ${declared} bytes`, { retryable: true });
    return Buffer.concat(chunks).toString('utf8');
  }

  private malformed(what: string): MirrorSourceError {
    return new MirrorSourceError(`mirror source ${this.name}: ${what} is not what a BYSU source serves; is mirrors[].url right, and is the source a BYSU of this version or newer?`, { retryable: false });
  }

  /** Return the source's apps (and their keep, when the source says it). */
  async apps(signal?: AbortSignal): Promise<SourceApp[]> {
    const body = await this.json('/apps', signal) as { apps?: unknown };
    if (!Array.isArray(body?.apps)) throw this.malformed('/api/apps');
    return body.apps.map((entry: unknown) => {
      const { app, keep } = (entry ?? {}) as { app?: unknown; keep?: unknown };
      if (typeof app !== 'string' || !NAME_PATTERN.test(app)) {
        return { app: shown(app), keep: null, refused: `mirror source ${this.name} lists an app named ${shown(app)}, which is not an app name: not copied` };
      }
      return { app, keep: typeof keep === 'number' && Number.isInteger(keep) && keep > 0 ? keep : null };
    });
  }

  /** Given an app, return its complete snapshots on the source, newest first; throw MirrorSourceError when the source does not know it. */
  async snapshots(app: string, signal?: AbortSignal): Promise<SourceSnapshot[]> {
    let body: unknown;
    try {
      body = await this.json(`/apps/${encodeURIComponent(app)}/snapshots`, signal);
    } catch (error) {
      // Not "no snapshots": an app the source does not know has nothing up to date here.
      if (error instanceof MirrorSourceError && / HTTP 404 /.test(error.message)) {
        throw new MirrorSourceError(`mirror source ${this.name} does not know app ${app} (HTTP 404 for /api/apps/${app}/snapshots): nothing copied; was it renamed or removed on the source?`, { retryable: false });
      }
      throw error;
    }
    if (!Array.isArray(body)) throw this.malformed(`/api/apps/${app}/snapshots`);
    return body.map((entry: unknown, index: number) => {
      const snapshot = (entry ?? {}) as Partial<SourceSnapshot>;
      const problem = snapshotProblem(snapshot);
      if (problem !== null) {
        throw new MirrorSourceError(`mirror source ${this.name}: snapshot ${index + 1} of /api/apps/${app}/snapshots (id ${shown(snapshot.id)}) is refused: ${problem}; nothing of ${app} is copied from this listing (a BYSU source never lists such a snapshot: is mirrors[].url right, and is the source to be trusted?)`, { retryable: false });
      }
      return { id: snapshot.id!, finishedAt: snapshot.finishedAt!, bytes: snapshot.bytes!, files: snapshot.files!.map(({ file, bytes, sha256 }) => ({ file, bytes, sha256 })) };
    });
  }

  /** Given an app, a snapshot id and a small file of it (manifest.json, SHA256SUMS), return its text. */
  async text(app: string, id: string, file: string, signal?: AbortSignal): Promise<string> {
    const path = `/apps/${encodeURIComponent(app)}/snapshots/${id}/${file}`;
    return this.small(await this.request(path, {}, signal), `/api${path}`);
  }

  /**
   * Given an app, a snapshot id, a file, its size, and the offset to start
   * at, return its bytes from there: a `Range` request guarded by `If-Range`
   * (the source answers the whole file instead when the snapshot is not the
   * one the offset was counted in). Throw MirrorSourceError on any other answer.
   */
  async download(app: string, id: string, file: string, size: number, offset: number, signal?: AbortSignal): Promise<Download> {
    const path = `/apps/${encodeURIComponent(app)}/snapshots/${id}/${file}`;
    const resume = offset > 0 && offset < size;
    const response = await this.request(path, resume ? { range: `bytes=${offset}-`, 'if-range': sourceEtag(id, size) } : {}, signal);
    let status: 200 | 206 = 200;
    if (response.status === 206) {
      const range = /^bytes (\d+)-\d+\/\d+$/.exec(response.headers.get('content-range') ?? '');
      if (range === null || Number(range[1]) !== offset) {
        await response.body?.cancel().catch(() => undefined);
        throw this.malformed(`the range answered for ${path} (${response.headers.get('content-range')}, asked from ${offset})`);
      }
      status = 206;
    } else if (response.status !== 200) {
      await response.body?.cancel().catch(() => undefined);
      throw this.malformed(`the answer HTTP ${response.status} for ${path}`);
    }
    const body = response.body === null ? Readable.from([]) : Readable.fromWeb(response.body as unknown as WebReadableStream<Uint8Array>);
    return { status, body };
  }
}
