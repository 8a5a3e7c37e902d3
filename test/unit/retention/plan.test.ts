/**
 * The retention plan (pure): keeps the newest `keep` complete snapshots and
 * the target of `latest`, deletes only complete snapshots beyond those,
 * never counts failed attempts, and removes only BYSU's own old leftovers in
 * `.incoming` (and old commit markers). Drill results: the newest 20, the
 * newest of each kept snapshot, and never the results status reads.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { COMMIT_MARKER_MAX_AGE_MS, DRILL_RESULTS_KEPT, DRILL_TEMPORARY_MAX_AGE_MS, planDrillResults, planRetention, type AppState, type DrillResultEntry, type RetentionPolicy } from '../../../src/retention/plan.ts';
import { compareSnapshotIds, snapshotIdCandidate, snapshotIdFor } from '../../../src/repository/layout.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const NOW = Date.parse('2026-11-26T12:00:00Z');

const ATTEMPT_RE = /^(.+)\.(\d+)\.[0-9a-f]{8}$/;
const DELETING_RE = /^deleting\./;

/** Night n (1-based) of November 2026 at 02:15:00Z. */
function night(n: number): string {
  return snapshotIdFor(new Date(Date.UTC(2026, 10, n, 2, 15, 0)));
}

function state(partial: Partial<AppState>): AppState {
  return { snapshots: [], latest: null, incoming: [], commitMarkers: [], drillResults: [], drillTemporaries: [], ...partial };
}

function policy(partial: Partial<RetentionPolicy> = {}): RetentionPolicy {
  return { keep: 3, incomingMaxAgeMs: 3 * HOUR, now: NOW, runningJobs: new Set(), ...partial };
}

const complete = (...ids: string[]) => ids.map((id) => ({ id, complete: true }));
const incomplete = (...ids: string[]) => ids.map((id) => ({ id, complete: false }));

