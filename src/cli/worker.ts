/** `bysu worker snapshot|retention|drill|verify|mirror`: run a worker until SIGTERM or SIGINT; SIGHUP reloads the config. */
import { createLogger } from '../log.ts';
import { startDrillWorker } from '../workers/drill.ts';
import { startMirrorWorker } from '../workers/mirror.ts';
import { startRetentionWorker } from '../workers/retention.ts';
import { startSnapshotWorker } from '../workers/snapshot.ts';
import { startVerifyWorker } from '../workers/verify.ts';
import { EXIT_OK, EXIT_USAGE, ExitError, loadLiveConfig, type GlobalOptions } from './context.ts';
import { runUntilSignal } from './run-until-signal.ts';
import { checkNodeWorker, checkRepositoryWorker } from './start-checks.ts';
import { warnAboutMissingFlags } from './runtime-flags.ts';

export const WORKER_KINDS = ['snapshot', 'retention', 'drill', 'verify', 'mirror'] as const;

/**
 * Given the global options, the kind of worker and, for a worker process of
 * `bysu up`, its index (tagged on every log line), run the worker until
 * SIGTERM or SIGINT (or, started by `bysu up`, until its parent is gone).
 */
export async function worker(globals: GlobalOptions, kind: string, options: { workerIndex?: number } = {}): Promise<number> {
  if (!(WORKER_KINDS as readonly string[]).includes(kind)) {
    throw new ExitError(EXIT_USAGE, `unknown worker "${kind}" (available: ${WORKER_KINDS.join(', ')})`);
  }
  // At start and at each reload: a marked repository, and for the workers that log in to nodes a usable key.
  const logsInToNodes = kind === 'snapshot' || kind === 'drill';
  const live = await loadLiveConfig(globals, logsInToNodes ? checkNodeWorker : checkRepositoryWorker);
  const processLogger = createLogger(live.current().log.level, `bysu-worker-${kind}`);
  const logger = options.workerIndex === undefined ? processLogger : processLogger.child({ worker: options.workerIndex });
  if (kind === 'snapshot') warnAboutMissingFlags(logger);
  const start = { snapshot: startSnapshotWorker, drill: startDrillWorker, retention: startRetentionWorker, verify: startVerifyWorker, mirror: startMirrorWorker }[kind as (typeof WORKER_KINDS)[number]];
  const running = await start(live, logger);
  await runUntilSignal(logger, () => running.close(), live);
  return EXIT_OK;
}
