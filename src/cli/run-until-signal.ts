/**
 * Long-running commands (workers, scheduler, dashboard, up) run until SIGTERM
 * or SIGINT, then close gracefully; a second signal exits at once. SIGHUP
 * calls onHup (each reloads its config); one that arrives while stopping is
 * ignored.
 */
import type { Logger } from '../log.ts';

export async function runUntilSignal(logger: Logger, close: () => Promise<void>, onHup: () => Promise<void>): Promise<void> {
  let stopping = false;
  // Without a handler SIGHUP would kill the process mid-snapshot (e.g. `kill -HUP` sent to every bysu process).
  const hup = () => {
    if (stopping) {
      logger.info({ signal: 'SIGHUP' }, 'SIGHUP ignored: stopping');
      return;
    }
    logger.info({ signal: 'SIGHUP' }, 'reloading the config');
    onHup().catch((error: unknown) => logger.error({ err: error }, 'reload failed'));
  };
  process.on('SIGHUP', hup);
  await new Promise<void>((resolve) => {
    let stoppingSince: number | null = null;
    const stop = (signal: NodeJS.Signals) => {
      if (stoppingSince !== null) {
        // Running jobs are abandoned here: BullMQ recovers them as stalled.
        logger.warn({ signal, stoppingForMs: Date.now() - stoppingSince }, 'second signal: exiting now');
        process.exit(1);
      }
      const since = Date.now();
      stoppingSince = since;
      stopping = true;
      logger.info({ signal }, 'stopping');
      const stopped = () => {
        logger.info({ signal, stoppedInMs: Date.now() - since }, 'stopped');
        resolve();
      };
      close().then(stopped, (error: unknown) => {
        logger.error({ err: error }, 'error while stopping');
        stopped();
      });
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  process.off('SIGHUP', hup);
}