describe('planRetention: snapshots', () => {
  test('keep 3 of 5 complete: the 3 newest are kept, the 2 oldest deleted (newest first)', () => {
    const ids = [night(1), night(2), night(3), night(4), night(5)];
    // Order on input must not matter.
    const plan = planRetention(state({ snapshots: complete(ids[2]!, ids[0]!, ids[4]!, ids[1]!, ids[3]!), latest: ids[4]! }), policy({ keep: 3 }));
    assert.deepEqual(plan.keep, [ids[4], ids[3], ids[2]]);
    assert.deepEqual(plan.delete, [ids[1], ids[0]]);
    assert.deepEqual(plan.deleteIncoming, []);
    assert.deepEqual(plan.deleteMarkers, []);
  });

  test('fewer complete snapshots than keep: nothing is deleted', () => {
    const plan = planRetention(state({ snapshots: complete(night(1), night(2)), latest: night(2) }), policy({ keep: 3 }));
    assert.deepEqual(plan.keep, [night(2), night(1)]);
    assert.deepEqual(plan.delete, []);
  });

  test('collision suffixes order numerically: -10 is newer than -9 and -2, the bare id is the oldest of its second', () => {
    const base = '20261126T021500Z';
    const ids = [base, `${base}-2`, `${base}-3`, `${base}-9`, `${base}-10`, `${base}-11`];
    const earlier = '20261125T235959Z';
    const later = '20261126T021501Z';
    const plan = planRetention(state({ snapshots: complete(...ids, earlier, later) }), policy({ keep: 4 }));
    assert.deepEqual(plan.keep, [later, `${base}-11`, `${base}-10`, `${base}-9`]);
    assert.deepEqual(plan.delete, [`${base}-3`, `${base}-2`, base, earlier]);
  });

  test('a -2 suffix beats the bare id: keep 1 keeps the -2', () => {
    const base = night(7);
    const plan = planRetention(state({ snapshots: complete(snapshotIdCandidate(base, 2), base) }), policy({ keep: 1 }));
    assert.deepEqual(plan.keep, [`${base}-2`]);
    assert.deepEqual(plan.delete, [base]);
  });

  test('latest pointing at an old snapshot beyond keep is kept in addition', () => {
    const ids = [night(1), night(2), night(3), night(4), night(5)];
    const plan = planRetention(state({ snapshots: complete(...ids), latest: night(1) }), policy({ keep: 2 }));
    assert.deepEqual(plan.keep, [night(5), night(4), night(1)]);
    assert.deepEqual(plan.delete, [night(3), night(2)]);
    assert.ok(!plan.delete.includes(night(1)));
  });

  test('latest pointing at an incomplete snapshot dir, an unknown id or junk changes nothing', () => {
    const snapshots = [...complete(night(1), night(2), night(3), night(4)), ...incomplete(night(5))];
    const reference = planRetention(state({ snapshots, latest: null }), policy({ keep: 2 }));
    assert.deepEqual(reference.keep, [night(4), night(3)]);
    assert.deepEqual(reference.delete, [night(2), night(1)]);
    for (const latest of [night(5), night(20), 'foo', '../other/20261101T021500Z', `${night(1)}/`, `./${night(1)}`]) {
      const plan = planRetention(state({ snapshots, latest }), policy({ keep: 2 }));
      assert.deepEqual(plan.keep, reference.keep, `latest=${latest}`);
      assert.deepEqual(plan.delete, reference.delete, `latest=${latest}`);
    }
  });

  test('incomplete snapshot-id dirs are never deleted and never counted', () => {
    // Five failed nights after three good ones: the three good ones stay.
    const snapshots = [...complete(night(1), night(2), night(3)), ...incomplete(night(4), night(5), night(6), night(7), night(8))];
    const plan = planRetention(state({ snapshots, latest: night(3) }), policy({ keep: 3 }));
    assert.deepEqual(plan.keep, [night(3), night(2), night(1)]);
    assert.deepEqual(plan.delete, []);

    // With more good ones, only complete ones are deleted; incomplete ones (old or new) are in neither list.
    const mixed = [...incomplete(night(1)), ...complete(night(2), night(3), night(4)), ...incomplete(night(5)), ...complete(night(6))];
    const plan2 = planRetention(state({ snapshots: mixed, latest: night(6) }), policy({ keep: 2 }));
    assert.deepEqual(plan2.keep, [night(6), night(4)]);
    assert.deepEqual(plan2.delete, [night(3), night(2)]);
  });

  test('entries that are not valid snapshot ids are never deleted, even when marked complete', () => {
    const snapshots = complete(night(1), night(2), night(3), '20261126T021500Z-1', '20261126T021500Z-01', 'backup-old', 'latest');
    const plan = planRetention(state({ snapshots, latest: night(3) }), policy({ keep: 1 }));
    assert.deepEqual(plan.keep, [night(3)]);
    assert.deepEqual(plan.delete, [night(2), night(1)]);
  });

  test('keep must be an integer of at least 1', () => {
    const s = state({ snapshots: complete(night(1)) });
    for (const keep of [0, -1, 1.5, Number.NaN]) {
      assert.throws(() => planRetention(s, policy({ keep })), /keep must be at least 1/, `keep=${keep}`);
    }
    assert.doesNotThrow(() => planRetention(s, policy({ keep: 1 })));
  });
});

