/** `bysu worker snapshot`: run a snapshot worker until SIGTERM or SIGINT. */
import { checkSshFiles } from '../config/load.ts';
import { createLogger } from '../log.ts';
import { startSnapshotWorker } from '../../workers/snapshot.ts';
import { EXIT_OK, EXIT_USAGE, ExitError, loadCliConfig, type GlobalOptions } from './context.ts';

export const WORKER_KINDS = ['snapshot'] as const;

export async function worker(globals: GlobalOptions, kind: string): Promise<number> {
  if (!(WORKER_KINDS as readonly string[]).includes(kind)) {
    throw new ExitError(EXIT_USAGE, `unknown worker "${kind}" (available: ${WORKER_KINDS.join(', ')})`);
  }
  const config = loadCliConfig(globals);
  checkSshFiles(config);
  const logger = createLogger(config.log.level, `bysu-worker-${kind}`);
  const running = await startSnapshotWorker(config, logger);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      stopping = true;
      logger.info({ signal }, 'stopping');
      running.close().then(resolve, (error: unknown) => {
        logger.error({ err: error }, 'error while stopping');
        resolve();
      });
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  return EXIT_OK;
}
