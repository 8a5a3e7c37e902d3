/** `bysu worker snapshot|retention|drill`: run a worker until SIGTERM or SIGINT. */
import { checkSshFiles } from '../config/load.ts';
import { createLogger } from '../log.ts';
import { startDrillWorker } from '../../workers/drill.ts';
import { startRetentionWorker } from '../../workers/retention.ts';
import { startSnapshotWorker } from '../../workers/snapshot.ts';
import { EXIT_OK, EXIT_USAGE, ExitError, loadCliConfig, type GlobalOptions } from './context.ts';
import { runUntilSignal } from './run-until-signal.ts';
import { warnAboutMissingFlags } from './runtime-flags.ts';

export const WORKER_KINDS = ['snapshot', 'retention', 'drill'] as const;

export async function worker(globals: GlobalOptions, kind: string): Promise<number> {
  if (!(WORKER_KINDS as readonly string[]).includes(kind)) {
    throw new ExitError(EXIT_USAGE, `unknown worker "${kind}" (available: ${WORKER_KINDS.join(', ')})`);
  }
  const config = loadCliConfig(globals);
  const logger = createLogger(config.log.level, `bysu-worker-${kind}`);
  if (kind === 'snapshot') {
    checkSshFiles(config);
    warnAboutMissingFlags(logger);
    const running = await startSnapshotWorker(config, logger);
    await runUntilSignal(logger, () => running.close());
  } else if (kind === 'drill') {
    checkSshFiles(config);
    const running = await startDrillWorker(config, logger);
    await runUntilSignal(logger, () => running.close());
  } else {
    const running = await startRetentionWorker(config, logger);
    await runUntilSignal(logger, () => running.close());
  }
  return EXIT_OK;
}
