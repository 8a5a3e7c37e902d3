/**
 * The config of a long-running process, kept live: SIGHUP re-reads the file,
 * and every job, request and check reads `current()` when it starts, so it
 * runs with the config as of its start. A file that no longer loads, or that
 * the process would refuse to start with, is refused with its errors and the
 * process keeps the config it has. The few keys that are bound when a process
 * starts (a Redis connection, a listening socket, a BullMQ Worker's options,
 * the logger) keep their running values; a reload that changes them says they
 * take effect at the next restart.
 *
 * A file being written while the signal arrives must not be taken half: a
 * file cut after `keep: 1` of `keep: 12` validates, and retention would prune
 * to it. So a reload takes the file only when two reads QUIET_MS apart find
 * it the same; VERIFY_AFTER_MS after a reload the file is read again, and a
 * file that changed meanwhile is reloaded (and said so). Until that re-read
 * finds the file as it was loaded, retention keeps at least what the config
 * before the reload kept (keepFloor: everything, for an app that config did
 * not have; a mirror's run deletes no copies, reloadUnverified). So a writer
 * that pauses half-way for less than QUIET_MS + VERIFY_AFTER_MS cannot make
 * retention prune to a
 * number cut short; one that pauses longer leaves a file that reads as
 * finished, which no reader can tell apart (README: write it, then signal).
 */
import { readFile, stat } from 'node:fs/promises';
import { isDeepStrictEqual } from 'node:util';
import { ConfigError, toError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { parseConfig, unreadableConfig, type Config } from './load.ts';

/** How long apart the two reads of a reload are that must find the file the same. */
export const QUIET_MS = 1000;
/** How long a reload waits for the file to be quiet before it refuses it. */
export const SETTLE_TIMEOUT_MS = 15_000;
/** When the file is read again after a reload, to take what a writer finished after it. */
export const VERIFY_AFTER_MS = 3000;
/** The longest wait between two tries to read the file again when it cannot be read (moved away, a full disk). */
const VERIFY_RETRY_MAX_MS = 60_000;

/**
 * What a running process cannot change without a restart: each key as the
 * file names it, and where it is in the loaded Config (whose durations carry
 * an Ms suffix).
 */
const RESTART_KEYS: Record<string, [keyof Config, string]> = {
  'redis.url': ['redis', 'url'],
  'redis.prefix': ['redis', 'prefix'],
  'dashboard.host': ['dashboard', 'host'],
  'dashboard.port': ['dashboard', 'port'],
  'concurrency.perWorker': ['concurrency', 'perWorker'],
  'concurrency.lockDuration': ['concurrency', 'lockDurationMs'],
  'concurrency.stalledInterval': ['concurrency', 'stalledIntervalMs'],
  'up.snapshotWorkers': ['up', 'snapshotWorkers'],
  'log.level': ['log', 'level'],
};

export type ReloadOutcome =
  | { ok: true; config: Config; previous: Config; changed: boolean; needRestart: string[]; sameText: boolean }
  | { ok: false; error: Error };

/** What a process checks before it starts, and before a reload takes effect; throws (ConfigError) with what is wrong. */
export type StartCheck = (config: Config) => void | Promise<void>;

/**
 * Given a file, return its text once two reads QUIET_MS apart find the same
 * bytes (and the same inode and size); throw ConfigError when it kept
 * changing for SETTLE_TIMEOUT_MS, or cannot be read. Compared by content,
 * not by mtime, which a copy may set back or a clock put in the future.
 */
export async function readSettled(file: string, quietMs = QUIET_MS, timeoutMs = SETTLE_TIMEOUT_MS): Promise<{ text: string }> {
  const deadline = Date.now() + timeoutMs;
  const snapshot = async () => {
    const before = await stat(file);
    const text = await readFile(file, 'utf8');
    const after = await stat(file);
    return { text, steady: before.ino === after.ino && before.size === after.size && before.mtimeMs === after.mtimeMs, ino: after.ino };
  };
  try {
    let previous = await snapshot();
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, quietMs));
      const current = await snapshot();
      if (previous.steady && current.steady && current.ino === previous.ino && current.text === previous.text) return { text: current.text };
      if (Date.now() >= deadline) {
        throw new ConfigError([`${file}: still changing after ${timeoutMs / 1000} s: send SIGHUP again once it is written`]);
      }
      previous = current;
    }
  } catch (error) {
    throw error instanceof ConfigError ? error : unreadableConfig(file, error);
  }
}

