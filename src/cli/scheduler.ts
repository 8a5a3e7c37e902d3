/** `bysu scheduler`: reconcile job schedulers with the config, on start and on SIGHUP; heartbeat; stale alerts. */
import { resolveConfigPath } from '../config/load.ts';
import { createLogger } from '../log.ts';
import { startScheduler } from '../../scheduler/index.ts';
import { EXIT_OK, loadCliConfig, type GlobalOptions } from './context.ts';
import { runUntilSignal } from './run-until-signal.ts';

export async function scheduler(globals: GlobalOptions): Promise<number> {
  const config = loadCliConfig(globals);
  const logger = createLogger(config.log.level, 'bysu-scheduler');
  const running = await startScheduler(resolveConfigPath(globals.config), config, logger);
  await runUntilSignal(logger, () => running.close(), () => running.reload());
  return EXIT_OK;
}
