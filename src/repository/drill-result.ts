/**
 * A drill result: what one restore drill did, as written to
 * `<app>/.drills/<finishedAt>-<job>.json` (format DRILL_RESULT_FORMAT). Like
 * the manifest, it is a file format of the repository, meant to be read
 * without BYSU.
 */
import type { DRILL_RESULT_FORMAT } from './layout.ts';

/** One step of a drill: the command, what it was fed and how it ended. */
export interface DrillStepResult {
  run: string;
  /** The part streamed into the command's stdin. */
  stdin?: string;
  bytesIn?: number;
  exitCode: number | null;
  durationMs: number;
  expect?: string;
  matched?: boolean;
  stdoutTail: string;
}

/** What a drill did, as written to `<app>/.drills/<id>.json`. */
export interface DrillResult {
  format: typeof DRILL_RESULT_FORMAT;
  app: string;
  /** The snapshot restored. */
  snapshotId: string | null;
  node: string;
  jobId: string;
  startedAt: string;
  finishedAt: string;
  passed: boolean;
  /** Why it failed (the step and its stderr), when it did. */
  error: string | null;
  steps: DrillStepResult[];
}
