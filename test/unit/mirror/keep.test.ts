/**
 * What a flood cannot push out of a mirror (pure): the newest copy of each of
 * the last `keep` arrival days stays beside the `keep` newest, so however
 * many snapshots a source sends in one day, and however it dates them, the
 * good copies of the days before stay.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { arrivedAt, newestOfArrivalDays } from '../../../src/mirror/keep.ts';
import { planRetention } from '../../../src/retention/plan.ts';
import { snapshotIdFor } from '../../../src/repository/layout.ts';
import type { Manifest } from '../../../src/repository/manifest.ts';

const DAY = 86_400_000;
const START = Date.UTC(2026, 10, 1, 2, 15, 0);
const at = (ms: number) => snapshotIdFor(new Date(ms));

/** keep copies, one arrived each night, then `flood` backdated or new ones all arriving on the last day; retention's kept ids. */
function afterFlood(keep: number, flood: { id: string }[]): { good: string[]; kept: string[] } {
  const good = Array.from({ length: keep }, (_, night) => at(START + night * DAY));
  const floodDay = START + keep * DAY;
  const copies = [
    ...good.map((id, night) => ({ id, arrivedAt: START + night * DAY + 60_000 })),
    ...flood.map(({ id }, index) => ({ id, arrivedAt: floodDay + index * 1000 })),
  ];
  const protect = newestOfArrivalDays(copies, keep);
  const plan = planRetention(
    { snapshots: copies.map(({ id }) => ({ id, complete: true })), latest: null, incoming: [], commitMarkers: [], drillResults: [], drillTemporaries: [] },
    { keep, incomingMaxAgeMs: 0, now: floodDay + DAY, runningJobs: new Set(), protect },
  );
  return { good, kept: plan.keep };
}

describe('a mirror\'s retention under a flood', () => {
  test('keep 7, 50 new snapshots in one day: the 6 latest days\' good copies stay', () => {
    const flood = Array.from({ length: 50 }, (_, index) => ({ id: at(START + 7 * DAY + index * 60_000) }));
    const { good, kept } = afterFlood(7, flood);
    for (const id of good.slice(1)) assert.ok(kept.includes(id), `${id} stays: ${kept.join(' ')}`);
    assert.equal(kept.length, 13, 'the 7 newest (all the flood) and 6 good ones');
  });

  test('backdated ids between the good ones (each dated a minute after one) still arrive today: one day\'s place', () => {
    const flood = Array.from({ length: 7 }, (_, night) => ({ id: at(START + night * DAY + 60_000) }));
    const { good, kept } = afterFlood(7, flood);
    for (const id of good.slice(1)) assert.ok(kept.includes(id), `${id} stays: ${kept.join(' ')}`);
  });

  test('in normal use, one copy a day, the two rules keep the same copies: nothing beyond keep', () => {
    const copies = Array.from({ length: 20 }, (_, night) => ({ id: at(START + night * DAY), arrivedAt: START + night * DAY + 60_000 }));
    const protect = newestOfArrivalDays(copies, 7);
    const plan = planRetention(
      { snapshots: copies.map(({ id }) => ({ id, complete: true })), latest: null, incoming: [], commitMarkers: [], drillResults: [], drillTemporaries: [] },
      { keep: 7, incomingMaxAgeMs: 0, now: START + 21 * DAY, runningJobs: new Set(), protect },
    );
    assert.deepEqual(plan.keep, copies.slice(-7).map(({ id }) => id).reverse());
  });

  test('a copy\'s arrival is its mirroredFrom.copiedAt (this side\'s clock), else its finishedAt; unreadable counts for no day', () => {
    const base = { finishedAt: '2026-11-02T02:16:00.000Z' } as Manifest;
    assert.equal(arrivedAt({ ...base, mirroredFrom: { source: 'home', url: 'http://x', copiedAt: '2026-11-05T10:00:00.000Z' } }), Date.parse('2026-11-05T10:00:00.000Z'));
    assert.equal(arrivedAt(base), Date.parse('2026-11-02T02:16:00.000Z'));
    assert.deepEqual([...newestOfArrivalDays([{ id: at(START), arrivedAt: Number.NaN }], 3)], []);
  });
});