describe('planRetention: .incoming', () => {
  const old = NOW - 4 * HOUR; // older than incomingMaxAgeMs (3h)
  const young = NOW - 1 * HOUR;

  test('an old attempt dir not owned by a running job is removed', () => {
    const plan = planRetention(state({ incoming: [{ name: 'manual-shop-123.1.deadbeef', mtimeMs: old }] }), policy());
    assert.deepEqual(plan.deleteIncoming, ['manual-shop-123.1.deadbeef']);
  });

  test('the same attempt while its job is running is kept', () => {
    const plan = planRetention(
      state({ incoming: [{ name: 'manual-shop-123.1.deadbeef', mtimeMs: old }] }),
      policy({ runningJobs: new Set(['manual-shop-123']) }),
    );
    assert.deepEqual(plan.deleteIncoming, []);
  });

  test('a running job only protects its own attempts (job names with dots and digits)', () => {
    const incoming = [
      { name: 'manual-shop-123.1.deadbeef', mtimeMs: old },
      { name: 'manual-shop-123.2.0badcafe', mtimeMs: old },
      { name: 'manual-shop-1234.1.deadbeef', mtimeMs: old },
      { name: 'repeat.shop.7.3.12345678', mtimeMs: old },
    ];
    const plan = planRetention(state({ incoming }), policy({ runningJobs: new Set(['manual-shop-123', 'repeat.shop.7']) }));
    assert.deepEqual(plan.deleteIncoming, ['manual-shop-1234.1.deadbeef']);
  });

  test('a young attempt is kept; age exactly incomingMaxAgeMs is not yet old', () => {
    const plan = planRetention(
      state({
        incoming: [
          { name: 'manual-shop-123.1.deadbeef', mtimeMs: young },
          { name: 'manual-shop-124.1.deadbeef', mtimeMs: NOW - 3 * HOUR },
          { name: 'manual-shop-125.1.deadbeef', mtimeMs: NOW - 3 * HOUR - 1 },
          { name: 'manual-shop-126.1.deadbeef', mtimeMs: NOW + HOUR },
        ],
      }),
      policy(),
    );
    assert.deepEqual(plan.deleteIncoming, ['manual-shop-125.1.deadbeef']);
  });

  test('a deleting.<id>.<8hex> entry is always removed, however young and whatever runs', () => {
    const name = `deleting.${night(3)}.a1b2c3d4`;
    for (const mtimeMs of [NOW, young, old, NOW + HOUR]) {
      const plan = planRetention(state({ incoming: [{ name, mtimeMs }] }), policy({ runningJobs: new Set(['deleting', `deleting.${night(3)}`]) }));
      assert.deepEqual(plan.deleteIncoming, [name]);
    }
  });

  test('names that do not match BYSU patterns are never removed, however old', () => {
    const junk = [
      'notes.txt',
      'foo',
      'x.1.nothex!',
      'x.1.DEADBEEF',
      'x.1.deadbee',
      'x.1.deadbeef0',
      'x.a.deadbeef',
      '.1.deadbeef',
      'x..deadbeef',
      'deleting',
      'deleting.',
      `deleting.${night(1)}`,
      `deleting.${night(1)}.XYZ12345`,
      'deletingx.y.zzzzzzzz',
      night(1),
      '.latest.deadbeef',
    ];
    const plan = planRetention(state({ incoming: junk.map((name) => ({ name, mtimeMs: NOW - 365 * DAY })) }), policy());
    assert.deepEqual(plan.deleteIncoming, []);
  });

  test('only listed entries are returned, in input order', () => {
    const incoming = [
      { name: 'notes.txt', mtimeMs: old },
      { name: 'b.1.deadbeef', mtimeMs: old },
      { name: `deleting.${night(1)}.00000000`, mtimeMs: young },
      { name: 'a.2.deadbeef', mtimeMs: young },
      { name: 'a.1.ffffffff', mtimeMs: old },
    ];
    const plan = planRetention(state({ incoming }), policy());
    assert.deepEqual(plan.deleteIncoming, ['b.1.deadbeef', `deleting.${night(1)}.00000000`, 'a.1.ffffffff']);
  });
});

describe('planRetention: commit markers', () => {
  test('markers older than COMMIT_MARKER_MAX_AGE_MS are removed, younger ones (and the boundary) kept', () => {
    assert.equal(COMMIT_MARKER_MAX_AGE_MS, 30 * DAY);
    const commitMarkers = [
      { name: 'manual-shop-1', mtimeMs: NOW - COMMIT_MARKER_MAX_AGE_MS - 1 },
      { name: 'manual-shop-2', mtimeMs: NOW - COMMIT_MARKER_MAX_AGE_MS },
      { name: 'manual-shop-3', mtimeMs: NOW - 1 * DAY },
      { name: 'repeat-shop-4', mtimeMs: NOW - 90 * DAY },
      { name: 'manual-shop-5', mtimeMs: NOW },
    ];
    const plan = planRetention(state({ commitMarkers }), policy());
    assert.deepEqual(plan.deleteMarkers, ['manual-shop-1', 'repeat-shop-4']);
    // Markers never touch snapshots or .incoming.
    assert.deepEqual(plan.delete, []);
    assert.deepEqual(plan.deleteIncoming, []);
  });
});

