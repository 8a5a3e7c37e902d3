/**
 * What a flood cannot push out of a mirror (pure): beside the `keep` newest,
 * the newest copy of each of the last `keep` arrival days and the first to
 * arrive of each of the last `keep` snapshot days stay.
 * However many snapshots a source sends in one day, and however it dates
 * them, the good copies of the days before stay, also those that arrived
 * together; and no more than three times `keep` copies are held.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { arrivedAt, firstArrivedOfDays, protectedCopies } from '../../../src/mirror/keep.ts';
import { planRetention } from '../../../src/retention/plan.ts';
import { snapshotIdFor } from '../../../src/repository/layout.ts';
import type { Manifest } from '../../../src/repository/manifest.ts';

const DAY = 86_400_000;
const START = Date.UTC(2026, 10, 1, 2, 15, 0);
const at = (ms: number) => snapshotIdFor(new Date(ms));

/** Given the copies (id, arrival) and keep, return what retention keeps, newest first. */
function kept(copies: { id: string; arrivedAt: number }[], keep: number): string[] {
  return planRetention(
    { snapshots: copies.map(({ id }) => ({ id, complete: true })), latest: null, incoming: [], commitMarkers: [], drillResults: [], drillTemporaries: [] },
    { keep, incomingMaxAgeMs: 0, now: START + 100 * DAY, runningJobs: new Set(), protect: protectedCopies(copies, keep) },
  ).keep;
}

/** keep good copies, one a night, each arriving an hour after it was taken. */
const goodNights = (keep: number) => Array.from({ length: keep }, (_, night) => ({ id: at(START + night * DAY), arrivedAt: START + night * DAY + 3_600_000 }));

describe('a mirror\'s retention under a flood', () => {
  test('keep 7, 50 new snapshots in one day: the good copies of the 6 latest days stay, and 14 at most are held', () => {
    const good = goodNights(7);
    const flood = Array.from({ length: 50 }, (_, index) => ({ id: at(START + 7 * DAY + index * 60_000), arrivedAt: START + 7 * DAY + 7_200_000 }));
    const held = kept([...good, ...flood], 7);
    for (const { id } of good.slice(1)) assert.ok(held.includes(id), `${id} stays: ${held.join(' ')}`);
    assert.equal(held.length, 13, 'the 7 newest (the flood) and the 6 latest days\' good copies');
  });

  test('backdated ids, one a minute after each good one: they arrive after it, so every good copy keeps its day', () => {
    const good = goodNights(7);
    const backdated = good.map(({ id }, night) => ({ id: at(START + night * DAY + 60_000), arrivedAt: START + 8 * DAY }));
    const held = kept([...good, ...backdated], 7);
    for (const { id } of good) assert.ok(held.includes(id), `${id} stays: ${held.join(' ')}`);
  });

  test('good copies that arrived together (a first sync of a week) keep their days through a day of flood', () => {
    const good = Array.from({ length: 7 }, (_, night) => ({ id: at(START + night * DAY), arrivedAt: START + 7 * DAY }));
    const flood = Array.from({ length: 7 }, (_, index) => ({ id: at(START + 8 * DAY + index * 60_000), arrivedAt: START + 8 * DAY + 3_600_000 }));
    const held = kept([...good, ...flood], 7);
    for (const { id } of good.slice(1)) assert.ok(held.includes(id), `${id} stays: ${held.join(' ')}`);
  });

  test('in normal use, one snapshot a day, the two rules keep the same copies: nothing beyond keep', () => {
    const copies = Array.from({ length: 20 }, (_, night) => ({ id: at(START + night * DAY), arrivedAt: START + night * DAY + 60_000 }));
    assert.deepEqual(kept(copies, 7), copies.slice(-7).map(({ id }) => id).reverse());
  });

  test('hourly snapshots, keep 48: held are the 48 newest and the first and last of each of the last days, not 48 days of them', () => {
    const copies = Array.from({ length: 24 * 10 }, (_, hour) => ({ id: at(START + hour * 3_600_000), arrivedAt: START + hour * 3_600_000 + 60_000 }));
    const held = kept(copies, 48);
    assert.ok(held.length <= 48 + 2 * 10, `${held.length} held`);
  });

  test('a weekly source; ids backdated into the empty days between: they take one day\'s place, the oldest good copy\'s, not more', () => {
    const good = [0, 7, 14].map((day) => ({ id: at(START + day * DAY), arrivedAt: START + day * DAY + 3_600_000 }));
    const backdated = [12, 13].map((day) => ({ id: at(START + day * DAY), arrivedAt: START + 15 * DAY }));
    const held = kept([...good, ...backdated], 3);
    for (const { id } of good.slice(1)) assert.ok(held.includes(id), `${id} stays: ${held.join(' ')}`);
  });

  test('a copy\'s arrival is its mirroredFrom.copiedAt (this side\'s clock), else its finishedAt; unreadable counts as arrived last', () => {
    const base = { finishedAt: '2026-11-02T02:16:00.000Z' } as Manifest;
    assert.equal(arrivedAt({ ...base, mirroredFrom: { source: 'home', url: 'http://x', copiedAt: '2026-11-05T10:00:00.000Z' } }), Date.parse('2026-11-05T10:00:00.000Z'));
    assert.equal(arrivedAt(base), Date.parse('2026-11-02T02:16:00.000Z'));
    const known = { id: at(START + 60_000), arrivedAt: START + DAY };
    assert.deepEqual([...firstArrivedOfDays([{ id: at(START), arrivedAt: Number.NaN }, known], 3)], [known.id]);
  });
});
