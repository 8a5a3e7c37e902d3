/**
 * The read-only HTTP API for staging refreshes and other tools: the apps and
 * their state, an app's snapshots, and the newest snapshot's manifest and
 * files, streamed with Content-Length and single-range support. Names are
 * checked against BYSU's own patterns and a file is served only when the
 * snapshot's manifest or SHA256SUMS lists it and it is a regular file inside
 * the snapshot directory, so no request can leave the repository.
 */
import { createReadStream } from 'node:fs';
import { lstat, realpath } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Router, type Request, type Response } from 'express';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { NAME_PATTERN, PART_FILE_PATTERN } from '../config/formats.ts';
import type { Config } from '../config/load.ts';
import { MANIFEST_FILE, SUMS_FILE } from '../repository/layout.ts';
import { listAppDirectories, listSnapshots, newestSnapshot, type SnapshotEntry } from '../repository/read.ts';
import { collectStatus } from '../status/app-status.ts';

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
  if (!header) return null;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return null;
  if (match[1] === '') {
    const suffix = Number(match[2]);
    if (suffix === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(match[1]);
  const end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

/** Given the repository and an app name, return the app's newest complete snapshot, or null. */
async function latestOf(repository: string, app: string): Promise<SnapshotEntry | null> {
  return newestSnapshot(repository, app);
}

function knownApp(config: Config, name: string, onDisk: string[]): boolean {
  return NAME_PATTERN.test(name) && (config.apps.some((app) => app.name === name) || onDisk.includes(name));
}

/** Given the config, Redis and the snapshot queue, return the API router (mount it behind bearerAuth). */
export function apiRouter(config: Config, redis: Redis, snapshotQueue: Queue): Router {
  const router = Router();
  const notFound = (response: Response, what: string) => response.status(404).json({ error: `${what} not found` });

  router.get('/apps', async (_request, response) => {
    const report = await collectStatus(config, redis, snapshotQueue);
    response.json({
      at: report.at,
      apps: report.apps.map((app) => ({
        app: app.app,
        node: app.node,
        state: app.state,
        latest: app.newest ? { id: app.newest.id, finishedAt: app.newest.finishedAt, bytes: app.newest.bytes, warnings: app.newest.warnings } : null,
        nextRunAt: app.nextRunAt === null ? null : new Date(app.nextRunAt).toISOString(),
        lastFailure: app.lastFailure,
      })),
    });
  });

  router.get('/apps/:app/snapshots', async (request: Request<{ app: string }>, response) => {
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

  router.get('/apps/:app/latest/:file', async (request: Request<{ app: string; file: string }>, response) => {
    const { app, file } = request.params;
    if (!knownApp(config, app, await listAppDirectories(config.repository))) return notFound(response, `app ${JSON.stringify(app)}`);
    if (!PART_FILE_PATTERN.test(file)) return notFound(response, `file ${JSON.stringify(file)}`);
    const snapshot = await latestOf(config.repository, app);
    if (!snapshot?.manifest) return notFound(response, `a complete snapshot of ${app}`);
    const listed = file === MANIFEST_FILE || file === SUMS_FILE || snapshot.manifest.parts.some((part) => part.file === file);
    if (!listed) return notFound(response, `file ${JSON.stringify(file)} in ${app}/${snapshot.id}`);
    const target = path.join(snapshot.path, file);
    // A regular file in the snapshot directory itself: never a symlink someone planted.
    const info = await lstat(target).catch(() => null);
    if (!info?.isFile() || path.dirname(await realpath(target)) !== (await realpath(snapshot.path))) {
      return notFound(response, `file ${JSON.stringify(file)} in ${app}/${snapshot.id}`);
    }
    const range = parseRange(request.headers.range, info.size);
    response.set({
      'Accept-Ranges': 'bytes',
      'Content-Type': file.endsWith('.json') ? 'application/json' : 'application/octet-stream',
      'Content-Disposition': `attachment; filename="${file}"`,
      'X-Bysu-Snapshot': snapshot.id,
      ETag: `"${snapshot.id}-${info.size}"`,
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
    await pipeline(createReadStream(target, { start, end }), response).catch(() => response.destroy());
  });

  router.use((_request, response) => notFound(response, 'API route'));
  return router;
}
