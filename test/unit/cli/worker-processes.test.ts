/**
 * How many snapshot worker processes `bysu up` runs: up.snapshotWorkers when
 * set; otherwise one per core, but no more than fill concurrency.global at
 * perWorker each, and at least one. And the key itself: 0 to 64, from the
 * file or BYSU_UP_SNAPSHOT_WORKERS, and bound at start (a reload keeps it).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { LiveConfig } from '../../../src/config/live.ts';
import { loadConfig } from '../../../src/config/load.ts';
import { snapshotWorkerCount } from '../../../src/cli/worker-processes.ts';

const settings = (snapshotWorkers: number, global: number, perWorker: number) => ({ up: { snapshotWorkers }, concurrency: { global, perWorker } });

test('0 is one process per core, capped by what concurrency.global needs', () => {
  assert.equal(snapshotWorkerCount(settings(0, 16, 4), 2), 2, 'two cores: two processes');
  assert.equal(snapshotWorkerCount(settings(0, 16, 4), 8), 4, 'eight cores, but 16 / 4 fill the global limit with four');
  assert.equal(snapshotWorkerCount(settings(0, 17, 4), 8), 5, 'rounded up: a fifth process for the 17th job');
  assert.equal(snapshotWorkerCount(settings(0, 2, 4), 8), 1, 'one process holds the whole global limit');
  assert.equal(snapshotWorkerCount(settings(0, 16, 4), 1), 1, 'one core: one process');
});

test('a number set is taken as it is', () => {
  assert.equal(snapshotWorkerCount(settings(3, 2, 4), 1), 3);
  assert.equal(snapshotWorkerCount(settings(1, 16, 4), 8), 1);
});

/** Given a file's text, run fn with its path, then remove it. */
async function withConfig(text: string, fn: (file: string) => Promise<void> | void): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bysu-up-workers-'));
  const file = path.join(dir, 'bysu.yaml');
  writeFileSync(file, text);
  try {
    await fn(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('up.snapshotWorkers: 0 by default, 0 to 64 from the file or the environment, anything else refused', () => withConfig('up: { snapshotWorkers: 3 }\n', (file) => {
  assert.equal(loadConfig(file, {}).up.snapshotWorkers, 3);
  assert.equal(loadConfig(file, { BYSU_UP_SNAPSHOT_WORKERS: '5' }).up.snapshotWorkers, 5);
  writeFileSync(file, 'log: { level: info }\n');
  assert.equal(loadConfig(file, {}).up.snapshotWorkers, 0);
  for (const bad of ['-1', '65', '1.5', 'two']) {
    writeFileSync(file, `up: { snapshotWorkers: ${bad} }\n`);
    assert.throws(() => loadConfig(file, {}), /up\.snapshotWorkers: must be a whole number from 0 \(automatic\) to 64/, bad);
  }
}));

test('a reload keeps the running up.snapshotWorkers and names it', () => withConfig('up: { snapshotWorkers: 2 }\n', async (file) => {
  const live = new LiveConfig(file, loadConfig(file, {}));
  writeFileSync(file, 'up: { snapshotWorkers: 4 }\n');
  const outcome = await live.reload();
  assert.ok(outcome.ok);
  assert.deepEqual(outcome.needRestart, ['up.snapshotWorkers']);
  assert.equal(live.current().up.snapshotWorkers, 2);
}));
