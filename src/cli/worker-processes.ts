/**
 * `bysu up`'s snapshot worker processes: N children running this same CLI's
 * `worker snapshot` with the same config file, environment and node flags,
 * supervised by the `up` process. One process's main thread is saturated by
 * a handful of SSH streams (decryption, framing, BullMQ), so on a machine
 * with several cores one process per core is as fast as that many separate
 * workers (compose's replicas).
 *
 * - Each child runs in a process group of its own, so a terminal's Ctrl-C
 *   reaches only `bysu up`, which passes signals on: SIGHUP to every child
 *   (each reloads the file itself), the first SIGTERM/SIGINT as close()
 *   (each child stops gracefully, within its own grace period), a second one
 *   as it is (each child then exits at once).
 * - A child that dies unasked (kill -9, a crash) is logged as an error and
 *   started again after a back-off (1 s, doubling to a minute; reset once a
 *   child ran for a minute). The jobs it was running come back through
 *   BullMQ's stalled check, as with any worker that dies.
 * - A child stops by itself when its IPC channel to `bysu up` closes
 *   (runUntilSignal), so `kill -9` of `bysu up` leaves no worker taking jobs.
 * - Children write their pino lines to the same stderr, each line carrying
 *   `"worker": <index>` (1…N).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config/load.ts';
import type { Logger } from '../log.ts';
import { RUNNING_MESSAGE } from './run-until-signal.ts';

/** The first wait before a dead child is started again; it doubles with each death in a row. */
export const RESTART_DELAY_MS = 1000;
/** The longest wait before a restart. */
export const MAX_RESTART_DELAY_MS = 60_000;
/** A child that ran this long before it died starts the back-off afresh. */
export const STABLE_AFTER_MS = 60_000;
/** Beyond the grace period, how long a stopping child may take (its hand-back, its Redis bound) before it is killed. */
export const STOP_MARGIN_MS = 30_000;

/**
 * Given the config and the number of CPU cores, return how many snapshot
 * worker processes `bysu up` runs: up.snapshotWorkers when set, else one per
 * core but no more than it takes to fill concurrency.global at
 * concurrency.perWorker each, and at least one.
 */
export function snapshotWorkerCount(config: { up: Pick<Config['up'], 'snapshotWorkers'>; concurrency: Pick<Config['concurrency'], 'global' | 'perWorker'> }, cores = availableParallelism()): number {
  if (config.up.snapshotWorkers > 0) return config.up.snapshotWorkers;
  return Math.max(1, Math.min(cores, Math.ceil(config.concurrency.global / config.concurrency.perWorker)));
}

/** bin/bysu.js of this installation, found from this file in src/cli/ or in dist/src/cli/. */
function findBysuBin(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 5; depth += 1) {
    const candidate = path.join(dir, 'bin', 'bysu.js');
    if (existsSync(candidate)) return candidate;
    dir = path.dirname(dir);
  }
  throw new Error(`cannot find bin/bysu.js above ${fileURLToPath(import.meta.url)}`);
}

interface Slot {
  index: number;
  child: ChildProcess | null;
  startedAt: number;
  running: boolean;
  /** A SIGHUP came while the child was starting: sent once it runs (it read the file before, perhaps too early). */
  hupPending: boolean;
  stopSent: boolean;
  /** Deaths in a row, for the back-off. */
  deaths: number;
  restartTimer: NodeJS.Timeout | null;
  exited: Promise<void>;
}

export interface WorkerProcessesOptions {
  count: number;
  /** The config file the children read (as `--config`). */
  configFile: string;
  logger: Logger;
  /** How long a child's stop may take before it is killed: the grace period (plus STOP_MARGIN_MS). */
  graceMs: number;
  /**
   * Environment the children get on top of this process's: the running values
   * of the restart-only keys (see childEnvironment), so that a child started
   * again after the file changed still serves the same Redis and prefix.
   */
  env?: NodeJS.ProcessEnv;
}

/**
 * Given the config `bysu up` runs with, return the environment that pins its
 * children to the running values of the restart-only keys that have a
 * variable: a child that dies and starts again reads the file as it is then,
 * and must not begin to serve another Redis or prefix than its parent's
 * scheduler (lockDuration and stalledInterval have no variable: a child
 * started again takes them from the file).
 */
export function childEnvironment(config: Config): NodeJS.ProcessEnv {
  return {
    BYSU_REDIS_URL: config.redis.url,
    BYSU_REDIS_PREFIX: config.redis.prefix,
    BYSU_CONCURRENCY_PER_WORKER: String(config.concurrency.perWorker),
    BYSU_LOG_LEVEL: config.log.level,
  };
}

export class WorkerProcesses {
  private readonly slots: Slot[];
  private readonly bin = findBysuBin();
  private stopping = false;
  /** Once start() resolved, a child that exits unasked is started again (before, the start fails instead). */
  private supervising = false;

  constructor(private readonly options: WorkerProcessesOptions) {
    this.slots = Array.from({ length: options.count }, (_, offset) => ({
      index: offset + 1,
      child: null,
      startedAt: 0,
      running: false,
      hupPending: false,
      stopSent: false,
      deaths: 0,
      restartTimer: null,
      exited: Promise.resolve(),
    }));
  }

