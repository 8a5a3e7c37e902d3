/**
 * What a flood cannot push out. Retention here keeps the newest `keep`
 * copies, which a source that was taken over could defeat on its own: it
 * publishes `keep` new snapshots (or backdated ones between the real ones),
 * the mirror copies them, and the good copies fall out of `keep` in one run.
 * So retention also keeps the newest copy that arrived on each of the last
 * `keep` UTC days on which any copy arrived. The day is this side's own
 * clock (`mirroredFrom.copiedAt`, written here at the commit), which the
 * source cannot forge: however many snapshots it sends, and however it
 * dates them, one day of them takes one of those places. To push every good
 * copy out, a source must flood for `keep` days in a row, while this side
 * holds up to twice `keep` copies; in normal use (a snapshot or two a day)
 * the two rules keep the same copies.
 */
import { compareSnapshotIds } from '../repository/layout.ts';
import type { Manifest } from '../repository/manifest.ts';

/** Given a copy's manifest, return when it arrived here (ms): its copiedAt, else (not a copy) its finishedAt. */
export function arrivedAt(manifest: Manifest): number {
  const copied = Date.parse(manifest.mirroredFrom?.copiedAt ?? '');
  return Number.isFinite(copied) ? copied : Date.parse(manifest.finishedAt);
}

/**
 * Given the copies here (id and arrival time, ms) and keep, return the ids
 * of the newest copy (by id) that arrived on each of the `keep` latest UTC
 * days on which one arrived. A copy with no readable arrival time counts
 * for no day (the count rule alone decides it).
 */
export function newestOfArrivalDays(copies: readonly { id: string; arrivedAt: number }[], keep: number): Set<string> {
  const newestByDay = new Map<string, string>();
  for (const { id, arrivedAt } of copies) {
    if (!Number.isFinite(arrivedAt)) continue;
    const day = new Date(arrivedAt).toISOString().slice(0, 10);
    const held = newestByDay.get(day);
    if (held === undefined || compareSnapshotIds(id, held) > 0) newestByDay.set(day, id);
  }
  const days = [...newestByDay.keys()].sort().reverse().slice(0, keep);
  return new Set(days.map((day) => newestByDay.get(day)!));
}
