/**
 * `bysu verify <app>...|--all [--snapshot ID] [--json]`: verify every
 * snapshot now (or the one named), as the verify worker does on its schedule
 * (src/verify), without a bound on the reads; what it found is kept beside
 * the snapshots (`.last-verify.json`), so `status` names a snapshot that
 * failed it and calls the app CORRUPT.
 */
import type { Redis } from 'ioredis';
import { withAppLock } from '../queue/app-lock.ts';
import { connectProducer } from '../queue/connection.ts';
import { requireRepository } from '../repository/marker.ts';
import { escapeControls } from '../printable.ts';
import { isSnapshotId } from '../repository/layout.ts';
import { verifyApp } from '../verify/verify-app.ts';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, ExitError, loadCliConfig, requireAppNames, type GlobalOptions } from './context.ts';
import type { Config } from '../config/load.ts';
import { NAME_PATTERN } from '../config/formats.ts';
import { appsHeldBy } from '../mirror/record.ts';
import { listAppDirectories, listSnapshots } from '../repository/read.ts';

/** One snapshot's verdict, as `verify --json` prints it. */
interface VerifyOutcome {
  app: string;
  id: string;
  ok: boolean;
  files: number;
  bytes: number;
  problems: string[];
}

export async function verify(globals: GlobalOptions, names: string[], options: { all?: boolean; snapshot?: string; json?: boolean }): Promise<number> {
  const config = loadCliConfig(globals);
  await requireRepository(config.repository);
  const apps = await appsToVerify(config, names, options.all === true);
  const say = (line: string) => {
    if (!options.json) console.log(line);
  };
  if (options.snapshot !== undefined) {
    const id = options.snapshot;
    if (options.all || apps.length !== 1) throw new ExitError(EXIT_USAGE, '--snapshot names a snapshot of one app: give exactly one app');
    if (!isSnapshotId(id)) throw new ExitError(EXIT_USAGE, `--snapshot "${escapeControls(id)}" is not a snapshot id (they look like 20261126T021500Z); see ${apps[0]}'s with: bysu list ${apps[0]}`);
    if (!(await listSnapshots(config.repository, apps[0]!)).some((snapshot) => snapshot.id === id)) {
      throw new ExitError(EXIT_USAGE, `${apps[0]} has no complete snapshot ${id}; see its snapshots with: bysu list ${apps[0]}`);
    }
  }
  const outcomes: VerifyOutcome[] = [];
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
        ...(options.snapshot !== undefined ? { snapshotId: options.snapshot } : {}),
        onSnapshot: (result) => {
          checked += 1;
          outcomes.push({ app, id: result.id, ok: result.ok, files: result.files, bytes: result.bytes, problems: result.problems });
          if (result.ok) {
            say(`OK      ${app}/${result.id} (${result.files} files)`);
            return;
          }
          failures += 1;
          say(`FAILED  ${app}/${result.id}`);
          for (const problem of result.problems) say(`        ${problem}`);
        },
        onSummaryError: (error) => console.error(`bysu verify: recorded the result of ${app}, but cannot update its summary: ${error.message}`),
      });
      // The verdicts above stand whatever happens here; only `status` would not know them.
      if (recordError) console.error(`bysu verify: cannot record the result of ${app} in the repository: ${recordError.message}`);
    }
  } finally {
    redis?.disconnect();
  }
  // escapeControls keeps it valid JSON with no C1 control (a file name from a node) reaching the terminal.
  if (options.json) console.log(escapeControls(JSON.stringify(outcomes, null, 2), { keepLineBreaks: true }));
  else console.log(`${checked} snapshots verified, ${failures} failed`);
  return failures === 0 ? EXIT_OK : EXIT_FAILED;
}

/**
 * Given the config, the names asked for and --all, return the apps to verify:
 * configured ones, and a mirror's copies as any snapshot (by name, a
 * directory here as `bysu list` takes it; with --all, each app directory
 * whose `.mirror.json` names a configured mirror).
 */
async function appsToVerify(config: Config, names: string[], all: boolean): Promise<string[]> {
  const configured = new Set(config.apps.map((app) => app.name));
  if (all) return [...requireAppNames(config, names, true), ...await appsHeldBy(config.repository, configured, new Set(config.mirrors.map((mirror) => mirror.name)))];
  const onDisk = new Set((await listAppDirectories(config.repository)).filter((name) => NAME_PATTERN.test(name) && !configured.has(name)));
  const known = names.filter((name) => !onDisk.has(name));
  if (names.length === 0 || known.length > 0) requireAppNames(config, known, false);
  return names;
}