  /**
   * Start every child and resolve once each runs; reject when one exits
   * before it runs (its own message is in the log above), leaving the others
   * for close().
   */
  async start(): Promise<void> {
    await Promise.all(this.slots.map((slot) => this.spawn(slot)));
    this.supervising = true;
    this.options.logger.info({ workers: this.slots.map((slot) => ({ worker: slot.index, workerPid: slot.child?.pid })) }, `${this.slots.length} snapshot worker processes running`);
  }

  /** Pass a signal on to every child: SIGHUP (held for a child still starting), or a second SIGTERM/SIGINT. */
  signal(signal: NodeJS.Signals): void {
    for (const slot of this.slots) {
      if (!slot.child || slot.child.exitCode !== null || slot.child.signalCode !== null) continue;
      if (signal === 'SIGHUP' && !slot.running) {
        slot.hupPending = true;
        continue;
      }
      slot.child.kill(signal);
    }
  }

  /**
   * Stop every child (SIGTERM: each stops gracefully), no restarts from now
   * on, and resolve once all have exited; one still running graceMs +
   * STOP_MARGIN_MS later is killed.
   */
  async close(): Promise<void> {
    this.stopping = true;
    for (const slot of this.slots) {
      if (slot.restartTimer) clearTimeout(slot.restartTimer);
      slot.restartTimer = null;
      const child = slot.child;
      if (!child || child.exitCode !== null || child.signalCode !== null || slot.stopSent) continue;
      slot.stopSent = true;
      child.kill('SIGTERM');
    }
    const boundMs = this.options.graceMs + STOP_MARGIN_MS;
    const bound = setTimeout(() => {
      for (const slot of this.slots) {
        if (!slot.child || slot.child.exitCode !== null || slot.child.signalCode !== null) continue;
        this.options.logger.error({ worker: slot.index, workerPid: slot.child.pid, waitedMs: boundMs }, `snapshot worker ${slot.index} (pid ${slot.child.pid}) had not stopped ${boundMs} ms after SIGTERM: killing it (its jobs come back as stalled)`);
        slot.child.kill('SIGKILL');
      }
    }, boundMs);
    try {
      await Promise.all(this.slots.map((slot) => slot.exited));
    } finally {
      clearTimeout(bound);
    }
  }

  /** Fork the slot's child; resolve once it runs, reject when it exits first. */
  private spawn(slot: Slot): Promise<void> {
    const args = ['--config', this.options.configFile, 'worker', 'snapshot', '--worker-index', String(slot.index)];
    // Its own process group: a terminal's signals reach `bysu up` alone, which passes them on.
    const child = fork(this.bin, args, { detached: true, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, ...this.options.env } });
    slot.child = child;
    slot.startedAt = Date.now();
    slot.running = false;
    slot.stopSent = false;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      child.on('message', (message: unknown) => {
        if ((message as { bysu?: unknown } | null)?.bysu !== RUNNING_MESSAGE.bysu || slot.running) return;
        slot.running = true;
        if (slot.hupPending) {
          slot.hupPending = false;
          child.kill('SIGHUP');
        }
        settled = true;
        resolve();
      });
      slot.exited = new Promise<void>((exited) => {
        let ended = false;
        const end = (how: string, fields: Record<string, unknown>) => {
          if (ended) return;
          ended = true;
          if (!settled) {
            settled = true;
            reject(new Error(`snapshot worker process ${slot.index} (pid ${child.pid}) ended before it ran (${how}); its own message is above`));
          }
          if (this.stopping) {
            this.options.logger.info({ worker: slot.index, workerPid: child.pid, ...fields }, `snapshot worker ${slot.index} (pid ${child.pid}) stopped (${how})`);
          } else if (this.supervising) {
            this.restartLater(slot, how);
          }
          exited();
        };
        child.once('exit', (code, signal) => end(signal ? `killed by ${signal}` : `exit status ${code}`, { code, signal }));
        child.on('error', (error) => {
          this.options.logger.error({ worker: slot.index, workerPid: child.pid, err: error.message }, `snapshot worker ${slot.index}: ${error.message}`);
          // A process that could not be started sends no 'exit'.
          if (child.pid === undefined) end(`could not start: ${error.message}`, {});
        });
      });
    });
  }

  /** Log a child's death loudly and start it again after the back-off. */
  private restartLater(slot: Slot, how: string): void {
    const pid = slot.child?.pid;
    slot.deaths = Date.now() - slot.startedAt >= STABLE_AFTER_MS ? 1 : slot.deaths + 1;
    const delayMs = Math.min(RESTART_DELAY_MS * 2 ** (slot.deaths - 1), MAX_RESTART_DELAY_MS);
    this.options.logger.error(
      { worker: slot.index, workerPid: pid, how, deathsInARow: slot.deaths, restartInMs: delayMs },
      `snapshot worker ${slot.index} (pid ${pid}) died (${how}): starting it again in ${delayMs / 1000} s; the jobs it was running come back through BullMQ's stalled check`,
    );
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = null;
      if (this.stopping) return;
      this.spawn(slot).then(
        () => this.options.logger.info({ worker: slot.index, workerPid: slot.child?.pid }, `snapshot worker ${slot.index} running again (pid ${slot.child?.pid})`),
        // Its exit was handled like any death: logged, and the next restart planned.
        () => undefined,
      );
    }, delayMs);
  }
}