// ---------------------------------------------------------------------------
// Property tests over random histories.

const MIN_S = Date.UTC(2024, 0, 1) / 1000;
const MAX_S = Date.UTC(2028, 11, 31) / 1000;
/** A narrow window so that equal bases with different suffixes are common. */
const NARROW_S = Date.UTC(2026, 10, 26, 2, 15, 0) / 1000;

const baseIdArb = fc
  .oneof(fc.integer({ min: MIN_S, max: MAX_S }), fc.integer({ min: NARROW_S, max: NARROW_S + 5 }))
  .map((seconds) => snapshotIdFor(new Date(seconds * 1000)));
const snapshotIdArb = fc
  .tuple(baseIdArb, fc.option(fc.integer({ min: 2, max: 20 }), { nil: undefined }))
  .map(([base, suffix]) => (suffix === undefined ? base : `${base}-${suffix}`));

const hex8Arb = fc.integer({ min: 0, max: 0xffffffff }).map((n) => n.toString(16).padStart(8, '0'));
const JOB_POOL = ['manual-shop-123', 'manual-shop-1234', 'repeat_bysu-snapshot_shop_1764100000000', 'a.b.c', 'job-7', 'deleting'];
const jobArb = fc.constantFrom(...JOB_POOL);
const attemptNameArb = fc.tuple(jobArb, fc.integer({ min: 1, max: 12 }), hex8Arb).map(([job, n, hex]) => `${job}.${n}.${hex}`);
const deletingNameArb = fc.tuple(snapshotIdArb, hex8Arb).map(([id, hex]) => `deleting.${id}.${hex}`);
const JUNK = ['notes.txt', 'foo', 'x.1.nothex!', 'x.1.DEADBEEF', 'deleting', '.latest.deadbeef', 'a.1.deadbee', 'tmp'];
const junkNameArb = fc.oneof(
  fc.constantFrom(...JUNK),
  fc.string({ minLength: 1, maxLength: 20 }).filter((name) => !ATTEMPT_RE.test(name) && !DELETING_RE.test(name)),
);
const incomingNameArb = fc.oneof(attemptNameArb, deletingNameArb, junkNameArb);

const nowArb = fc.integer({ min: Date.UTC(2029, 0, 1), max: Date.UTC(2030, 0, 1) });
const maxAgeArb = fc.integer({ min: 60_000, max: 2 * DAY });
/** Ages from slightly in the future (clock skew) to 60 days. */
const ageArb = fc.oneof(fc.integer({ min: -HOUR, max: 60 * DAY }), fc.integer({ min: 0, max: 3 * DAY }));

interface Scenario {
  state: AppState;
  policy: RetentionPolicy;
}

const scenarioArb: fc.Arbitrary<Scenario> = fc
  .record({
    snapshots: fc.uniqueArray(fc.record({ id: snapshotIdArb, complete: fc.boolean() }), { selector: (s) => s.id, maxLength: 30 }),
    latestKind: fc.constantFrom('null', 'existing', 'unknown-id', 'junk'),
    latestPick: fc.nat(),
    unknownId: snapshotIdArb,
    junkLatest: fc.constantFrom('foo', '../x', '20261126T021500Z-1', ''),
    incoming: fc.array(fc.record({ name: incomingNameArb, age: ageArb }), { maxLength: 15 }),
    commitMarkers: fc.array(fc.record({ name: fc.string({ minLength: 1, maxLength: 12 }), age: ageArb }), { maxLength: 8 }),
    keep: fc.integer({ min: 1, max: 10 }),
    now: nowArb,
    incomingMaxAgeMs: maxAgeArb,
    running: fc.subarray(JOB_POOL),
  })
  .map((r) => {
    let latest: string | null = null;
    if (r.latestKind === 'existing' && r.snapshots.length > 0) latest = r.snapshots[r.latestPick % r.snapshots.length]!.id;
    else if (r.latestKind === 'unknown-id') latest = r.unknownId;
    else if (r.latestKind === 'junk') latest = r.junkLatest;
    return {
      state: {
        snapshots: r.snapshots,
        latest,
        incoming: r.incoming.map(({ name, age }) => ({ name, mtimeMs: r.now - age })),
        commitMarkers: r.commitMarkers.map(({ name, age }) => ({ name, mtimeMs: r.now - age })),
        drillResults: [],
        drillTemporaries: [],
      },
      policy: { keep: r.keep, incomingMaxAgeMs: r.incomingMaxAgeMs, now: r.now, runningJobs: new Set(r.running) },
    };
  });

