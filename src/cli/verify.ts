/**
 * `bysu verify <app>...|--all`: verify every snapshot now, as the verify
 * worker does on its schedule (src/verify), without a bound on the reads;
 * what it found is kept beside the snapshots (`.last-verify.json`), so
 * `status` names a snapshot that failed it and calls the app CORRUPT.
 */
import type { Redis } from 'ioredis';
import { withAppLock } from '../queue/app-lock.ts';
import { connectProducer } from '../queue/connection.ts';
import { requireRepository } from '../repository/marker.ts';
import { verifyApp } from '../verify/verify-app.ts';
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
    for (const app of apps) {
      const lock = redis === null ? null : <T>(fn: () => Promise<T>) => withAppLock(redis, config.redis.prefix, app, fn);
      const { recordError } = await verifyApp(config.repository, app, {
        lock,
        onSnapshot: (result) => {
          checked += 1;
          if (result.ok) {
            console.log(`OK      ${app}/${result.id} (${result.files} files)`);
            return;
          }
          failures += 1;
          console.log(`FAILED  ${app}/${result.id}`);
          for (const problem of result.problems) console.log(`        ${problem}`);
        },
        onSummaryError: (error) => console.error(`bysu verify: recorded the result of ${app}, but cannot update its summary: ${error.message}`),
      });
      // The verdicts above stand whatever happens here; only `status` would not know them.
      if (recordError) console.error(`bysu verify: cannot record the result of ${app} in the repository: ${recordError.message}`);
    }
  } finally {
    redis?.disconnect();
  }
  console.log(`${checked} snapshots verified, ${failures} failed`);
  return failures === 0 ? EXIT_OK : EXIT_FAILED;
}
