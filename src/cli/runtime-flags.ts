/**
 * The V8 flags `bin/bysu.js` runs with (its `#!/usr/bin/env -S node …` line;
 * a test keeps the two in step). Only node's command line can set them:
 * NODE_OPTIONS refuses V8 flags, and setting GC flags after start crashes V8.
 * Measured on the 2-core machines (BENCHMARKS.md, "V8 flags"):
 *
 * --no-concurrent-array-buffer-sweeping: a worker streams a gigabyte through
 *   some 30 000 short-lived ArrayBuffers (ssh2's socket reads); sweeping them
 *   on V8's helper threads costs a thread hand-off per scavenge. 1 GiB through
 *   takeSnapshot, alternating 5 times: 2.93 CPU seconds and 2.68 s without the
 *   flags, 2.36 and 2.32 s with both.
 * --max-semi-space-size=2: the young generation grows to 2 × 16 MiB under
 *   that allocation rate and stays there; capped at 2 MiB, a worker's peak RSS
 *   is 10–15 MiB lower, at the same CPU.
 */
export const RUNTIME_V8_FLAGS = ['--no-concurrent-array-buffer-sweeping', '--max-semi-space-size=2'] as const;

/** The flags of RUNTIME_V8_FLAGS this process was started without (run as `node bin/bysu.js`, say). */
export function missingRuntimeFlags(execArgv: readonly string[] = process.execArgv): string[] {
  return RUNTIME_V8_FLAGS.filter((flag) => !execArgv.includes(flag));
}

/** Say so when a snapshot worker runs without bin/bysu.js's V8 flags: it works, but costs more CPU per GiB. */
export function warnAboutMissingFlags(logger: { warn: (object: object, message: string) => void }): void {
  const missing = missingRuntimeFlags();
  if (missing.length > 0) {
    logger.warn({ missing }, 'started without the V8 flags of bin/bysu.js (run bin/bysu.js itself, not `node bin/bysu.js`): snapshots will cost about a quarter more CPU');
  }
}
