/**
 * The config of a long-running process, kept live: SIGHUP re-reads the file,
 * and every job, request and check reads `current()` when it starts, so it
 * runs with the config as of its start. A file that no longer loads, or that
 * the process would refuse to start with, is refused with its errors and the
 * process keeps the config it has. The few keys that are bound when a process
 * starts (a Redis connection, a listening socket, a BullMQ Worker's options,
 * the logger) keep their running values; a reload that changes them says they
 * take effect at the next restart.
 */
import { isDeepStrictEqual } from 'node:util';
import { ConfigError, toError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { loadConfig, type Config } from './load.ts';

/** What a running process cannot change without a restart, as paths into Config. */
export const RESTART_KEYS = [
  'redis.url',
  'redis.prefix',
  'dashboard.host',
  'dashboard.port',
  'concurrency.perWorker',
  'concurrency.lockDuration',
  'concurrency.stalledInterval',
  'log.level',
] as const;

/** Where each restart key is in the loaded Config (whose durations carry an Ms suffix). */
const RESTART_FIELDS: Record<(typeof RESTART_KEYS)[number], [keyof Config, string]> = {
  'redis.url': ['redis', 'url'],
  'redis.prefix': ['redis', 'prefix'],
  'dashboard.host': ['dashboard', 'host'],
  'dashboard.port': ['dashboard', 'port'],
  'concurrency.perWorker': ['concurrency', 'perWorker'],
  'concurrency.lockDuration': ['concurrency', 'lockDurationMs'],
  'concurrency.stalledInterval': ['concurrency', 'stalledIntervalMs'],
  'log.level': ['log', 'level'],
};

export type ReloadOutcome =
  | { ok: true; config: Config; previous: Config; changed: boolean; needRestart: string[] }
  | { ok: false; error: Error };

/** A config that a reload may replace; `current()` is what a job starting now runs with. */
export class LiveConfig {
  private config: Config;
  private readonly listeners: ((config: Config, previous: Config) => void)[] = [];

  /**
   * Given the file, the config loaded from it at start, and the checks this
   * process makes before it starts (they throw, with what is wrong), keep it.
   */
  constructor(readonly file: string, initial: Config, private readonly check: (config: Config) => void = () => undefined) {
    this.config = initial;
  }

  current(): Config {
    return this.config;
  }

  /** Call fn with the new and the previous config after each reload that took effect (changed or not). */
  onReload(fn: (config: Config, previous: Config) => void): void {
    this.listeners.push(fn);
  }

  /**
   * Re-read the file. On success the new config takes effect at once (keeping
   * the running values of RESTART_KEYS) and the listeners are called; on
   * failure nothing changes and the error says why.
   */
  reload(): ReloadOutcome {
    let next: Config;
    try {
      next = loadConfig(this.file);
    } catch (error) {
      return { ok: false, error: toError(error) };
    }
    const previous = this.config;
    const needRestart: string[] = [];
    const kept: Record<string, Record<string, unknown>> = {};
    for (const key of RESTART_KEYS) {
      const [section, field] = RESTART_FIELDS[key];
      const running = (previous[section] as Record<string, unknown>)[field];
      if (isDeepStrictEqual((next[section] as Record<string, unknown>)[field], running)) continue;
      needRestart.push(key);
      kept[section] = { ...(kept[section] ?? (next[section] as Record<string, unknown>)), [field]: running };
    }
    const config = Object.freeze({ ...next, ...kept }) as Config;
    try {
      // Checked as the next start would see it, and as it runs now (a new dashboard.host waits for a restart,
      // but an emptied password applies at once): a reload never takes what a start would refuse.
      this.check(next);
      if (needRestart.length > 0) this.check(config);
    } catch (error) {
      return { ok: false, error: toError(error) };
    }
    const changed = !isDeepStrictEqual({ ...config, source: '' }, { ...previous, source: '' });
    this.config = config;
    for (const listener of this.listeners) listener(config, previous);
    return { ok: true, config, previous, changed, needRestart };
  }

  /** Reload and log the outcome as one line; return whether the new config took effect. */
  reloadAndLog(logger: Logger): boolean {
    const outcome = this.reload();
    if (!outcome.ok) {
      const problems = outcome.error instanceof ConfigError ? outcome.error.problems : [outcome.error.message];
      logger.error({ file: this.file, problems }, `config reload refused, the running config is kept: ${problems.join('; ')}`);
      return false;
    }
    if (outcome.needRestart.length > 0) {
      logger.warn({ keys: outcome.needRestart }, `config reloaded, but ${outcome.needRestart.join(', ')} changed: ${outcome.needRestart.length === 1 ? 'it takes' : 'they take'} effect at the next restart`);
    }
    logger.info({ file: this.file, changed: outcome.changed, apps: outcome.config.apps.length }, outcome.changed ? 'config reloaded' : 'config reloaded: nothing changed');
    return true;
  }
}
