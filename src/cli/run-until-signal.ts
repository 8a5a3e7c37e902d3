/**
 * Long-running commands (workers, scheduler, dashboard, up) run until SIGTERM
 * or SIGINT, then close gracefully; a second signal exits at once. SIGHUP
 * reloads their config; one that arrives while stopping is ignored. A process
 * started with an IPC channel (a worker process of `bysu up`) tells its parent
 * once it runs, and stops as on SIGTERM when the channel closes: a parent that
 * died, even by SIGKILL, leaves no worker taking jobs.
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

/** The message a process started with an IPC channel sends its parent once it runs (its signal handlers are in place). */
export const RUNNING_MESSAGE = { bysu: 'running' } as const;

export interface RunUntilSignalOptions {
  /**
   * Called with each SIGHUP, and with a second SIGTERM or SIGINT just before
   * the process exits at once: `bysu up` passes them on to its worker
   * processes. (The first SIGTERM or SIGINT is close()'s to pass on.)
   */
  passOn?: (signal: NodeJS.Signals) => void;
}

export async function runUntilSignal(logger: Logger, close: () => Promise<void>, live: LiveConfig, options: RunUntilSignalOptions = {}): Promise<void> {
  let stoppingSince: number | null = null;
  // Without a handler SIGHUP would kill the process mid-snapshot (e.g. `kill -HUP` sent to every bysu process).
  // It stays until the process exits: a SIGHUP after "stopped" is ignored too, not a kill.
  const hup = () => {
    options.passOn?.('SIGHUP');
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
  let parentGone: (() => void) | null = null;
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals | 'parent gone') => {
      if (stoppingSince !== null) {
        if (signal === 'parent gone') return;
        options.passOn?.(signal);
        // Running jobs are abandoned here: BullMQ recovers them as stalled.
        logger.warn({ signal, stoppingForMs: Date.now() - stoppingSince }, 'second signal: exiting now');
        process.exit(1);
      }
      const since = Date.now();
      stoppingSince = since;
      if (signal === 'parent gone') logger.error('the parent process (bysu up) is gone: stopping, as on SIGTERM');
      else logger.info({ signal }, 'stopping');
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
    if (process.send) {
      parentGone = () => stop('parent gone');
      process.on('disconnect', parentGone);
      if (process.connected) process.send(RUNNING_MESSAGE, undefined, {}, () => undefined);
      else parentGone();
    }
  });
  // The channel no longer keeps the process alive once it has stopped.
  if (parentGone) process.off('disconnect', parentGone);
}
