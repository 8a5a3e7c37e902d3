/**
 * When an app's backups count as stale: older than `staleAfter`, or by
 * default 1.5 times its schedule's interval. For irregular schedules
 * (weekdays only, the 1st of the month) the interval is the longest gap
 * between the next runs, so a weekend is not an alarm.
 */
import { CronExpressionParser } from 'cron-parser';

/** Occurrences looked at to find the longest gap of a schedule. */
const OCCURRENCES = 32;

/** Computed intervals by schedule, time zone and hour: a fleet shares a few schedules, and cron-parser takes milliseconds per pattern. */
const intervals = new Map<string, number>();
const HOUR_MS = 3_600_000;
/** Intervals remembered at most; past it the oldest go (a process that runs for months sees many hours). */
const MAX_REMEMBERED = 10_000;

/**
 * Given a cron pattern and time zone, return the longest gap between its next
 * runs after the start of `now`'s hour (UTC), in ms. From the hour's start so
 * that every call within the hour gets the same answer, which is computed
 * once per schedule, time zone and hour (1,000 apps on one schedule cost one
 * computation, not a thousand).
 */
export function scheduleIntervalMs(schedule: string, timezone: string, now = new Date()): number {
  const hour = Math.floor(now.getTime() / HOUR_MS) * HOUR_MS;
  const key = `${hour}\n${timezone}\n${schedule}`;
  let interval = intervals.get(key);
  if (interval === undefined) {
    interval = computeIntervalMs(schedule, timezone, new Date(hour));
    if (intervals.size >= MAX_REMEMBERED) intervals.delete(intervals.keys().next().value!);
    intervals.set(key, interval);
  }
  return interval;
}

function computeIntervalMs(schedule: string, timezone: string, now: Date): number {
  const expression = CronExpressionParser.parse(schedule, { tz: timezone, currentDate: now, strict: false });
  let previous = expression.next().getTime();
  let longest = 0;
  for (let index = 1; index < OCCURRENCES; index += 1) {
    const next = expression.next().getTime();
    longest = Math.max(longest, next - previous);
    previous = next;
  }
  return longest;
}

/** Given an app's schedule, time zone and optional staleAfter, return the age (ms) past which it is stale. */
export function staleThresholdMs(app: { schedule: string; timezone: string; staleAfterMs: number | null }, now = new Date()): number {
  return app.staleAfterMs ?? Math.round(1.5 * scheduleIntervalMs(app.schedule, app.timezone, now));
}

/** Given a cron pattern and time zone, return the next run after `now` (ms since epoch). */
export function nextRunMs(schedule: string, timezone: string, now = new Date()): number {
  return CronExpressionParser.parse(schedule, { tz: timezone, currentDate: now, strict: false }).next().getTime();
}

/**
 * Given an app's drill schedule, when its newest passed drill finished (or
 * null) and since when the drill has been configured with that schedule (or
 * null when no scheduler has recorded it), say whether a passed drill is
 * overdue: none within 1.5 × the drill schedule's longest gap, counting from
 * the later of the two. Not from when the app was first seen: a drill added
 * to an old app, or one removed and added again after its last pass, gets a
 * whole interval to run first. Unknown on both counts: not overdue.
 */
export function drillOverdue(drill: { schedule: string; timezone: string }, lastPassedAt: number | null, drillSince: number | null, now = new Date()): boolean {
  const since = drillOverdueSince(lastPassedAt, drillSince);
  return since !== null && now.getTime() - since > Math.round(1.5 * scheduleIntervalMs(drill.schedule, drill.timezone, now));
}

/** The time an overdue drill counts from: the later of the newest pass and the drill's configuration; null when neither is known. */
export function drillOverdueSince(lastPassedAt: number | null, drillSince: number | null): number | null {
  if (lastPassedAt === null) return drillSince;
  return drillSince === null ? lastPassedAt : Math.max(lastPassedAt, drillSince);
}
