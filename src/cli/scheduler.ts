/** `bysu scheduler`: reconcile job schedulers with the config, on start and on SIGHUP; heartbeat; stale alerts. */
import { createLogger } from '../log.ts';
import { startScheduler } from '../scheduler/scheduler.ts';
import { EXIT_OK, loadLiveConfig, type GlobalOptions } from './context.ts';
import { runUntilSignal } from './run-until-signal.ts';
import { checkAlerts } from './start-checks.ts';

export async function scheduler(globals: GlobalOptions): Promise<number> {
  const live = await loadLiveConfig(globals, checkAlerts);
  const logger = createLogger(live.current().log.level, 'bysu-scheduler');
  const running = await startScheduler(live, logger);
  await runUntilSignal(logger, () => running.close(), live);
  return EXIT_OK;
}
