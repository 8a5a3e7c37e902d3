/**
 * Staleness: the interval of a schedule is the longest gap between its next
 * runs (so weekends and short months are not alarms), the default stale
 * threshold is 1.5 times it, `staleAfter` overrides it; and the pure
 * classification of an app as ok, stale, failing, corrupt, never or orphaned.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { drillOverdue, nextRunMs, scheduleIntervalMs, staleThresholdMs } from '../../../src/status/stale.ts';
import { classifyApp, type AppStateName } from '../../../src/status/app-status.ts';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const NOW = new Date('2026-11-26T12:34:56.789Z');

function threshold(schedule: string, timezone: string, now: Date = NOW, staleAfterMs: number | null = null): number {
  return staleThresholdMs({ schedule, timezone, staleAfterMs }, now);
}

describe('scheduleIntervalMs and staleThresholdMs', () => {
  test('daily 0 3 * * * UTC: 24h → 36h', () => {
    assert.equal(scheduleIntervalMs('0 3 * * *', 'UTC', NOW), 24 * HOUR);
    assert.equal(threshold('0 3 * * *', 'UTC'), 36 * HOUR);
  });

  test('every 15 minutes: 15 min → 22.5 min', () => {
    assert.equal(scheduleIntervalMs('*/15 * * * *', 'UTC', NOW), 15 * MINUTE);
    assert.equal(threshold('*/15 * * * *', 'UTC'), 22.5 * MINUTE);
  });

  test('6-field schedule with seconds */5 * * * * *: 5 s → 7.5 s', () => {
    assert.equal(scheduleIntervalMs('*/5 * * * * *', 'UTC', NOW), 5 * SECOND);
    assert.equal(threshold('*/5 * * * * *', 'UTC'), 7.5 * SECOND);
  });

  test('weekdays only 0 2 * * 1-5: the weekend gap (3 days) → 4.5 days, from any weekday', () => {
    // Thursday, Friday evening, Saturday, Sunday: the next 32 runs always span a weekend.
    for (const now of ['2026-11-26T12:00:00Z', '2026-11-27T22:00:00Z', '2026-11-28T10:00:00Z', '2026-11-29T01:59:59Z']) {
      assert.equal(scheduleIntervalMs('0 2 * * 1-5', 'UTC', new Date(now)), 3 * DAY, now);
      assert.equal(threshold('0 2 * * 1-5', 'UTC', new Date(now)), 4.5 * DAY, now);
    }
  });

  test('monthly 0 4 1 * *: the longest gap (31 days) → 46.5 days', () => {
    assert.equal(scheduleIntervalMs('0 4 1 * *', 'UTC', NOW), 31 * DAY);
    assert.equal(threshold('0 4 1 * *', 'UTC'), 46.5 * DAY);
    // Even when the next run is the short February one.
    const january = new Date('2027-01-15T00:00:00Z');
    assert.equal(scheduleIntervalMs('0 4 1 * *', 'UTC', january), 31 * DAY);
  });

  test('Europe/Berlin across the spring-forward night: the 23h gap is not the longest, interval 24h → 36h', () => {
    const now = new Date('2026-03-27T00:00:00Z');
    // Runs: 2026-03-27 03:00 CET = 02:00Z, 03-28 02:00Z, 03-29 03:00 CEST = 01:00Z (23h later), 03-30 01:00Z…
    assert.equal(new Date(nextRunMs('0 3 * * *', 'Europe/Berlin', now)).toISOString(), '2026-03-27T02:00:00.000Z');
    const beforeChange = Date.parse('2026-03-28T02:00:00Z');
    const afterChange = nextRunMs('0 3 * * *', 'Europe/Berlin', new Date(beforeChange));
    assert.equal(new Date(afterChange).toISOString(), '2026-03-29T01:00:00.000Z');
    assert.equal(afterChange - beforeChange, 23 * HOUR);
    assert.equal(scheduleIntervalMs('0 3 * * *', 'Europe/Berlin', now), 24 * HOUR);
    assert.equal(threshold('0 3 * * *', 'Europe/Berlin', now), 36 * HOUR);
  });

  test('Europe/Berlin across the fall-back night: that gap is 25h, so the interval is 25h → 37.5h', () => {
    const now = new Date('2026-10-20T00:00:00Z');
    const beforeChange = Date.parse('2026-10-24T01:00:00Z'); // 03:00 CEST
    const afterChange = nextRunMs('0 3 * * *', 'Europe/Berlin', new Date(beforeChange));
    assert.equal(new Date(afterChange).toISOString(), '2026-10-25T02:00:00.000Z'); // 03:00 CET
    assert.equal(scheduleIntervalMs('0 3 * * *', 'Europe/Berlin', now), 25 * HOUR);
    assert.equal(threshold('0 3 * * *', 'Europe/Berlin', now), 37.5 * HOUR);
  });

  test('America/New_York: 24h around spring-forward (23h gap), 25h around fall-back; runs at 03:00 local', () => {
    const march = new Date('2026-03-01T00:00:00Z');
    assert.equal(new Date(nextRunMs('0 3 * * *', 'America/New_York', march)).toISOString(), '2026-03-01T08:00:00.000Z'); // 03:00 EST
    const beforeSpring = Date.parse('2026-03-07T08:00:00Z');
    assert.equal(nextRunMs('0 3 * * *', 'America/New_York', new Date(beforeSpring)) - beforeSpring, 23 * HOUR);
    assert.equal(scheduleIntervalMs('0 3 * * *', 'America/New_York', march), 24 * HOUR);
    assert.equal(threshold('0 3 * * *', 'America/New_York', march), 36 * HOUR);

    const october = new Date('2026-10-20T00:00:00Z');
    const beforeFall = Date.parse('2026-10-31T07:00:00Z'); // 03:00 EDT
    assert.equal(new Date(nextRunMs('0 3 * * *', 'America/New_York', new Date(beforeFall))).toISOString(), '2026-11-01T08:00:00.000Z');
    assert.equal(scheduleIntervalMs('0 3 * * *', 'America/New_York', october), 25 * HOUR);
    assert.equal(threshold('0 3 * * *', 'America/New_York', october), 37.5 * HOUR);
  });

  test('the time zone moves the runs, not the interval of a plain daily schedule', () => {
    const winter = new Date('2026-12-01T00:00:00Z');
    for (const tz of ['UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Tokyo']) {
      assert.equal(scheduleIntervalMs('0 3 * * *', tz, winter), 24 * HOUR, tz);
    }
  });

  test('staleAfterMs given explicitly overrides the schedule', () => {
    for (const schedule of ['0 3 * * *', '*/15 * * * *', '*/5 * * * * *', '0 2 * * 1-5', '0 4 1 * *']) {
      assert.equal(threshold(schedule, 'UTC', NOW, 3_600_000), 3_600_000, schedule);
      assert.equal(threshold(schedule, 'Europe/Berlin', NOW, 7 * DAY), 7 * DAY, schedule);
    }
  });

  test('the default threshold is 1.5× the interval for random every-N-minutes schedules', () => {
    fc.assert(
      fc.property(fc.constantFrom(1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30), fc.integer({ min: Date.UTC(2025, 0, 1), max: Date.UTC(2030, 0, 1) }), (n, now) => {
        const interval = scheduleIntervalMs(`*/${n} * * * *`, 'UTC', new Date(now));
        assert.equal(interval, n * MINUTE);
        assert.equal(threshold(`*/${n} * * * *`, 'UTC', new Date(now)), Math.round(1.5 * n * MINUTE));
      }),
      { numRuns: 100 },
    );
  });
});

