/**
 * `bysu verify <app>...|--all`: re-hash every snapshot against SHA256SUMS and
 * re-validate tars; what it found is kept beside the snapshots
 * (`.last-verify.json`), so `status` names a snapshot that failed it.
 */
import { VERIFY_RECORD_FORMAT } from '../repository/layout.ts';
import { requireRepository } from '../repository/marker.ts';
import { listSnapshots, verifySnapshot } from '../repository/read.ts';
import { writeVerifyRecord, type VerifyRecord } from '../repository/records.ts';
import { refreshAppSummary } from '../repository/summary.ts';
import { EXIT_FAILED, EXIT_OK, loadCliConfig, requireAppNames, type GlobalOptions } from './context.ts';

export async function verify(globals: GlobalOptions, names: string[], options: { all?: boolean }): Promise<number> {
  const config = loadCliConfig(globals);
  await requireRepository(config.repository);
  let failures = 0;
  let checked = 0;
  for (const app of requireAppNames(config, names, options.all)) {
    const found: VerifyRecord['snapshots'] = [];
    for (const snapshot of await listSnapshots(config.repository, app)) {
      const result = await verifySnapshot(snapshot);
      checked += 1;
      found.push({ id: result.id, ok: result.ok, problems: result.problems });
      if (result.ok) {
        console.log(`OK      ${app}/${result.id} (${result.files} files)`);
      } else {
        failures += 1;
        console.log(`FAILED  ${app}/${result.id}`);
        for (const problem of result.problems) console.log(`        ${problem}`);
      }
    }
    if (found.length === 0) continue;
    try {
      await writeVerifyRecord(config.repository, app, { format: VERIFY_RECORD_FORMAT, app, at: new Date().toISOString(), snapshots: found });
      await refreshAppSummary(config.repository, app);
    } catch (error) {
      // The verdict above stands; only `status` will not know it.
      console.error(`bysu verify: cannot record the result of ${app} in the repository: ${(error as Error).message}`);
    }
  }
  console.log(`${checked} snapshots verified, ${failures} failed`);
  return failures === 0 ? EXIT_OK : EXIT_FAILED;
}
