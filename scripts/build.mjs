// @ts-check
/**
 * `npm run build`: compile src/ to dist/ with tsc
 * (tsconfig.build.json), unless dist/ was built from exactly these sources.
 * bin/bysu.js runs dist/ when it is current (bin/compiled.js) and the
 * TypeScript through tsx otherwise, so a missing or stale build costs start-up
 * time and memory, never correctness. Without TypeScript installed (an
 * `npm ci --omit=dev` install) it says so and leaves BYSU running through tsx.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUILD_RECORD, compiledMain, sourcesDigest } from '../bin/compiled.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
if (compiledMain(root) !== null) process.exit(0);
const digest = sourcesDigest(root);
const dist = path.join(root, 'dist');
let tsc;
try {
  tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
} catch {
  console.error('build: TypeScript is not installed (npm ci --omit=dev?): bysu runs its sources through tsx instead; `npm ci && npm run build` compiles them');
  process.exit(0);
}
// Into a fresh directory, then swapped in, so that a process starting meanwhile sees the old build or the new one, never half of one.
const fresh = path.join(root, `dist.new-${process.pid}`);
rmSync(fresh, { recursive: true, force: true });
const result = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json'), '--outDir', fresh], { stdio: 'inherit' });
if (result.status !== 0) {
  rmSync(fresh, { recursive: true, force: true });
  console.error('build: tsc failed; bysu runs its sources through tsx until the build succeeds');
  process.exit(1);
}
writeFileSync(path.join(fresh, BUILD_RECORD), `${JSON.stringify({ digest, builtAt: new Date().toISOString(), node: process.version }, null, 2)}\n`);
const old = path.join(root, `dist.old-${process.pid}`);
if (existsSync(dist)) renameSync(dist, old);
renameSync(fresh, dist);
rmSync(old, { recursive: true, force: true });
console.error(`build: compiled to ${path.relative(process.cwd(), dist) || 'dist'}`);