/** Failed attempts: incomplete snapshot dirs and `.incoming` attempt entries (any age, running or not). */
const failuresArb = fc.record({
  incompleteIds: fc.uniqueArray(snapshotIdArb, { maxLength: 10 }),
  attempts: fc.array(fc.record({ name: attemptNameArb, age: ageArb }), { maxLength: 10 }),
});

function withFailures(s: Scenario, failures: { incompleteIds: string[]; attempts: { name: string; age: number }[] }): AppState {
  const existing = new Set(s.state.snapshots.map((snapshot) => snapshot.id));
  const added = failures.incompleteIds.filter((id) => !existing.has(id)).map((id) => ({ id, complete: false }));
  // Interleave the new incomplete dirs with the existing ones (directory order is arbitrary).
  const snapshots = [...s.state.snapshots];
  added.forEach((entry, index) => snapshots.splice((index * 7) % (snapshots.length + 1), 0, entry));
  return {
    ...s.state,
    snapshots,
    incoming: [...s.state.incoming, ...failures.attempts.map(({ name, age }) => ({ name, mtimeMs: s.policy.now - age }))],
  };
}

/** Complete ids, newest first (the reference order). */
function completeNewestFirst(st: AppState): string[] {
  return st.snapshots.filter((s) => s.complete).map((s) => s.id).sort(compareSnapshotIds).reverse();
}

const RUNS = { numRuns: 600 };

