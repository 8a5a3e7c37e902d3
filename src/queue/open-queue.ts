/**
 * Opening a BullMQ queue by its name, typed from the queue map in jobs.ts:
 * the snapshot queue's jobs carry SnapshotJobData and return SnapshotResult
 * without anyone repeating the pair.
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { QueueName, QueuePayload, QueueResult } from './jobs.ts';

/** The named queue, with its payload and result types. */
export type TypedQueue<N extends QueueName> = Queue<QueuePayload<N>, QueueResult<N>>;

/** Given a queue's name, a Redis connection and the key prefix, return the queue. */
export function openQueue<N extends QueueName>(name: N, connection: Redis, prefix: string): TypedQueue<N> {
  return new Queue<QueuePayload<N>, QueueResult<N>>(name, { connection, prefix });
}
