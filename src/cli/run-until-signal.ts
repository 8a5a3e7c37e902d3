/**
 * Long-running commands (workers, scheduler) run until SIGTERM or SIGINT,
 * then close gracefully; a second signal exits at once. SIGHUP calls onHup,
 * or is ignored where there is nothing to reload.
 */
import type { Logger } from '../log.ts';

export async function runUntilSignal(logger: Logger, close: () => Promise<void>, onHup?: () => Promise<void>): Promise<void> {
  // Without a handler SIGHUP would kill the process mid-snapshot (e.g. `kill -HUP` sent to every bysu process).
  const hup = () => {
    if (!onHup) {
      logger.info({ signal: 'SIGHUP' }, 'SIGHUP ignored: nothing to reload in this process');
      return;
    }
    logger.info({ signal: 'SIGHUP' }, 'reloading');
    onHup().catch((error: unknown) => logger.error({ err: error }, 'reload failed'));
  };
  process.on('SIGHUP', hup);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      stopping = true;
      logger.info({ signal }, 'stopping');
      close().then(resolve, (error: unknown) => {
        logger.error({ err: error }, 'error while stopping');
        resolve();
      });
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  process.off('SIGHUP', hup);
}
