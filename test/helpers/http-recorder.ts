/** A local HTTP server that records every request (method, path, JSON body), for webhook and ping tests. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  path: string;
  body: unknown;
  at: number;
}

export interface HttpRecorder {
  url: string;
  requests: RecordedRequest[];
  /** How to answer from now on: 200 (ok, the default), 503 (down), or never (hang: the request stays open). */
  answer(mode: 'ok' | 'down' | 'hang'): void;
  /** Resolve when a request matching `match` has arrived (or throw after timeoutMs). */
  waitFor(match: (request: RecordedRequest) => boolean, timeoutMs?: number): Promise<RecordedRequest>;
  close(): Promise<void>;
}

export async function startHttpRecorder(): Promise<HttpRecorder> {
  const requests: RecordedRequest[] = [];
  let mode: 'ok' | 'down' | 'hang' = 'ok';
  const server = http.createServer((request, response) => {
    let text = '';
    request.on('data', (chunk: Buffer) => (text += chunk.toString()));
    request.on('end', () => {
      let body: unknown = text;
      try {
        body = text ? JSON.parse(text) : null;
      } catch {
        // keep the text
      }
      requests.push({ method: request.method ?? '', path: request.url ?? '', body, at: Date.now() });
      if (mode === 'hang') return;
      if (mode === 'down') response.writeHead(503, { 'content-type': 'text/plain' }).end('down');
      else response.writeHead(200, { 'content-type': 'text/plain' }).end('OK');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    answer(next) {
      mode = next;
    },
    async waitFor(match, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = requests.find(match);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no matching request after ${timeoutMs} ms; got ${JSON.stringify(requests.map((r) => `${r.method} ${r.path}`))}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    close: () => {
      server.closeAllConnections(); // hung requests too
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
