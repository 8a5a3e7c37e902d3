// @ts-check
/**
 * Which form of BYSU runs: `dist/`, compiled by `npm run build`
 * (scripts/build.mjs), when it was compiled from exactly the sources that are
 * here now; otherwise the TypeScript sources through tsx. Compiled, a process
 * starts in 0.15 s instead of 0.33 s and holds about 20 MiB less
 * (BENCHMARKS.md); an edited source makes the build stale, so what runs is
 * never older than what is on disk.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** The folders whose files are compiled (tsconfig.build.json's include). */
export const SOURCE_DIRS = ['src'];
/** What the build records next to its output. */
export const BUILD_RECORD = '.build.json';

/**
 * Given the project root, return the sha256 of every source file's path and
 * contents, in a fixed order.
 * @param {string} root
 * @returns {string}
 */
export function sourcesDigest(root) {
  const hash = createHash('sha256');
  /** @param {string} dir */
  const walk = (dir) => {
    for (const entry of readdirSync(path.join(root, dir), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const relative = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(relative);
      else if (/\.(ts|js)$/.test(entry.name)) hash.update(`${relative}\0`).update(readFileSync(path.join(root, relative))).update('\0');
    }
  };
  for (const dir of SOURCE_DIRS) if (existsSync(path.join(root, dir))) walk(dir);
  return hash.digest('hex');
}

/**
 * Given the project root, return the URL of the compiled CLI when `dist/` was
 * built from the sources as they are now, else null.
 * @param {string} root
 * @returns {URL | null}
 */
export function compiledMain(root) {
  try {
    const record = JSON.parse(readFileSync(path.join(root, 'dist', BUILD_RECORD), 'utf8'));
    const main = path.join(root, 'dist', 'src', 'cli', 'main.js');
    if (record.digest === sourcesDigest(root) && existsSync(main)) return new URL(`file://${main}`);
  } catch {
    // no build, or an unreadable one: run the sources
  }
  return null;
}