/** A config that a reload may replace; `current()` is what a job starting now runs with. */
export class LiveConfig {
  private config: Config;
  private readonly listeners: ((config: Config, previous: Config) => void)[] = [];
  /** The text the running config was loaded from (null: loaded at start, before any reload). */
  private loadedText: string | null = null;
  /** Reloads run one at a time, in order. */
  private reloading: Promise<unknown> = Promise.resolve();
  private verifyTimer: NodeJS.Timeout | undefined;
  /** Counts the reloads that took a new text: a re-read decides only for the text loaded when it began. */
  private generation = 0;
  /** The last config whose file was read twice alike, while a reload since is not yet verified. */
  private unverifiedSince: Config | null = null;

  /**
   * Given the file, the config loaded from it at start, and the checks this
   * process makes before it starts, keep it.
   */
  constructor(readonly file: string, initial: Config, private readonly check: StartCheck = () => undefined) {
    this.config = initial;
  }

  current(): Config {
    return this.config;
  }

  /**
   * The fewest snapshots retention may keep of an app now: 0 once the last
   * reload is verified; until then what the config before it kept, and
   * Infinity (prune nothing) for an app it did not have: nothing pruned that
   * app's snapshots before the reload (an app re-added by a file cut short
   * must not be pruned to its half `keep`).
   */
  keepFloor(app: string): number {
    if (this.unverifiedSince === null) return 0;
    return this.unverifiedSince.apps.find((candidate) => candidate.name === app)?.keep ?? Infinity;
  }

  /** Whether the last reload is not yet verified (its file may have been cut short): a mirror's run then deletes no copies. */
  reloadUnverified(): boolean {
    return this.unverifiedSince !== null;
  }

  /** Call fn with the new and the previous config after each reload that took effect (changed or not). */
  onReload(fn: (config: Config, previous: Config) => void): void {
    this.listeners.push(fn);
  }

  /**
   * Re-read the file (once it is quiet). On success the new config takes
   * effect at once (keeping the running values of RESTART_KEYS) and the
   * listeners are called; on failure nothing changes and the error says why.
   * Reloads run one after the other.
   */
  reload(): Promise<ReloadOutcome> {
    const outcome = this.reloading.then(() => this.reloadNow());
    this.reloading = outcome.catch(() => undefined);
    return outcome;
  }

  private async reloadNow(): Promise<ReloadOutcome> {
    let next: Config;
    let text: string;
    try {
      ({ text } = await readSettled(this.file));
      next = parseConfig(text, this.file);
    } catch (error) {
      return { ok: false, error: toError(error) };
    }
    const previous = this.config;
    const needRestart: string[] = [];
    const kept: Record<string, Record<string, unknown>> = {};
    for (const [key, [section, field]] of Object.entries(RESTART_KEYS)) {
      const running = (previous[section] as Record<string, unknown>)[field];
      if (isDeepStrictEqual((next[section] as Record<string, unknown>)[field], running)) continue;
      needRestart.push(key);
      kept[section] = { ...(kept[section] ?? (next[section] as Record<string, unknown>)), [field]: running };
    }
    const config = Object.freeze({ ...next, ...kept }) as Config;
    try {
      // Checked as the next start would see it, and as it runs now (a new dashboard.host waits for a restart,
      // but an emptied password applies at once): a reload never takes what a start would refuse.
      await this.check(next);
    } catch (error) {
      return { ok: false, error: toError(error) };
    }
    try {
      if (needRestart.length > 0) await this.check(config);
    } catch (error) {
      const problems = error instanceof ConfigError ? error.problems : [toError(error).message];
      return {
        ok: false,
        error: new ConfigError(problems.map((problem) => `${problem} (so it would run until a restart, with the running ${needRestart.join(', ')}; restart to apply the file)`)),
      };
    }
    const changed = !isDeepStrictEqual({ ...config, source: '' }, { ...previous, source: '' });
    // The very text loaded already (a SIGHUP sent again): the re-read already due decides, not one pushed back.
    const sameText = text === this.loadedText;
    if (!sameText) {
      this.unverifiedSince ??= previous;
      this.generation += 1;
    }
    this.config = config;
    this.loadedText = text;
    for (const listener of this.listeners) listener(config, previous);
    return { ok: true, config, previous, changed, needRestart, sameText };
  }