describe('nextRunMs', () => {
  test('0 3 * * * UTC from a fixed now', () => {
    assert.equal(nextRunMs('0 3 * * *', 'UTC', new Date('2026-11-26T02:15:00Z')), Date.parse('2026-11-26T03:00:00Z'));
    assert.equal(nextRunMs('0 3 * * *', 'UTC', NOW), Date.parse('2026-11-27T03:00:00Z'));
    // Strictly after now: at 03:00:00 exactly, the next run is tomorrow's.
    assert.equal(nextRunMs('0 3 * * *', 'UTC', new Date('2026-11-26T03:00:00Z')), Date.parse('2026-11-27T03:00:00Z'));
    // Across a year end.
    assert.equal(nextRunMs('0 3 * * *', 'UTC', new Date('2026-12-31T23:00:00Z')), Date.parse('2027-01-01T03:00:00Z'));
  });

  test('0 3 * * * in Europe/Berlin is 02:00Z in winter and 01:00Z in summer', () => {
    assert.equal(nextRunMs('0 3 * * *', 'Europe/Berlin', new Date('2026-01-10T00:00:00Z')), Date.parse('2026-01-10T02:00:00Z'));
    assert.equal(nextRunMs('0 3 * * *', 'Europe/Berlin', new Date('2026-07-10T00:00:00Z')), Date.parse('2026-07-10T01:00:00Z'));
  });

  test('is always after now and within one interval for a daily schedule', () => {
    fc.assert(
      fc.property(fc.integer({ min: Date.UTC(2025, 0, 1), max: Date.UTC(2030, 0, 1) }), (now) => {
        const next = nextRunMs('0 3 * * *', 'UTC', new Date(now));
        assert.ok(next > now);
        assert.ok(next - now <= DAY);
        assert.equal(new Date(next).toISOString().slice(11), '03:00:00.000Z');
      }),
      { numRuns: 200 },
    );
  });
});

