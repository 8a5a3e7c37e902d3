/**
 * What a flood cannot push out. Retention here keeps the newest `keep`
 * copies, which a source that was taken over could defeat on its own: it
 * publishes `keep` new snapshots (or backdated ones between the real ones),
 * the mirror copies them as the newest, and the good copies fall out of
 * `keep` in one run. So retention also keeps, for each of the last `keep`
 * days that snapshots here were taken on (the UTC day of the id), the copy
 * of that day that arrived here first (`mirroredFrom.copiedAt`, this side's
 * own clock at the commit). A flood of new snapshots is of one day, and
 * takes one place; snapshots backdated into a day arrive after the copy
 * that day already has, and take none; copies that arrived together (a
 * first sync, a catch-up) are of their own days, and keep theirs. At most
 * twice `keep` copies are held; in normal use (a snapshot a day) both rules
 * keep the same ones.
 */
import { compareSnapshotIds } from '../repository/layout.ts';
import type { Manifest } from '../repository/manifest.ts';

/** Given a copy's manifest, return when it arrived here (ms): its copiedAt, else (not a copy) its finishedAt. */
export function arrivedAt(manifest: Manifest): number {
  const copied = Date.parse(manifest.mirroredFrom?.copiedAt ?? '');
  return Number.isFinite(copied) ? copied : Date.parse(manifest.finishedAt);
}

/**
 * Given the copies here (id and arrival time, ms) and keep, return, for each
 * of the `keep` latest UTC days of their ids, the copy of that day that
 * arrived first (of two that arrived at once, the newer). A copy with no
 * readable arrival time counts as arrived last.
 */
export function firstArrivedOfDays(copies: readonly { id: string; arrivedAt: number }[], keep: number): Set<string> {
  const firstByDay = new Map<string, { id: string; arrivedAt: number }>();
  for (const copy of copies) {
    const day = copy.id.slice(0, 8);
    const arrivedAt = Number.isFinite(copy.arrivedAt) ? copy.arrivedAt : Infinity;
    const held = firstByDay.get(day);
    if (held === undefined || arrivedAt < held.arrivedAt || (arrivedAt === held.arrivedAt && compareSnapshotIds(copy.id, held.id) > 0)) firstByDay.set(day, { id: copy.id, arrivedAt });
  }
  const days = [...firstByDay.keys()].sort().reverse().slice(0, keep);
  return new Set(days.map((day) => firstByDay.get(day)!.id));
}
