/** Process-tree helpers for fault injection: find a process's descendants, signal a whole tree, read peak memory. */
import { readdirSync, readFileSync } from 'node:fs';

/** Given a pid, return the pids of all its descendants (from /proc). */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(parent, [...(children.get(parent) ?? []), Number(entry)]);
    } catch {
      // the process ended meanwhile
    }
  }
  const result: number[] = [];
  const walk = (current: number) => {
    for (const child of children.get(current) ?? []) {
      result.push(child);
      walk(child);
    }
  };
  walk(pid);
  return result;
}

/** Send `signal` to pid and all its descendants. */
export function signalTree(pid: number, signal: NodeJS.Signals): void {
  for (const target of [pid, ...descendants(pid)]) {
    try {
      process.kill(target, signal);
    } catch {
      // already gone
    }
  }
}

/** Given a pid, return its peak resident set size in bytes (VmHWM), or null. */
export function peakRss(pid: number): number | null {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Given a pid, return its state letter from /proc (`T` when stopped, `S` sleeping, `R` running), or null when it is gone. */
export function processState(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return null;
  }
}
