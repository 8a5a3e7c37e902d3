/**
 * A source API for mirror tests: a small HTTP server that speaks what a BYSU
 * dashboard serves a mirror (/api/apps, a listing, manifest.json, SHA256SUMS,
 * files with Range) and serves what the test crafts, hostile or not. It logs
 * the path of every request, so that a test can tell what a run asked for.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import { gzipSync } from 'node:zlib';

export interface Crafted {
  id: string;
  files: Map<string, Buffer>;
  /** Served in the listing instead of the true one (a hostile source). */
  listingEntry?: unknown;
  /** Keys taken out of the manifest it serves. */
  manifestWithout?: string[];
  /** Each file's answer ends after this many bytes (the link breaks). */
  cutAt?: number;
}

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

/**
 * A source API serving the test's apps and snapshots; `requests` holds the
 * path of each request, in order; with `gzip` set, /api/apps is answered
 * compressed whatever was asked, with the compressed length (a proxy that
 * ignores accept-encoding).
 */
export async function fakeSource(): Promise<{ url: string; apps: unknown[]; snapshots: Map<string, Crafted[]>; requests: string[]; gzip: boolean; close: () => Promise<void> }> {
  const apps: unknown[] = [];
  const snapshots = new Map<string, Crafted[]>();
  const requests: string[] = [];
  // Written once per snapshot: the manifest's sha256 is in SHA256SUMS, so its text must not change between requests.
  const manifests = new WeakMap<Crafted, string>();
  const manifestOf = (app: string, snapshot: Crafted) => manifests.get(snapshot) ?? manifests.set(snapshot, renderManifestOf(app, snapshot)).get(snapshot)!;
  const renderManifestOf = (app: string, snapshot: Crafted) => `${JSON.stringify(Object.fromEntries(Object.entries({
    format: 'bysu-snapshot/1', app, node: 'db1', host: 'db1', id: snapshot.id, trigger: 'schedule', jobId: `s-${snapshot.id}`, attempt: 1,
    startedAt: new Date(Date.now() - 3_600_000).toISOString(), finishedAt: new Date(Date.now() - 3_500_000).toISOString(),
    bytes: [...snapshot.files.values()].reduce((sum, data) => sum + data.length, 0), bysuVersion: 'test', warnings: [],
    parts: [...snapshot.files].map(([file, data]) => ({ file, run: 'x', bytes: data.length, sha256: sha256(data), exitCode: 0, durationMs: 1 })),
  }).filter(([key]) => !snapshot.manifestWithout?.includes(key))), null, 2)}\n`;
  const server = http.createServer((request, response) => {
    const url = decodeURIComponent(new URL(request.url!, 'http://x').pathname);
    requests.push(url);
    const json = (body: unknown) => response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (url === '/api/apps' && fake.gzip) {
      const body = gzipSync(JSON.stringify({ apps }));
      return response.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': body.length }).end(body);
    }
    if (url === '/api/apps') return json({ apps });
    const listing = /^\/api\/apps\/([^/]+)\/snapshots$/.exec(url);
    if (listing) {
      return json((snapshots.get(listing[1]!) ?? []).map((snapshot) => snapshot.listingEntry ?? {
        id: snapshot.id, finishedAt: new Date(Date.now() - 3_500_000).toISOString(), bytes: [...snapshot.files.values()].reduce((sum, data) => sum + data.length, 0),
        files: [...snapshot.files].map(([file, data]) => ({ file, bytes: data.length, sha256: sha256(data) })),
      }));
    }
    const file = /^\/api\/apps\/([^/]+)\/snapshots\/([^/]+)\/([^/]+)$/.exec(url);
    const snapshot = file ? (snapshots.get(file[1]!) ?? []).find((candidate) => candidate.id === file[2]) : undefined;
    if (!file || !snapshot) return response.writeHead(404).end('{"error":"not found"}');
    const manifest = manifestOf(file[1]!, snapshot);
    const sums = [...snapshot.files].map(([name, data]) => `${sha256(data)}  ${name}\n`).join('') + `${sha256(manifest)}  manifest.json\n`;
    if (file[3] === 'manifest.json') return response.writeHead(200).end(manifest);
    if (file[3] === 'SHA256SUMS') return response.writeHead(200).end(sums);
    const data = snapshot.files.get(file[3]!);
    if (!data) return response.writeHead(404).end('{"error":"not found"}');
    const from = Number(/^bytes=(\d+)-$/.exec(request.headers.range ?? '')?.[1] ?? 0);
    if (from > 0) response.writeHead(206, { 'content-range': `bytes ${from}-${data.length - 1}/${data.length}`, 'content-length': data.length - from });
    else response.writeHead(200, { 'content-length': data.length });
    if (snapshot.cutAt === undefined) return response.end(data.subarray(from));
    response.write(data.subarray(from, snapshot.cutAt), () => response.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const fake = {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, apps, snapshots, requests, gzip: false,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
  return fake;
}
