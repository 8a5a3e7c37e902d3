/**
 * The read-only HTTP API for staging refreshes and other tools: the apps and
 * their state, an app's snapshots, and the files of the newest (or a named)
 * snapshot, streamed with Content-Length, single-range support and If-Range /
 * If-Match on the snapshot's ETag. Names are
 * checked against BYSU's own patterns and a file is served only when the
 * snapshot's manifest or SHA256SUMS lists it and it is a regular file inside
 * the snapshot directory, so no request can leave the repository.
 */
import { constants } from 'node:fs';
import { open, realpath } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Router, type Request, type Response } from 'express';
import { NAME_PATTERN, PART_FILE_PATTERN } from '../config/formats.ts';
import type { Config } from '../config/load.ts';
import { isSnapshotId, MANIFEST_FILE, SUMS_FILE } from '../repository/layout.ts';
import { repositoryProblem } from '../repository/marker.ts';
import { listAppDirectories, listSnapshots, newestSnapshot, type SnapshotEntry } from '../repository/read.ts';
import type { Logger } from '../log.ts';
import type { StatusReport } from '../status/app-status.ts';

export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Given a Range header and the file size, return the single byte range asked
 * for, 'unsatisfiable', or null to serve the whole file (no header, another
 * unit, several ranges, or a malformed one: RFC 9110 lets a server ignore it).
 */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | null {
  if (!header || size === 0) return null;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return null;
  if (match[1] === '') {
    const suffix = Number(match[2]);
    if (suffix === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(match[1]);
  if (match[2] !== '' && Number(match[2]) < start) return null; // not a valid range: ignored
  const end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

function knownApp(config: Config, name: string, onDisk: string[]): boolean {
  return NAME_PATTERN.test(name) && (config.apps.some((app) => app.name === name) || onDisk.includes(name));
}

/**
 * Given the config (read at each request: a reload applies to the next one)
 * and how to get the apps' states for a config (the dashboard shares one
 * computation among concurrent requests), return the API router (mount it
 * behind bearerAuth).
 */
export function apiRouter(current: () => Config, statusOf: (config: Config) => Promise<StatusReport>, logger?: Logger): Router {
  const router = Router();
  const notFound = (response: Response, what: string) => response.status(404).json({ error: `${what} not found` });
  // Every route reads the repository: a missing or unmarked root answers 503 with the reason, never "no snapshots".
  router.use(async (_request, response, next) => {
    const config = current();
    const problem = await repositoryProblem(config.repository);
    if (problem === null) next();
    else response.status(503).json({ error: problem });
  });

  router.get('/apps', async (_request, response) => {
    const config = current();
    const report = await statusOf(config);
    response.json({
      at: report.at,
      apps: report.apps.map((app) => ({
        app: app.app,
        node: app.node,
        state: app.state,
        latest: app.newest ? { id: app.newest.id, finishedAt: app.newest.finishedAt, bytes: app.newest.bytes, warnings: app.newest.warnings } : null,
        nextRunAt: app.nextRunAt === null ? null : new Date(app.nextRunAt).toISOString(),
        lastFailure: app.lastFailure,
        lastDrill: app.lastDrill,
        lastVerify: app.lastVerify,
        // What a mirror of this BYSU takes as its default keep; and, for an app copied here from another BYSU, its lag.
        keep: config.apps.find((candidate) => candidate.name === app.app)?.keep ?? null,
        mirror: app.mirror,
      })),
    });
  });

  router.get('/apps/:app/snapshots', async (request: Request<{ app: string }>, response) => {
    const config = current();
    const { app } = request.params;
    if (!knownApp(config, app, await listAppDirectories(config.repository))) return notFound(response, `app ${JSON.stringify(app)}`);
    const snapshots = await listSnapshots(config.repository, app);
    response.json(snapshots.filter((snapshot) => snapshot.manifest).map((snapshot) => ({
      id: snapshot.id,
      finishedAt: snapshot.manifest!.finishedAt,
      bytes: snapshot.manifest!.bytes,
      trigger: snapshot.manifest!.trigger,
      files: snapshot.manifest!.parts.map((part) => ({ file: part.file, bytes: part.bytes, sha256: part.sha256 })),
      warnings: snapshot.manifest!.warnings,
    })));
  });

  /** Serve one file of a snapshot: listed by it, a regular file inside it, inside the repository. */
  const serveFile = async (config: Config, request: Request, response: Response, app: string, snapshot: SnapshotEntry | null, file: string): Promise<void> => {
    if (!PART_FILE_PATTERN.test(file)) return void notFound(response, `file ${JSON.stringify(file)}`);
    if (!snapshot?.manifest) return void notFound(response, `a complete snapshot of ${app}`);
    const listed = file === MANIFEST_FILE || file === SUMS_FILE || snapshot.manifest.parts.some((part) => part.file === file);
    if (!listed) return void notFound(response, `file ${JSON.stringify(file)} in ${app}/${snapshot.id}`);
    const repositoryRoot = await realpath(config.repository);
    const directory = await realpath(snapshot.path).catch(() => null);
    if (directory === null || !directory.startsWith(`${repositoryRoot}${path.sep}`)) return void notFound(response, `${app}/${snapshot.id}`);
    // Opened without following a symlink, then checked on the open handle: nothing can be swapped in between.
    const handle = await open(path.join(directory, file), constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => null);
    if (handle === null) return void notFound(response, `file ${JSON.stringify(file)} in ${app}/${snapshot.id}`);
    let streaming = false;
    try {
      const info = await handle.stat();
      if (!info.isFile()) return void notFound(response, `file ${JSON.stringify(file)} in ${app}/${snapshot.id}`);
      const etag = `"${snapshot.id}-${info.size}"`;
      // A resumed download of `latest` must not splice two snapshots: If-Range / If-Match must name this one.
      const ifMatch = request.headers['if-match'];
      if (ifMatch && ifMatch !== '*' && !ifMatch.split(',').map((tag) => tag.trim()).includes(etag)) {
        response.status(412).json({ error: `the snapshot changed: now ${snapshot.id}` });
        return;
      }
      const ifRange = request.headers['if-range'];
      const range = ifRange && ifRange !== etag ? null : parseRange(request.headers.range, info.size);
      response.set({
        'Accept-Ranges': 'bytes',
        'Content-Type': file.endsWith('.json') ? 'application/json' : 'application/octet-stream',
        'Content-Disposition': `attachment; filename="${file}"`,
        'X-Bysu-Snapshot': snapshot.id,
        ETag: etag,
      });
      if (range === 'unsatisfiable') {
        response.status(416).set('Content-Range', `bytes */${info.size}`).end();
        return;
      }
      const { start, end } = range ?? { start: 0, end: info.size - 1 };
      if (range) response.status(206).set('Content-Range', `bytes ${start}-${end}/${info.size}`);
      response.set('Content-Length', String(Math.max(0, end - start + 1)));
      if (request.method === 'HEAD' || info.size === 0) {
        response.end();
        return;
      }
      streaming = true;
      // One line per file served: what a mirror (or a staging refresh) took, and from where.
      const served = { app, snapshot: snapshot.id, file, from: start, bytes: end - start + 1, size: info.size, client: request.socket.remoteAddress };
      const stream = handle.createReadStream({ start, end });
      let read = 0;
      stream.on('data', (chunk: string | Buffer) => {
        read += chunk.length;
      });
      await pipeline(stream, response).then(
        () => logger?.info(served, 'api: file served'),
        () => {
          response.destroy();
          logger?.warn({ ...served, bytes: read }, 'api: file download broke off (the client may resume it with Range)');
        },
      );
    } finally {
      if (!streaming) await handle.close();
    }
  };

  router.get('/apps/:app/latest/:file', async (request: Request<{ app: string; file: string }>, response) => {
    const config = current();
    const { app, file } = request.params;
    if (!knownApp(config, app, await listAppDirectories(config.repository))) return notFound(response, `app ${JSON.stringify(app)}`);
    await serveFile(config, request, response, app, await newestSnapshot(config.repository, app), file);
  });

  router.get('/apps/:app/snapshots/:id/:file', async (request: Request<{ app: string; id: string; file: string }>, response) => {
    const config = current();
    const { app, id, file } = request.params;
    if (!knownApp(config, app, await listAppDirectories(config.repository)) || !isSnapshotId(id)) return notFound(response, `${app}/${id}`);
    const snapshot = (await listSnapshots(config.repository, app)).find((candidate) => candidate.id === id) ?? null;
    await serveFile(config, request, response, app, snapshot, file);
  });

  router.use((_request, response) => notFound(response, 'API route'));
  return router;
}
