/**
 * What `snapshot --wait` and `drill --wait` say while they wait: the running
 * part with its elapsed time, rate and, from the previous snapshot's size, an
 * estimate of what is left; why a delayed job waits; colour on a terminal and
 * none under NO_COLOR (https://no-color.org) or when the output is not one.
 */
import { styleText } from 'node:util';
import { formatAge, formatBytes } from '../config/formats.ts';
import type { WaitingProgress } from '../queue/jobs.ts';

export type Colour = 'red' | 'green' | 'yellow' | 'dim';

/** Given the output stream and the environment, return how to colour text for it (not at all when it is not a terminal or NO_COLOR is set). */
export function colourFor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): (colour: Colour, text: string) => string {
  const on = stream.isTTY === true && (env.NO_COLOR ?? '') === '' && env.TERM !== 'dumb';
  // styleText's own check looks at process.stdout; the decision is made here, for the stream given.
  return on ? (colour, text) => styleText(colour === 'dim' ? 'gray' : colour, text, { validateStream: false }) : (_colour, text) => text;
}

/** Given milliseconds, return a clock: `0:07`, `12:03`, `1:02:03`. */
export function formatClock(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  const [hours, minutes] = [Math.floor(seconds / 3600), Math.floor((seconds % 3600) / 60)];
  const ss = String(seconds % 60).padStart(2, '0');
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${ss}` : `${minutes}:${ss}`;
}

/** Given bytes and the milliseconds they took, return a rate (`4.1 MiB/s`), or null under a tenth of a second. */
export function formatRate(bytes: number, ms: number): string | null {
  return ms < 100 ? null : `${formatBytes(Math.round((bytes * 1000) / ms))}/s`;
}

export interface RunningSnapshot {
  app: string;
  part: string;
  partIndex: number;
  parts: number;
  /** Bytes of the whole snapshot so far. */
  bytes: number;
  /** When this attempt started (ms since the epoch). */
  startedAt: number;
  now: number;
  /** The size of the app's newest complete snapshot, when it has one. */
  previousBytes: number | null;
}

/**
 * Given a running snapshot, return its progress line:
 * `shop: part 1/2 shop.sql, 12.3 MiB in 0:03 (4.1 MiB/s), about 0:10 left of 53.0 MiB last time`.
 */
export function describeRunning(running: RunningSnapshot): string {
  const elapsed = running.now - running.startedAt;
  const rate = formatRate(running.bytes, elapsed);
  let line = `${running.app}: part ${running.partIndex}/${running.parts} ${running.part}, ${formatBytes(running.bytes)} in ${formatClock(elapsed)}${rate ? ` (${rate})` : ''}`;
  if (running.previousBytes !== null && running.previousBytes > 0) {
    const bytesPerMs = elapsed >= 100 ? running.bytes / elapsed : 0;
    if (running.bytes >= running.previousBytes) line += `, past the ${formatBytes(running.previousBytes)} of last time`;
    else if (bytesPerMs > 0) line += `, about ${formatClock((running.previousBytes - running.bytes) / bytesPerMs)} left of ${formatBytes(running.previousBytes)} last time`;
  }
  return line;
}

/** Given an app, why its job waits (from the worker) and now, return `shop: waiting for node db1: 1 of 1 slot(s) in use; next try in 7s`. */
export function describeWaiting(app: string, waiting: WaitingProgress, now: number): string {
  return `${app}: waiting for ${waiting.waitingFor}; next try in ${formatAge(Math.max(1000, waiting.until - now))}`;
}

/** Given a job's progress as read from Redis, return it when it says why the job waits. */
export function waitingOf(progress: unknown): WaitingProgress | null {
  if (typeof progress !== 'object' || progress === null) return null;
  const { waitingFor, until } = progress as Partial<WaitingProgress>;
  return typeof waitingFor === 'string' && typeof until === 'number' ? { waitingFor, until } : null;
}
