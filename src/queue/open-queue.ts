/**
 * Opening a BullMQ queue by its name, typed from the queue map in jobs.ts:
 * the snapshot queue's jobs carry SnapshotJobData and return SnapshotResult
 * without anyone repeating the pair.
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { DRILL_QUEUE, MIRROR_QUEUE, RETENTION_QUEUE, SNAPSHOT_QUEUE, VERIFY_QUEUE, type QueueName, type QueuePayload, type QueueResult } from './jobs.ts';
import type { RedisHealth } from './redis-health.ts';

/** The named queue, with its payload and result types. */
export type TypedQueue<N extends QueueName> = Queue<QueuePayload<N>, QueueResult<N>>;

/** Given a queue's name, a Redis connection and the key prefix, return the queue. */
export function openQueue<N extends QueueName>(name: N, connection: Redis, prefix: string): TypedQueue<N> {
  return new Queue<QueuePayload<N>, QueueResult<N>>(name, { connection, prefix });
}

/** Every queue, by name. */
export type AllQueues = { [N in QueueName]: TypedQueue<N> };

/**
 * Given a Redis connection, the key prefix and where Redis errors are
 * reported, open every queue (for a process that watches them all: the
 * scheduler, the dashboard) and return them with a close() for all.
 */
export function openAllQueues(connection: Redis, prefix: string, redisHealth: RedisHealth): AllQueues & { close(): Promise<void> } {
  const queues: AllQueues = {
    [SNAPSHOT_QUEUE]: openQueue(SNAPSHOT_QUEUE, connection, prefix),
    [RETENTION_QUEUE]: openQueue(RETENTION_QUEUE, connection, prefix),
    [DRILL_QUEUE]: openQueue(DRILL_QUEUE, connection, prefix),
    [VERIFY_QUEUE]: openQueue(VERIFY_QUEUE, connection, prefix),
    [MIRROR_QUEUE]: openQueue(MIRROR_QUEUE, connection, prefix),
  };
  for (const queue of Object.values(queues)) redisHealth.watch(queue, `${queue.name} queue`);
  return { ...queues, close: async () => void (await Promise.all(Object.values(queues).map((queue) => queue.close()))) };
}
