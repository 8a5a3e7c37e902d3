/** A small tmpfs as a test's repository disk: mounting needs root and a kernel that allows it. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Whether this machine lets us mount a small tmpfs (root, and a kernel/container that allows it); else why not, for a test's skip. */
export function tmpfsUnavailable(): string | false {
  if (process.getuid?.() !== 0) return 'mounting a small tmpfs as the repository needs root (CI runs as root)';
  const probe = mkdtempSync(path.join(os.tmpdir(), 'bysu-tmpfs-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe], { stdio: 'pipe' });
    execFileSync('umount', [probe]);
    return false;
  } catch (error) {
    return `this machine does not allow mounting a tmpfs (${(error as Error).message.split('\n')[0]})`;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}
