/**
 * `bysu verify <app>...|--all`: re-hash every snapshot against SHA256SUMS and
 * re-validate tars; what it found is kept beside the snapshots
 * (`.last-verify.json`), so `status` names a snapshot that failed it.
 */
import type { Redis } from 'ioredis';
import { withAppLock } from '../queue/app-lock.ts';
import { connectProducer } from '../queue/connection.ts';
import { VERIFY_RECORD_FORMAT } from '../repository/layout.ts';
import { requireRepository } from '../repository/marker.ts';
import { listSnapshots, verifySnapshot } from '../repository/read.ts';
import { writeVerifyRecord, type VerifyRecord } from '../repository/records.ts';
import { changeApp } from '../repository/summary.ts';
import { EXIT_FAILED, EXIT_OK, loadCliConfig, requireAppNames, type GlobalOptions } from './context.ts';

export async function verify(globals: GlobalOptions, names: string[], options: { all?: boolean }): Promise<number> {
  const config = loadCliConfig(globals);
  await requireRepository(config.repository);
  const apps = requireAppNames(config, names, options.all);
  // The record is written under the app's lock, as every writer does; without Redis it is written alone and
  // readers rebuild the app's summary.
  const redis: Redis | null = await connectProducer(config.redis.url, 2000).catch(() => null);
  let failures = 0;
  let checked = 0;
  try {
    for (const app of apps) failures += await verifyApp(config.repository, app, redis, config.redis.prefix, () => (checked += 1));
  } finally {
    redis?.disconnect();
  }
  console.log(`${checked} snapshots verified, ${failures} failed`);
  return failures === 0 ? EXIT_OK : EXIT_FAILED;
}

/** Given the repository, an app, Redis (or null) and its prefix, verify every snapshot of the app, print each verdict, record them; return how many failed. */
async function verifyApp(repository: string, app: string, redis: Redis | null, prefix: string, counted: () => void): Promise<number> {
  let failures = 0;
  const found: VerifyRecord['snapshots'] = [];
  for (const snapshot of await listSnapshots(repository, app)) {
    const result = await verifySnapshot(snapshot);
    counted();
    found.push({ id: result.id, ok: result.ok, problems: result.problems });
    if (result.ok) {
      console.log(`OK      ${app}/${result.id} (${result.files} files)`);
    } else {
      failures += 1;
      console.log(`FAILED  ${app}/${result.id}`);
      for (const problem of result.problems) console.log(`        ${problem}`);
    }
  }
  if (found.length === 0) return failures;
  const record: VerifyRecord = { format: VERIFY_RECORD_FORMAT, app, at: new Date().toISOString(), snapshots: found };
  const lock = redis === null ? null : <T>(fn: () => Promise<T>) => withAppLock(redis, prefix, app, fn);
  // The verdicts above stand whatever happens here; only `status` would not know them.
  await changeApp(repository, app, lock, () => writeVerifyRecord(repository, app, record),
    (error) => console.error(`bysu verify: recorded the result of ${app}, but cannot update its summary: ${error.message}`))
    .catch((error: unknown) => console.error(`bysu verify: cannot record the result of ${app} in the repository: ${(error as Error).message}`));
  return failures;
}