describe('planRetention: properties', () => {
  test('(a) the newest `keep` complete snapshots are always kept and never deleted', () => {
    fc.assert(
      fc.property(scenarioArb, ({ state: st, policy: p }) => {
        const plan = planRetention(st, p);
        const newest = completeNewestFirst(st).slice(0, p.keep);
        for (const id of newest) {
          assert.ok(plan.keep.includes(id), `${id} should be kept`);
          assert.ok(!plan.delete.includes(id), `${id} must not be deleted`);
        }
        // Exactly the newest `keep` plus, when complete and older, the latest target.
        const expected = new Set(newest);
        if (st.latest !== null && st.snapshots.some((s) => s.id === st.latest && s.complete)) expected.add(st.latest);
        assert.deepEqual(new Set(plan.keep), expected);
      }),
      RUNS,
    );
  });

  test('(b) the latest target, when it is a complete snapshot, is never deleted', () => {
    fc.assert(
      fc.property(scenarioArb, ({ state: st, policy: p }) => {
        const plan = planRetention(st, p);
        if (st.latest !== null) {
          assert.ok(!plan.delete.includes(st.latest));
          if (st.snapshots.some((s) => s.id === st.latest && s.complete)) assert.ok(plan.keep.includes(st.latest));
        }
      }),
      RUNS,
    );
  });

  test('(c) only complete input snapshots are deleted; keep and delete partition the complete ids, newest first', () => {
    fc.assert(
      fc.property(scenarioArb, ({ state: st, policy: p }) => {
        const plan = planRetention(st, p);
        const completeIds = new Set(st.snapshots.filter((s) => s.complete).map((s) => s.id));
        for (const id of plan.delete) assert.ok(completeIds.has(id), `deleted ${id} is not a complete snapshot of the input`);
        for (const id of plan.keep) assert.ok(completeIds.has(id), `kept ${id} is not a complete snapshot of the input`);
        const keepSet = new Set(plan.keep);
        const deleteSet = new Set(plan.delete);
        assert.equal(keepSet.size, plan.keep.length, 'keep has duplicates');
        assert.equal(deleteSet.size, plan.delete.length, 'delete has duplicates');
        for (const id of plan.delete) assert.ok(!keepSet.has(id), `${id} both kept and deleted`);
        assert.deepEqual(new Set([...plan.keep, ...plan.delete]), completeIds);
        // Both lists newest first.
        assert.deepEqual(plan.keep, [...plan.keep].sort(compareSnapshotIds).reverse());
        assert.deepEqual(plan.delete, [...plan.delete].sort(compareSnapshotIds).reverse());
        // Nothing kept beyond what retention promises.
        if (completeIds.size >= p.keep) assert.ok(plan.keep.length === p.keep || plan.keep.length === p.keep + 1);
        else assert.equal(plan.delete.length, 0);
      }),
      RUNS,
    );
  });

  test('(d) failures never change what is kept or deleted', () => {
    fc.assert(
      fc.property(scenarioArb, failuresArb, (s, failures) => {
        const before = planRetention(s.state, s.policy);
        const after = planRetention(withFailures(s, failures), s.policy);
        assert.deepEqual(after.keep, before.keep);
        assert.deepEqual(after.delete, before.delete);
        // The plan for the entries that were already there does not change either.
        assert.deepEqual(after.deleteIncoming.slice(0, before.deleteIncoming.length), before.deleteIncoming);
        assert.deepEqual(after.deleteMarkers, before.deleteMarkers);
      }),
      RUNS,
    );
  });

  test('(e) a run of failed nights after a retention pass deletes nothing', () => {
    fc.assert(
      fc.property(scenarioArb, fc.array(failuresArb, { minLength: 1, maxLength: 5 }), (s, nights) => {
        const first = planRetention(s.state, s.policy);
        // Apply the first plan: the deleted snapshots are gone.
        const gone = new Set(first.delete);
        let current: Scenario = { ...s, state: { ...s.state, snapshots: s.state.snapshots.filter((x) => !gone.has(x.id)) } };
        // Re-planning right away deletes nothing.
        const second = planRetention(current.state, current.policy);
        assert.deepEqual(second.delete, []);
        assert.deepEqual(second.keep, first.keep);
        // Then N failed nights, each planned: nothing is ever deleted, the kept set never shrinks.
        for (const failures of nights) {
          current = { ...current, state: withFailures(current, failures) };
          const plan = planRetention(current.state, current.policy);
          assert.deepEqual(plan.delete, []);
          assert.deepEqual(plan.keep, first.keep);
        }
      }),
      RUNS,
    );
  });

  test('(e\') a state whose plan deletes nothing still deletes nothing after failed attempts are added', () => {
    fc.assert(
      fc.property(scenarioArb, failuresArb, (s, failures) => {
        const before = planRetention(s.state, s.policy);
        fc.pre(before.delete.length === 0);
        assert.deepEqual(planRetention(withFailures(s, failures), s.policy).delete, []);
      }),
      RUNS,
    );
  });

  test('(f) deleteIncoming holds exactly the deleting.* entries and the old attempts of jobs not running', () => {
    fc.assert(
      fc.property(scenarioArb, ({ state: st, policy: p }) => {
        const plan = planRetention(st, p);
        for (const name of plan.deleteIncoming) {
          assert.ok(ATTEMPT_RE.test(name) || DELETING_RE.test(name), `unexpected name removed: ${JSON.stringify(name)}`);
        }
        const expected = st.incoming
          .filter(({ name, mtimeMs }) => {
            if (/^deleting\..+\.[0-9a-f]{8}$/.test(name)) return true;
            const match = ATTEMPT_RE.exec(name);
            return match !== null && p.now - mtimeMs > p.incomingMaxAgeMs && !p.runningJobs.has(match[1]!);
          })
          .map(({ name }) => name);
        assert.deepEqual(plan.deleteIncoming, expected);
        // Never anything young unless it is an interrupted deletion, never a running job's attempt.
        for (const entry of st.incoming) {
          if (!plan.deleteIncoming.includes(entry.name) || DELETING_RE.test(entry.name)) continue;
          assert.ok(p.now - entry.mtimeMs > p.incomingMaxAgeMs);
          assert.ok(!p.runningJobs.has(ATTEMPT_RE.exec(entry.name)![1]!));
        }
        // Markers: exactly the old ones.
        assert.deepEqual(
          plan.deleteMarkers,
          st.commitMarkers.filter((m) => p.now - m.mtimeMs > COMMIT_MARKER_MAX_AGE_MS).map((m) => m.name),
        );
      }),
      RUNS,
    );
  });

  test('a larger keep never deletes what a smaller keep kept', () => {
    fc.assert(
      fc.property(scenarioArb, fc.integer({ min: 1, max: 10 }), (s, extra) => {
        const small = planRetention(s.state, s.policy);
        const large = planRetention(s.state, { ...s.policy, keep: s.policy.keep + extra });
        for (const id of small.keep) assert.ok(large.keep.includes(id));
        for (const id of large.delete) assert.ok(small.delete.includes(id));
      }),
      RUNS,
    );
  });

  test('planning does not mutate its input', () => {
    fc.assert(
      fc.property(scenarioArb, ({ state: st, policy: p }) => {
        const copy = JSON.stringify(st);
        const running = [...p.runningJobs];
        planRetention(st, p);
        assert.equal(JSON.stringify(st), copy);
        assert.deepEqual([...p.runningJobs], running);
      }),
      { numRuns: 200 },
    );
  });
});

