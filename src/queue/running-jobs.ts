import type { Queue } from 'bullmq';
import { safeJobName } from '../repository/layout.ts';

/** Given the snapshot queue, return the job names (as in attempt directory names) of the snapshot jobs running now. */
export async function runningSnapshotJobs(snapshotQueue: Queue): Promise<Set<string>> {
  const active = await snapshotQueue.getJobs(['active']);
  return new Set(active.map((job) => safeJobName(String(job.id))));
}
