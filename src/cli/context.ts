/**
 * What every subcommand shares: the global options, loading the config, and
 * the error that carries an exit status.
 */
import { LiveConfig, type StartCheck } from '../config/live.ts';
import { loadConfig, resolveConfigPath, type Config } from '../config/load.ts';

export interface GlobalOptions {
  config?: string;
}

/** Exit statuses of `bysu` (README "Command line"). */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** Thrown by a command to end with a status and a message, without a stack trace. */
export class ExitError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** Given the global options, load and return the config (throws ConfigError). */
export function loadCliConfig(options: GlobalOptions): Config {
  return loadConfig(resolveConfigPath(options.config));
}

/**
 * Given the global options and what this process checks before it starts
 * (throwing ConfigError), load the config, check it, and return it live:
 * each reload is checked the same way before it takes effect.
 */
export async function loadLiveConfig(options: GlobalOptions, check: StartCheck = () => undefined): Promise<LiveConfig> {
  const config = loadCliConfig(options);
  await check(config);
  return new LiveConfig(config.source, config, check);
}

/** Given an app name, throw a usage error unless it is a valid name. */
export function requireAppNames(config: Config, names: string[], all: boolean | undefined): string[] {
  if (all && names.length > 0) throw new ExitError(EXIT_USAGE, 'give app names or --all, not both');
  if (all) return config.apps.map((app) => app.name);
  if (names.length === 0) throw new ExitError(EXIT_USAGE, 'name at least one app, or --all');
  for (const name of names) {
    if (!config.apps.some((app) => app.name === name)) {
      throw new ExitError(EXIT_USAGE, `unknown app "${name}" (configured: ${config.apps.map((app) => app.name).join(', ') || 'none'})`);
    }
  }
  return names;
}
