/** `bysu dashboard`: the overview at /, Bull Board at /board/, /healthz, /metrics and /api until SIGTERM or SIGINT; SIGHUP reloads the config. */
import { startDashboard } from '../dashboard/server.ts';
import { createLogger } from '../log.ts';
import { EXIT_OK, loadLiveConfig, type GlobalOptions } from './context.ts';
import { runUntilSignal } from './run-until-signal.ts';
import { checkDashboard } from './start-checks.ts';

export async function dashboard(globals: GlobalOptions): Promise<number> {
  const live = await loadLiveConfig(globals, checkDashboard);
  const logger = createLogger(live.current().log.level, 'bysu-dashboard');
  const running = await startDashboard(live, logger);
  await runUntilSignal(logger, () => running.close(), live);
  return EXIT_OK;
}
