/**
 * Long-running commands (workers, scheduler, dashboard, up) run until SIGTERM
 * or SIGINT, then close gracefully; a second signal exits at once. SIGHUP
 * reloads their config; one that arrives while stopping is ignored.
 */
import type { LiveConfig } from '../config/live.ts';
import type { Logger } from '../log.ts';

/** The listener that holds SIGHUPs while BYSU starts (bin/bysu.js installs it first of all). */
type HeldSighup = (() => void) & { count: number; bysuHeldSighup: true };

function heldSighup(): HeldSighup | undefined {
  return process.listeners('SIGHUP').find((listener) => 'bysuHeldSighup' in listener) as HeldSighup | undefined;
}

/** For a command that does not run until a signal: SIGHUP gets its default action (exit) back. */
export function releaseHeldSighup(): void {
  const held = heldSighup();
  if (held) process.off('SIGHUP', held);
}

export async function runUntilSignal(logger: Logger, close: () => Promise<void>, live: LiveConfig): Promise<void> {
  let stoppingSince: number | null = null;
  // Without a handler SIGHUP would kill the process mid-snapshot (e.g. `kill -HUP` sent to every bysu process).
  // It stays until the process exits: a SIGHUP after "stopped" is ignored too, not a kill.
  const hup = () => {
    if (stoppingSince !== null) {
      logger.info({ signal: 'SIGHUP' }, 'SIGHUP ignored: stopping');
      return;
    }
    logger.info({ signal: 'SIGHUP' }, 'reloading the config');
    live.reloadAndLog(logger).catch((error: unknown) => logger.error({ err: error }, 'reload failed'));
  };
  process.on('SIGHUP', hup);
  // SIGHUPs that came while the process was starting (held by bin/bysu.js) are served now, by one reload.
  const held = heldSighup();
  if (held) process.off('SIGHUP', held);
  if (held && held.count > 0) {
    logger.info({ signal: 'SIGHUP', count: held.count }, 'a SIGHUP came while starting');
    hup();
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      if (stoppingSince !== null) {
        // Running jobs are abandoned here: BullMQ recovers them as stalled.
        logger.warn({ signal, stoppingForMs: Date.now() - stoppingSince }, 'second signal: exiting now');
        process.exit(1);
      }
      const since = Date.now();
      stoppingSince = since;
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
}
