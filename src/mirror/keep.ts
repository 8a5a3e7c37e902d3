/**
 * What a flood cannot push out. Retention here keeps the newest `keep`
 * copies, which a source that was taken over could defeat on its own: it
 * publishes `keep` new snapshots (or backdated ones between the real ones),
 * the mirror copies them as the newest, and the good copies fall out of
 * `keep` in one run. So retention also keeps two more sets, each by this
 * side's own clock (`mirroredFrom.copiedAt`, written here at the commit),
 * which the source cannot set:
 * - by arrival day: the newest copy that arrived on each of the last `keep`
 *   days on which copies arrived. Whatever a source sends in one day takes
 *   one of these places, so the good copies that arrived on the days before
 *   stay until a flood has gone on for `keep` days;
 * - by snapshot day: of each of the last `keep` days that snapshots were
 *   taken on (the id's UTC day), the copy that arrived first. Copies that
 *   arrived together (a first sync, a catch-up after the source was away),
 *   which share one arrival day, keep a place each, and a snapshot backdated
 *   into a day arrives after the copy that day already has.
 * At most three times `keep` copies are held; in normal use (a snapshot a
 * day) all three sets are the newest `keep`.
 */
import { compareSnapshotIds } from '../repository/layout.ts';
import type { Manifest } from '../repository/manifest.ts';

/** Given a copy's manifest, return when it arrived here (ms): its copiedAt, else (not a copy) its finishedAt. */
export function arrivedAt(manifest: Manifest): number {
  const copied = Date.parse(manifest.mirroredFrom?.copiedAt ?? '');
  return Number.isFinite(copied) ? copied : Date.parse(manifest.finishedAt);
}

type Copy = { id: string; arrivedAt: number };

/**
 * Given the copies, keep, the day a copy counts for (null: none) and which
 * of two copies of one day is the one kept, return the kept copy of each of
 * the `keep` latest days.
 */
function bestOfLatestDays(copies: readonly Copy[], keep: number, dayOf: (copy: Copy) => string | null, better: (copy: Copy, held: Copy) => boolean): Set<string> {
  const bestByDay = new Map<string, Copy>();
  for (const copy of copies) {
    const day = dayOf(copy);
    if (day === null) continue;
    const held = bestByDay.get(day);
    if (held === undefined || better(copy, held)) bestByDay.set(day, copy);
  }
  return new Set([...bestByDay.keys()].sort().reverse().slice(0, keep).map((day) => bestByDay.get(day)!.id));
}

/**
 * Given the copies here (id and arrival time, ms) and keep, return, for each
 * of the `keep` latest UTC days of their ids, the copy of that day that
 * arrived first (of two that arrived at once, the newer). A copy with no
 * readable arrival time counts as arrived last.
 */
export function firstArrivedOfDays(copies: readonly Copy[], keep: number): Set<string> {
  const arrival = (copy: Copy) => (Number.isFinite(copy.arrivedAt) ? copy.arrivedAt : Infinity);
  return bestOfLatestDays(copies, keep, (copy) => copy.id.slice(0, 8),
    (copy, held) => arrival(copy) < arrival(held) || (arrival(copy) === arrival(held) && compareSnapshotIds(copy.id, held.id) > 0));
}

/**
 * Given the copies here (id and arrival time, ms) and keep, return, for each
 * of the `keep` latest UTC days on which copies arrived, the newest copy
 * (by id) that arrived that day. A copy with no readable arrival time counts
 * for no day.
 */
export function newestOfArrivalDays(copies: readonly Copy[], keep: number): Set<string> {
  return bestOfLatestDays(copies, keep, (copy) => (Number.isFinite(copy.arrivedAt) ? new Date(copy.arrivedAt).toISOString().slice(0, 10) : null),
    (copy, held) => compareSnapshotIds(copy.id, held.id) > 0);
}

/** Given the copies here and keep, return the ids retention keeps whatever their rank: both sets above. */
export function protectedCopies(copies: readonly Copy[], keep: number): Set<string> {
  return new Set([...newestOfArrivalDays(copies, keep), ...firstArrivedOfDays(copies, keep)]);
}
