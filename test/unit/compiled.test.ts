/**
 * bin/compiled.js decides whether bin/bysu.js runs dist/ or the sources: only
 * a build made from exactly the sources on disk is run, so an edit, a new
 * file or a checkout makes it fall back to the sources, never to old code.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, test } from 'node:test';
import { BUILD_RECORD, compiledMain, sourcesDigest } from '../../bin/compiled.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let root: string;
beforeEach(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'bysu-compiled-'));
  await mkdir(path.join(root, 'src/cli'), { recursive: true });
  await mkdir(path.join(root, 'src/workers'));
  await writeFile(path.join(root, 'src/cli/main.ts'), 'export const main = 1;\n');
  await writeFile(path.join(root, 'src/workers/snapshot.ts'), 'export const worker = 1;\n');
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function build(): Promise<void> {
  await mkdir(path.join(root, 'dist/src/cli'), { recursive: true });
  await writeFile(path.join(root, 'dist/src/cli/main.js'), 'export const main = 1;\n');
  await writeFile(path.join(root, 'dist', BUILD_RECORD), JSON.stringify({ digest: sourcesDigest(root) }));
}

test('no build: the sources run', () => {
  assert.equal(compiledMain(root), null);
});

test('a build of these very sources runs', async () => {
  await build();
  assert.equal(compiledMain(root)?.pathname, path.join(root, 'dist/src/cli/main.js'));
});

test('an edited, added or removed source makes the build stale', async () => {
  await build();
  await writeFile(path.join(root, 'src/cli/main.ts'), 'export const main = 2;\n');
  assert.equal(compiledMain(root), null, 'edited');
  await build();
  await writeFile(path.join(root, 'src/workers/retention.ts'), 'export const retention = 1;\n');
  assert.equal(compiledMain(root), null, 'added');
  await build();
  await rm(path.join(root, 'src/workers/retention.ts'));
  assert.equal(compiledMain(root), null, 'removed');
});

test('a build without its compiled CLI, or with a garbled record, is not run', async () => {
  await build();
  await rm(path.join(root, 'dist/src/cli/main.js'));
  assert.equal(compiledMain(root), null);
  await build();
  await writeFile(path.join(root, 'dist', BUILD_RECORD), '{ not json');
  assert.equal(compiledMain(root), null);
});

test('npm run build leaves this checkout with a current build, which bin/bysu.js runs', () => {
  const result = spawnSync(process.execPath, [path.join(ROOT, 'scripts/build.mjs')], { encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  assert.ok(compiledMain(ROOT), 'dist/ is current after the build');
  const version = spawnSync(path.join(ROOT, 'bin/bysu.js'), ['--version'], { encoding: 'utf8' });
  assert.equal(version.status, 0, version.stderr);
  assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
});
