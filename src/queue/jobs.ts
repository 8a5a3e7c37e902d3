/**
 * Queue names, job names, payload types and BYSU's own Redis key names: the
 * only place these strings are written.
 */
import type { PartConfig } from '../config/load.ts';

export const SNAPSHOT_QUEUE = 'snapshot';
export const RETENTION_QUEUE = 'retention';
export const SNAPSHOT_JOB = 'snapshot';

export type SnapshotTrigger = 'schedule' | 'manual';

/** Everything a worker needs to take one snapshot; workers have no inventory of their own. */
export interface SnapshotJobData {
  app: string;
  trigger: SnapshotTrigger;
  node: { name: string; host: string; port: number; user: string; hostKey?: string };
  parts: PartConfig[];
  limits: {
    timeoutMs: number;
    stallTimeoutMs: number;
    maxBytes: number;
    /** Snapshots at once against this node, all workers together. */
    perNode: number;
  };
  keep: number;
}

/** Reported with job.updateProgress while a snapshot runs. */
export interface SnapshotProgress {
  part: string;
  partIndex: number;
  parts: number;
  partBytes: number;
  bytes: number;
}

/** A snapshot job's return value. */
export interface SnapshotResult {
  id: string;
  path: string;
  bytes: number;
  warnings: string[];
  /** True when an earlier run of this job had already committed it. */
  alreadyCommitted: boolean;
}

/** BYSU's own Redis keys (BullMQ builds its own under the same prefix). */
export const redisKeys = {
  /** Sorted set of slot leases on one node: member = lease token, score = expiry (ms). */
  nodeSlots: (prefix: string, node: string) => `${prefix}:bysu:node-slots:${node}`,
};

/** Given a manual snapshot request, return its job id (BullMQ forbids ':' in custom ids). */
export function manualJobId(app: string, now: Date): string {
  return `manual-${app}-${now.getTime()}`;
}
