/**
 * One voice per process for the state of Redis. Every ioredis client and
 * BullMQ queue or worker of a process reports its errors here instead of
 * logging them: while Redis is unreachable each of them fails on every
 * reconnect attempt (a worker's five emitters, several times a second), and a
 * night's outage would otherwise write hundreds of thousands of lines. The
 * rule: the loss is logged once, then at most one line per interval with how
 * many errors were suppressed, then once when Redis is reachable again.
 */
import { Redis } from 'ioredis';
import { formatDuration } from '../config/formats.ts';
import type { Logger } from '../log.ts';
import { redactRedisUrl } from './connection.ts';

/** Least time between two "redis still unreachable" lines (and between repeats of any other Redis error). */
export const REDIS_LOG_INTERVAL_MS = 60_000;

/** Socket error codes that mean "cannot talk to Redis", not "Redis refused this command". */
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'ECONNABORTED']);
/** Messages of ioredis and BullMQ errors with no code that mean the same. */
const CONNECTION_MESSAGES = /Connection is closed|Stream isn't writeable|connect ETIMEDOUT|max retries per request|ECONNREFUSED|ECONNRESET|socket (hang up|closed)/i;

/** Given an error from ioredis or BullMQ, return whether it says the connection to Redis is lost (rather than a command failing). */
export function isConnectionError(error: Error): boolean {
  const code = (error as { code?: unknown }).code;
  return (typeof code === 'string' && CONNECTION_CODES.has(code)) || CONNECTION_MESSAGES.test(error.message) || error.name === 'MaxRetriesPerRequestError';
}

/** Anything that emits 'error' (an ioredis client, a BullMQ Queue, Worker or QueueEvents), and 'ready' when it is an ioredis client. */
export interface RedisErrorSource {
  on(event: 'error', listener: (error: Error) => void): unknown;
}

export interface RedisHealthOptions {
  /** Least time between two lines while Redis stays unreachable. @defaultValue REDIS_LOG_INTERVAL_MS */
  intervalMs?: number;
}

interface Outage {
  since: number;
  lastLineAt: number;
  /** Errors not logged since the last line. */
  suppressed: number;
  /** Errors not logged over the whole outage. */
  total: number;
}

/**
 * The Redis state of one process, as its log tells it. Create one per process
 * (`bysu up` shares one among its components, so an outage is one line for
 * the whole process) and `watch` every client, queue and worker with it.
 */
export class RedisHealth {
  private outage: Outage | null = null;
  /** Other (command) errors, by source and message: first logged, repeats counted. */
  private readonly repeats = new Map<string, { lastLineAt: number; suppressed: number }>();
  private readonly intervalMs: number;
  private readonly url: string;

  constructor(private readonly logger: Logger, url: string, options: RedisHealthOptions = {}) {
    this.url = redactRedisUrl(url);
    this.intervalMs = options.intervalMs ?? REDIS_LOG_INTERVAL_MS;
    if (!(this.intervalMs > 0)) throw new Error(`RedisHealth intervalMs must be greater than 0, got ${this.intervalMs}`);
  }

  /** Whether the last thing heard from Redis was a lost connection. */
  get unreachable(): boolean {
    return this.outage !== null;
  }

  /**
   * Given an ioredis client or a BullMQ Queue, Worker or QueueEvents and a
   * name for it, route its 'error' events here; a client's 'ready' event ends
   * an outage. Its errors are never logged one by one again.
   */
  watch(source: RedisErrorSource, name: string): void {
    source.on('error', (error: Error) => this.error(error, name));
    // Only an ioredis client's 'ready' says the connection itself is back.
    if (source instanceof Redis) source.on('ready', () => this.ready());
  }

  /** Given an error from `source`, log it if it is news, else count it. */
  error(error: Error, source: string): void {
    const now = Date.now();
    if (this.outage !== null) {
      // Whatever fails while Redis is unreachable is a consequence of that: counted, not logged.
      this.outage.suppressed += 1;
      this.outage.total += 1;
      if (now - this.outage.lastLineAt >= this.intervalMs) {
        this.logger.warn({ redis: this.url, err: error.message, suppressed: this.outage.suppressed, downForMs: now - this.outage.since },
          `redis still unreachable; ${this.outage.suppressed} errors suppressed`);
        this.outage.lastLineAt = now;
        this.outage.suppressed = 0;
      }
      return;
    }
    if (isConnectionError(error)) {
      this.outage = { since: now, lastLineAt: now, suppressed: 0, total: 0 };
      this.logger.warn({ redis: this.url, err: error.message, source }, `redis unreachable at ${this.url}: ${error.message}`);
      return;
    }
    const key = `${source}\u0000${error.message}`;
    const seen = this.repeats.get(key);
    if (seen && now - seen.lastLineAt < this.intervalMs) {
      seen.suppressed += 1;
      return;
    }
    if (this.repeats.size >= 100) this.repeats.clear(); // bounded: a source of ever-new messages cannot grow it
    this.logger.error({ redis: this.url, err: error.message, source, ...(seen?.suppressed ? { repeatedSinceLastLine: seen.suppressed } : {}) }, `${source} error: ${error.message}`);
    this.repeats.set(key, { lastLineAt: now, suppressed: 0 });
  }

  /** A client is connected and ready: end the outage, if any, with one line. */
  ready(): void {
    if (this.outage === null) return;
    const downMs = Date.now() - this.outage.since;
    this.logger.info({ redis: this.url, downMs, suppressed: this.outage.total },
      `redis reachable again after ${formatDuration(Math.max(1000, Math.round(downMs / 1000) * 1000))}`);
    this.outage = null;
  }
}
