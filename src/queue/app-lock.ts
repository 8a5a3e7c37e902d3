/**
 * A per-app lock in Redis, held while a snapshot of the app is committed and
 * while its retention runs, so the two never interleave. A lease with a
 * token: only the holder releases it, and a crashed holder's lock expires.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { CommitConflictError } from '../errors.ts';
import { redisKeys } from './jobs.ts';

const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`;

export interface AppLockOptions {
  /** Lease of the lock, renewed while held; a crashed holder's lock frees after it. @defaultValue 120000 */
  leaseMs?: number;
  /** How long to wait for a busy lock before giving up. @defaultValue 60000 */
  waitMs?: number;
}

/** Given to the function run under the lock. */
export interface AppLockLease {
  /**
   * Extend the lease now if this holder still has the lock; throw
   * CommitConflictError when it lost it (a pause longer than the lease, and
   * another process took the lock). Call it right before an irreversible step.
   */
  confirm(): Promise<void>;
}

/**
 * Given Redis, the key prefix, an app and a function, run the function while
 * holding the app's lock, passing it the lease so that it can confirm that it
 * still holds the lock. Throw CommitConflictError (retryable) when the lock
 * stays busy for waitMs.
 */
export async function withAppLock<T>(redis: Redis, prefix: string, app: string, fn: (lease: AppLockLease) => Promise<T>, options: AppLockOptions = {}): Promise<T> {
  const key = redisKeys.appLock(prefix, app);
  const token = randomBytes(8).toString('hex');
  const leaseMs = options.leaseMs ?? 120_000;
  const deadline = Date.now() + (options.waitMs ?? 60_000);
  while ((await redis.set(key, token, 'PX', leaseMs, 'NX')) !== 'OK') {
    if (Date.now() > deadline) throw new CommitConflictError(`the lock of app ${app} stayed busy for ${options.waitMs ?? 60_000} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100 + Math.floor(Math.random() * 200)));
  }
  // Renewed while held, so a long holder (deleting many snapshots over NFS) keeps it; a dead one loses it.
  const renewal = setInterval(() => {
    redis.eval(RENEW, 1, key, token, leaseMs).catch(() => undefined);
  }, Math.max(1000, Math.floor(leaseMs / 3)));
  const lease: AppLockLease = {
    async confirm() {
      // Compare-and-extend in one script: checking and then extending could extend another holder's lock.
      if (Number(await redis.eval(RENEW, 1, key, token, leaseMs)) !== 1) {
        throw new CommitConflictError(`lost the lock of app ${app}: its lease (${leaseMs} ms) ran out and another process may hold it`);
      }
    },
  };
  try {
    return await fn(lease);
  } finally {
    clearInterval(renewal);
    await redis.eval(RELEASE, 1, key, token).catch(() => undefined);
  }
}