describe('classifyApp', () => {
  const now = Date.parse('2026-11-26T12:00:00Z');
  const staleAfterMs = 36 * HOUR;
  const base = { configured: true, newestFinishedAt: null as number | null, lastFailureAt: null as number | null, staleAfterMs: staleAfterMs as number | null, now, damaged: false };

  const table: { name: string; input: Partial<typeof base>; expected: AppStateName }[] = [
    { name: 'not configured → orphaned', input: { configured: false, newestFinishedAt: now - HOUR }, expected: 'orphaned' },
    { name: 'not configured, even with a failure and a stale snapshot → orphaned', input: { configured: false, newestFinishedAt: now - 10 * DAY, lastFailureAt: now - HOUR }, expected: 'orphaned' },
    { name: 'not configured, nothing known → orphaned', input: { configured: false }, expected: 'orphaned' },
    { name: 'no snapshot, no failure → never', input: {}, expected: 'never' },
    { name: 'no snapshot, staleAfter null → never', input: { staleAfterMs: null }, expected: 'never' },
    { name: 'failure after the newest snapshot → failing', input: { newestFinishedAt: now - 2 * HOUR, lastFailureAt: now - HOUR }, expected: 'failing' },
    { name: 'failure 1 ms after the newest snapshot → failing', input: { newestFinishedAt: now - HOUR, lastFailureAt: now - HOUR + 1 }, expected: 'failing' },
    { name: 'failure with no snapshot → failing', input: { lastFailureAt: now - HOUR }, expected: 'failing' },
    { name: 'failure older than the newest snapshot, within staleAfter → ok', input: { newestFinishedAt: now - HOUR, lastFailureAt: now - 2 * DAY }, expected: 'ok' },
    { name: 'failure at the same instant as the newest snapshot → ok', input: { newestFinishedAt: now - HOUR, lastFailureAt: now - HOUR }, expected: 'ok' },
    { name: 'recent snapshot, no failure → ok', input: { newestFinishedAt: now - HOUR }, expected: 'ok' },
    { name: 'age exactly staleAfter → ok', input: { newestFinishedAt: now - staleAfterMs }, expected: 'ok' },
    { name: 'age staleAfter + 1 ms → stale', input: { newestFinishedAt: now - staleAfterMs - 1 }, expected: 'stale' },
    { name: 'older than staleAfter, no failure → stale', input: { newestFinishedAt: now - 3 * DAY }, expected: 'stale' },
    { name: 'older than staleAfter, older failure → stale', input: { newestFinishedAt: now - 3 * DAY, lastFailureAt: now - 4 * DAY }, expected: 'stale' },
    { name: 'staleAfter null → never stale', input: { newestFinishedAt: now - 365 * DAY, staleAfterMs: null }, expected: 'ok' },
    { name: 'staleAfter null, newer failure → failing', input: { newestFinishedAt: now - 365 * DAY, lastFailureAt: now - DAY, staleAfterMs: null }, expected: 'failing' },
    { name: 'stale and a newer failure → failing wins over stale', input: { newestFinishedAt: now - 3 * DAY, lastFailureAt: now - HOUR }, expected: 'failing' },
    { name: 'staleAfter 0 and any age → stale', input: { newestFinishedAt: now - 1, staleAfterMs: 0 }, expected: 'stale' },
    { name: 'a damaged kept snapshot, otherwise ok → corrupt', input: { newestFinishedAt: now - HOUR, damaged: true }, expected: 'corrupt' },
    { name: 'damaged and failing → failing: corrupt never hides it', input: { newestFinishedAt: now - 2 * HOUR, lastFailureAt: now - HOUR, damaged: true }, expected: 'failing' },
    { name: 'damaged and stale → stale: corrupt never hides it', input: { newestFinishedAt: now - 3 * DAY, damaged: true }, expected: 'stale' },
    { name: 'damaged, not configured → orphaned', input: { configured: false, newestFinishedAt: now - HOUR, damaged: true }, expected: 'orphaned' },
  ];
  for (const row of table) {
    test(row.name, () => {
      assert.equal(classifyApp({ ...base, ...row.input }), row.expected);
    });
  }

  test('property: the classification agrees with the definitions', () => {
    const time = fc.option(fc.integer({ min: now - 100 * DAY, max: now }), { nil: null });
    fc.assert(
      fc.property(fc.boolean(), time, time, fc.option(fc.integer({ min: 0, max: 50 * DAY }), { nil: null }), fc.boolean(), (configured, newest, failure, stale, damaged) => {
        // A damaged snapshot is a kept one: none without a snapshot.
        const state = classifyApp({ configured, newestFinishedAt: newest, lastFailureAt: failure, staleAfterMs: stale, now, damaged: damaged && newest !== null });
        if (!configured) return assert.equal(state, 'orphaned');
        const failing = failure !== null && (newest === null || failure > newest);
        if (failing) return assert.equal(state, 'failing');
        if (newest === null) return assert.equal(state, 'never');
        if (stale !== null && now - newest > stale) return assert.equal(state, 'stale');
        return assert.equal(state, damaged ? 'corrupt' : 'ok');
      }),
      { numRuns: 500 },
    );
  });
});

