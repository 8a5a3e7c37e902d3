/** `bysu dashboard`: Bull Board, /healthz, /metrics and /api until SIGTERM or SIGINT. */
import { startDashboard } from '../dashboard/server.ts';
import { createLogger } from '../log.ts';
import { EXIT_OK, loadCliConfig, type GlobalOptions } from './context.ts';
import { runUntilSignal } from './run-until-signal.ts';

export async function dashboard(globals: GlobalOptions): Promise<number> {
  const config = loadCliConfig(globals);
  const logger = createLogger(config.log.level, 'bysu-dashboard');
  const running = await startDashboard(config, logger);
  await runUntilSignal(logger, () => running.close());
  return EXIT_OK;
}
