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
export function connectProducer(url: string, timeoutMs = 5000): Promise<Redis> {
  return connectOnce(url, timeoutMs, { maxRetriesPerRequest: 1 });
}

/**
 * Given the Redis URL, connect for a CLI's QueueEvents (its blocking XREAD
 * needs `maxRetriesPerRequest: null`, which BullMQ checks) and return the
 * connection. Like a producer's, it fails fast and never reconnects: a wait
 * that lost Redis ends with an error rather than hanging.
 */
export function connectEventReader(url: string, timeoutMs = 5000): Promise<Redis> {
  return connectOnce(url, timeoutMs, { maxRetriesPerRequest: null });
}

async function connectOnce(url: string, timeoutMs: number, options: RedisOptions): Promise<Redis> {
  const client = new Redis(url, {
    ...COMMON,
    lazyConnect: true,
    enableOfflineQueue: false,
    connectTimeout: timeoutMs,
    retryStrategy: () => null,
    ...options,
  });
  // The socket error (ECONNREFUSED, ETIMEDOUT…) says more than connect()'s "Connection is closed".
  let socketError: Error | null = null;
  client.on('error', (error: Error) => {
    socketError ??= error;
  });
  // connectTimeout bounds the TCP connect only: a Redis that accepts and never answers (SIGSTOPped, a wrong
  // service on the port) kept the ready check and the PING waiting for ever. The whole handshake is bounded.
  let timer: NodeJS.Timeout | undefined;
  const silent = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  const handshake = (async () => {
    await client.connect();
    await client.ping();
  })();
  handshake.catch(() => undefined); // after a timeout it fails too, once the client is disconnected
  try {
    await Promise.race([handshake, silent]);
  } catch (error) {
    client.disconnect();
    throw new RedisUnavailableError(`Redis unreachable at ${redactRedisUrl(url)}: ${(socketError ?? (error as Error)).message}`);
  } finally {
    clearTimeout(timer);
  }
  return client;
}

/** How long a process waits for Redis to answer while it closes before it drops the connection. */
export const CLOSE_BOUND_MS = 2000;

/** Given a promise and a time, resolve true when it settles within ms, else false (it is left running). */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true, () => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Given a long-lived connection, close it: QUIT when Redis answers within
 * boundMs, else drop the socket. A QUIT sent while Redis is unreachable waits
 * in the offline queue for a reconnect that may never come. Returns which.
 */
export async function closeConnection(connection: Redis, boundMs = CLOSE_BOUND_MS): Promise<'quit' | 'dropped'> {
  if (connection.status === 'ready' && await settlesWithin(connection.quit(), boundMs)) return 'quit';
  connection.disconnect();
  return 'dropped';
}