describe('classifyApp: an app that never produced a snapshot', () => {
  const base = { configured: true, newestFinishedAt: null, lastFailureAt: null, staleAfterMs: 60_000, now: 1_000_000 };
  test('is "never" while it has been configured for less than staleAfter', () => {
    assert.equal(classifyApp({ ...base, firstSeenAt: 1_000_000 - 59_000 }), 'never');
    assert.equal(classifyApp({ ...base, firstSeenAt: null }), 'never', 'unknown since when: never');
  });
  test('is stale once configured for longer than staleAfter: the job that never ran at all', () => {
    assert.equal(classifyApp({ ...base, firstSeenAt: 1_000_000 - 61_000 }), 'stale');
  });
  test('is failing when it failed, whenever it was first seen', () => {
    assert.equal(classifyApp({ ...base, lastFailureAt: 999_000, firstSeenAt: 1_000_000 - 61_000 }), 'failing');
  });
});

describe('drillOverdue', () => {
  const weekly = { schedule: '0 6 * * 0', timezone: 'UTC' };
  const now = new Date('2026-11-26T12:00:00Z');
  const day = 86_400_000;
  test('a drill that passed within 1.5 weeks is not overdue; older, it is', () => {
    assert.equal(drillOverdue(weekly, now.getTime() - 7 * day, null, now), false);
    assert.equal(drillOverdue(weekly, now.getTime() - 11 * day, null, now), true);
  });
  test('no drill yet: overdue only once the drill has been configured longer than that', () => {
    assert.equal(drillOverdue(weekly, null, now.getTime() - 2 * day, now), false);
    assert.equal(drillOverdue(weekly, null, now.getTime() - 11 * day, now), true);
    assert.equal(drillOverdue(weekly, null, null, now), false, 'unknown since when: not overdue');
  });
  // The app was first seen 30 days ago (status no longer passes that in); its weekly drill was added an hour ago.
  test('a weekly drill just added to an old app is due 1.5 weeks after it was added, not at once', () => {
    const added = now.getTime() - 3_600_000;
    assert.equal(drillOverdue(weekly, null, added, now), false, 'just added');
    const at = (ms: number) => new Date(added + ms);
    assert.equal(drillOverdue(weekly, null, added, at(10 * day)), false, 'within 1.5 weeks of being added');
    assert.equal(drillOverdue(weekly, null, added, at(10.5 * day + 60_000)), true, 'past 1.5 weeks of being added');
  });
  // Fails before the fix: the old rule counted from the newest pass alone (20 days ago) and said overdue at once.
  test('a drill removed and added again counts from when it was added again, not from its pass before', () => {
    const added = now.getTime() - day;
    assert.equal(drillOverdue(weekly, now.getTime() - 20 * day, added, now), false);
    assert.equal(drillOverdue(weekly, now.getTime() - 20 * day, added, new Date(added + 11 * day)), true);
    assert.equal(drillOverdue(weekly, now.getTime() - 2 * day, now.getTime() - 20 * day, now), false, 'a pass after it was added counts from the pass');
    assert.equal(drillOverdue(weekly, now.getTime() - 12 * day, now.getTime() - 20 * day, now), true);
  });
});