  /**
   * Reload and log the outcome as one line; return whether the new config took
   * effect. After one that did, read the file again once it has been quiet for
   * VERIFY_AFTER_MS, and reload if it changed meanwhile (a writer that was not
   * done when the signal came).
   */
  async reloadAndLog(logger: Logger): Promise<boolean> {
    const outcome = await this.reload();
    if (!outcome.ok) {
      const problems = outcome.error instanceof ConfigError ? outcome.error.problems : [outcome.error.message];
      logger.error({ file: this.file, problems }, `config reload refused, the running config is kept: ${problems.join('; ')}`);
      return false;
    }
    if (outcome.needRestart.length > 0) {
      logger.warn({ keys: outcome.needRestart }, `config reloaded, but ${outcome.needRestart.join(', ')} changed: ${outcome.needRestart.length === 1 ? 'it takes' : 'they take'} effect at the next restart`);
    }
    logger.info({ file: this.file, changed: outcome.changed, apps: outcome.config.apps.length }, outcome.changed ? 'config reloaded' : 'config reloaded: nothing changed');
    // SIGHUPs that keep coming with the file unchanged must not push the re-read back for as long as they come.
    if (outcome.sameText) return true;
    clearTimeout(this.verifyTimer);
    const generation = this.generation;
    this.verifyTimer = setTimeout(() => {
      void this.verify(logger, generation);
    }, VERIFY_AFTER_MS);
    this.verifyTimer.unref();
    return true;
  }

  /**
   * Read the file again; when it is not what the running config was loaded
   * from, reload it. A file that cannot be read now (moved away for a moment)
   * is tried again later, waiting longer each time: until it is read, what
   * the config before the reload kept stays kept, which must not last for
   * good unsaid.
   */
  private async verify(logger: Logger, generation: number, failures = 0): Promise<void> {
    let read: { text: string };
    try {
      read = await readSettled(this.file);
    } catch (error) {
      if (generation !== this.generation) return; // a reload came meanwhile: its own re-read decides
      const retryMs = Math.min(VERIFY_AFTER_MS * 2 ** failures, VERIFY_RETRY_MAX_MS);
      if (failures === 0) {
        const problems = error instanceof ConfigError ? error.problems : [toError(error).message];
        logger.warn({ file: this.file, problems }, `the config file cannot be read again after the reload (${problems.join('; ')}): what the config before it kept stays kept until it can; trying again`);
      }
      clearTimeout(this.verifyTimer);
      this.verifyTimer = setTimeout(() => {
        void this.verify(logger, generation, failures + 1);
      }, retryMs);
      this.verifyTimer.unref();
      return;
    }
    // A reload came while this read the file (a second SIGHUP during a writer's pause): what this read is not
    // what that reload loaded 3 s ago, so it verifies nothing; that reload's own re-read decides.
    if (generation !== this.generation || this.loadedText === null) return;
    if (read.text === this.loadedText) {
      if (this.unverifiedSince !== null) logger.info({ file: this.file }, 'config file read again, unchanged: the reload is verified (a lowered keep applies from now)');
      this.unverifiedSince = null;
      return;
    }
    logger.warn({ file: this.file }, 'the config file changed just after the reload (was it still being written?): reloading it');
    await this.reloadAndLog(logger);
  }
}