/** The name writeDrillResult gives a result that finished at night n of November 2026 plus `minute` minutes. */
function drillName(n: number, minute = 0): string {
  return `${snapshotIdFor(new Date(Date.UTC(2026, 10, n, 6, minute, 0)))}-repeat_bysu-drill_shop_${n}_${minute}.json`;
}

/** What latestDrillResults reads from these results: the names of the newest readable one and of the newest passed one. */
function statusReads(results: readonly DrillResultEntry[]): { latest: string | null; latestPassed: string | null } {
  const newestFirst = [...results].sort((a, b) => (a.name < b.name ? 1 : -1));
  return {
    latest: newestFirst.find((entry) => entry.result !== null)?.name ?? null,
    latestPassed: newestFirst.find((entry) => entry.result?.passed === true)?.name ?? null,
  };
}

describe('planRetention: drill results', () => {
  test(`keeps the newest ${DRILL_RESULTS_KEPT} of 30, deletes the 10 oldest (newest first)`, () => {
    const results = Array.from({ length: 30 }, (_, index) => ({ name: drillName(index + 1), result: { passed: true, snapshotId: night(index + 1) } }));
    const plan = planRetention(state({ drillResults: [...results].reverse() }), policy({ keep: 1 }));
    assert.deepEqual(plan.keepDrillResults, results.slice(10).map(({ name }) => name).reverse());
    assert.deepEqual(plan.deleteDrillResults, results.slice(0, 10).map(({ name }) => name).reverse());
  });

  test('the newest passed result stays when the 20 newer ones all failed: status still sees the last pass', () => {
    const results: DrillResultEntry[] = Array.from({ length: 30 }, (_, index) => ({ name: drillName(index + 1), result: { passed: index === 4, snapshotId: null } }));
    const plan = planRetention(state({ drillResults: results }), policy());
    assert.equal(plan.keepDrillResults.length, DRILL_RESULTS_KEPT + 1);
    assert.ok(plan.keepDrillResults.includes(drillName(5)));
    assert.ok(!plan.deleteDrillResults.includes(drillName(5)));
    assert.equal(plan.deleteDrillResults.length, 9);
  });

  test('the newest result of each snapshot that stays is kept; older results of it are not', () => {
    const results: DrillResultEntry[] = [
      ...Array.from({ length: 25 }, (_, index) => ({ name: drillName(25, index), result: { passed: true, snapshotId: night(25) } })),
      { name: drillName(2, 0), result: { passed: false, snapshotId: night(2) } },
      { name: drillName(2, 1), result: { passed: true, snapshotId: night(2) } },
      { name: drillName(1, 0), result: { passed: true, snapshotId: night(1) } },
    ];
    const plan = planRetention(state({ snapshots: complete(night(2), night(25)), latest: night(25), drillResults: results }), policy({ keep: 2 }));
    assert.ok(plan.keepDrillResults.includes(drillName(2, 1)), 'the newest drill of a kept snapshot');
    assert.ok(plan.deleteDrillResults.includes(drillName(2, 0)), 'an older drill of the same snapshot goes');
    assert.ok(plan.deleteDrillResults.includes(drillName(1, 0)), 'the drill of a snapshot already gone goes');
    assert.equal(plan.keepDrillResults.length, DRILL_RESULTS_KEPT + 1);
  });

  test('an unreadable result counts among the newest; the newest readable one stays', () => {
    const results: DrillResultEntry[] = [
      ...Array.from({ length: 25 }, (_, index) => ({ name: drillName(10, index), result: null })),
      { name: drillName(3), result: { passed: false, snapshotId: null } },
      { name: drillName(2), result: { passed: true, snapshotId: null } },
      { name: drillName(1), result: { passed: true, snapshotId: null } },
    ];
    const plan = planRetention(state({ drillResults: results }), policy());
    assert.deepEqual(plan.deleteDrillResults, [...Array.from({ length: 5 }, (_, index) => drillName(10, 4 - index)), drillName(1)]);
    assert.deepEqual(statusReads(results.filter(({ name }) => plan.keepDrillResults.includes(name))), { latest: drillName(3), latestPassed: drillName(2) });
  });

  test('half-written results go once they are an hour old', () => {
    const plan = planRetention(state({ drillTemporaries: [
      { name: `.${drillName(1)}.deadbeef`, mtimeMs: NOW - DRILL_TEMPORARY_MAX_AGE_MS - 1 },
      { name: `.${drillName(2)}.cafebabe`, mtimeMs: NOW - 60_000 },
    ] }), policy());
    assert.deepEqual(plan.deleteDrillTemporaries, [`.${drillName(1)}.deadbeef`]);
  });

  test('property: pruning never changes what status reads, keeps the newest, and stays bounded', () => {
    const entryArb = fc.record({
      night: fc.integer({ min: 1, max: 28 }),
      minute: fc.integer({ min: 0, max: 59 }),
      result: fc.option(fc.record({ passed: fc.boolean(), snapshotId: fc.option(fc.integer({ min: 1, max: 28 }).map(night)) }), { freq: 5 }),
    });
    fc.assert(fc.property(
      fc.uniqueArray(entryArb, { selector: (entry) => `${entry.night}.${entry.minute}`, maxLength: 80 }),
      fc.uniqueArray(fc.integer({ min: 1, max: 28 }).map(night), { maxLength: 10 }),
      (raw, keptSnapshots) => {
        const results: DrillResultEntry[] = raw.map((entry) => ({ name: drillName(entry.night, entry.minute), result: entry.result }));
        const plan = planDrillResults(results, keptSnapshots);
        const kept = results.filter(({ name }) => plan.keep.includes(name));
        assert.deepEqual(statusReads(kept), statusReads(results));
        assert.deepEqual([...plan.keep, ...plan.delete].sort(), results.map(({ name }) => name).sort());
        const newest = results.map(({ name }) => name).sort().reverse().slice(0, DRILL_RESULTS_KEPT);
        for (const name of newest) assert.ok(plan.keep.includes(name));
        assert.ok(plan.keep.length <= DRILL_RESULTS_KEPT + keptSnapshots.length + 2);
        for (const id of keptSnapshots) {
          const newestOfSnapshot = results.filter((entry) => entry.result?.snapshotId === id).map(({ name }) => name).sort().pop();
          if (newestOfSnapshot) assert.ok(plan.keep.includes(newestOfSnapshot));
        }
      },
    ), { numRuns: 300 });
  });
});
