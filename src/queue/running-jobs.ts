import type { SNAPSHOT_QUEUE } from './jobs.ts';
import type { TypedQueue } from './open-queue.ts';
import { safeJobName } from '../repository/layout.ts';

/** Given the snapshot queue, return the job names (as in attempt directory names) of the snapshot jobs running now. */
export async function runningSnapshotJobs(snapshotQueue: TypedQueue<typeof SNAPSHOT_QUEUE>): Promise<Set<string>> {
  const active = await snapshotQueue.getJobs(['active']);
  return new Set(active.map((job) => safeJobName(String(job.id))));
}
