/**
 * A private redis-server per test file: a random loopback port, no
 * persistence unless asked, stopped afterwards. Never touches port 6379.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { freePort, spawnTracked, stopProcess, waitForPort, withTempDir } from './processes.ts';
import type { ChildProcess } from 'node:child_process';

export interface TestRedis {
  url: string;
  port: number;
  dir: string;
  /** Stop and start the server again on the same port (with AOF, data survives). */
  restart(): Promise<void>;
  /** Stop the server (start() brings it back on the same port). */
  stop(): Promise<void>;
  start(): Promise<void>;
}

/** Which redis-server to use; a clear message when it is missing. */
export function redisServerPath(): string {
  for (const candidate of ['/usr/bin/redis-server', '/usr/local/bin/redis-server']) if (existsSync(candidate)) return candidate;
  throw new Error('redis-server is not installed: run `npm run setup` (or apt-get install -y redis-server)');
}

/** Start a private redis-server, run fn, stop it. `appendonly` turns AOF on (for restart tests). */
export async function withRedis<T>(fn: (redis: TestRedis) => Promise<T>, options: { appendonly?: boolean } = {}): Promise<T> {
  return withTempDir(async (dir) => {
    const port = await freePort();
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir,
      '--appendonly', options.appendonly ? 'yes' : 'no', '--maxmemory-policy', 'noeviction', '--logfile', path.join(dir, 'redis.log')];
    let child: ChildProcess = spawnTracked(redisServerPath(), args);
    await waitForPort(port);
    const redis: TestRedis = {
      url: `redis://127.0.0.1:${port}/0`,
      port,
      dir,
      async restart() {
        await redis.stop();
        await redis.start();
      },
      async stop() {
        await stopProcess(child);
      },
      async start() {
        child = spawnTracked(redisServerPath(), args);
        await waitForPort(port);
      },
    };
    try {
      return await fn(redis);
    } finally {
      await stopProcess(child);
    }
  });
}
