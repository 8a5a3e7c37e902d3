/**
 * A per-node semaphore shared by every worker process: at most `limit`
 * leases per node, each expiring unless renewed, so the slot of a worker that
 * died frees itself within one lease. Times come from the Redis server's
 * clock, not the workers'.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { redisKeys } from './jobs.ts';

/** How long a slot is held without renewal. */
export const NODE_SLOT_LEASE_MS = 45_000;

const NOW = `local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

const ACQUIRE = `${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local lease = tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[2]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], lease * 2)
  return 1
end
return 0`;

const RENEW = `${NOW}
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  local lease = tonumber(ARGV[2])
  redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], lease * 2)
  return 1
end
return 0`;

export interface NodeSlot {
  node: string;
  token: string;
  /** Renew the lease; false when it was lost (expired and possibly taken). */
  renew(): Promise<boolean>;
  release(): Promise<void>;
}

export class NodeSlots {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly leaseMs = NODE_SLOT_LEASE_MS,
  ) {}

  /** Given a node, its limit and an owner label, take a slot; null when the node is at its limit. */
  async acquire(node: string, limit: number, owner: string): Promise<NodeSlot | null> {
    const key = redisKeys.nodeSlots(this.prefix, node);
    const token = `${owner}:${randomBytes(6).toString('hex')}`;
    const taken = await this.redis.eval(ACQUIRE, 1, key, limit, token, this.leaseMs);
    if (taken !== 1) return null;
    return {
      node,
      token,
      renew: async () => (await this.redis.eval(RENEW, 1, key, token, this.leaseMs)) === 1,
      release: async () => {
        await this.redis.zrem(key, token);
      },
    };
  }

  /** Given a node, return how many unexpired leases it has (for tests and status). */
  async holders(node: string): Promise<number> {
    const key = redisKeys.nodeSlots(this.prefix, node);
    const [seconds, micros] = (await this.redis.time()) as [string | number, string | number];
    return this.redis.zcount(key, Number(seconds) * 1000 + Math.floor(Number(micros) / 1000), '+inf');
  }
}
