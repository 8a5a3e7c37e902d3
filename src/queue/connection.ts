/**
 * ioredis connections for BullMQ. Workers get a connection that waits and
 * reconnects forever (BullMQ needs `maxRetriesPerRequest: null`); producers
 * such as the CLI fail fast with a clear "Redis unreachable at …" instead.
 * BullMQ is given client instances, not options: in native ESM it cannot
 * load ioredis itself.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { RedisUnavailableError } from '../errors.ts';

/** RESP2: the protocol BullMQ's own test suite runs on (ioredis 6 defaults to RESP3). */
const COMMON: RedisOptions = { protocol: 2, connectionName: 'bysu' };

/** Given a Redis URL, return it with any password replaced, for messages and logs. */
export function redactRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    else if (parsed.username) parsed.username = '***'; // `redis://secret@host` is a password too
    for (const key of [...parsed.searchParams.keys()]) {
      if (/pass|secret|token|auth/i.test(key)) parsed.searchParams.set(key, '***');
    }
    return parsed.toString();
  } catch {
    return url.replace(/\/\/.*@/, '//***@').replace(/\?.*$/, '');
  }
}

/** Given the Redis URL, return a connection for long-running processes (workers, scheduler). */
export function createWorkerConnection(url: string): Redis {
  return new Redis(url, {
    ...COMMON,
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    retryStrategy: (times) => Math.min(200 * times, 5000),
  });
}

/**
 * Given the Redis URL, return a connection for the dashboard: it reconnects
 * forever, but a request made while Redis is down fails after one retry
 * instead of waiting, so pages and /healthz answer (with an error) at once.
 */
export function createDashboardConnection(url: string): Redis {
  return new Redis(url, { ...COMMON, maxRetriesPerRequest: 1, retryStrategy: (times) => Math.min(200 * times, 2000) });
}

/**
 * Given the Redis URL, connect for a short-lived producer (CLI) and return the
 * connection. Throw RedisUnavailableError naming the URL when Redis does not
 * answer within timeoutMs.
 */
export async function connectProducer(url: string, timeoutMs = 5000): Promise<Redis> {
  const client = new Redis(url, {
    ...COMMON,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: timeoutMs,
    retryStrategy: () => null,
  });
  // The socket error (ECONNREFUSED, ETIMEDOUT…) says more than connect()'s "Connection is closed".
  let socketError: Error | null = null;
  client.on('error', (error: Error) => {
    socketError ??= error;
  });
  try {
    await client.connect();
    await client.ping();
  } catch (error) {
    client.disconnect();
    throw new RedisUnavailableError(`Redis unreachable at ${redactRedisUrl(url)}: ${(socketError ?? (error as Error)).message}`);
  }
  return client;
}
