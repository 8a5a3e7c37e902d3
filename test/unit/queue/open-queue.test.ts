import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RETENTION_JOB, SNAPSHOT_JOB, type RETENTION_QUEUE, type SNAPSHOT_QUEUE } from '../../../src/queue/jobs.ts';
import type { TypedQueue } from '../../../src/queue/open-queue.ts';

// Checked by the type check (`tsc --noEmit`), not at run time: each queue accepts its own payload only.
// Fails before the queue map: an untyped Queue takes any payload, and the @ts-expect-error is unused.
test('a queue opened by name takes its own payload and no other', () => {
  const addToEach = async (snapshot: TypedQueue<typeof SNAPSHOT_QUEUE>, retention: TypedQueue<typeof RETENTION_QUEUE>) => {
    await retention.add(RETENTION_JOB, { targets: [], reason: 'sweep' });
    // @ts-expect-error a retention payload is not a snapshot payload
    await snapshot.add(SNAPSHOT_JOB, { targets: [], reason: 'sweep' });
  };
  assert.equal(typeof addToEach, 'function');
});
