/** `bysu verify <app>...|--all`: re-hash every snapshot against SHA256SUMS and re-validate tars. */
import { requireRepository } from '../repository/marker.ts';
import { listSnapshots, verifySnapshot } from '../repository/read.ts';
import { EXIT_FAILED, EXIT_OK, loadCliConfig, requireAppNames, type GlobalOptions } from './context.ts';

export async function verify(globals: GlobalOptions, names: string[], options: { all?: boolean }): Promise<number> {
  const config = loadCliConfig(globals);
  await requireRepository(config.repository);
  let failures = 0;
  let checked = 0;
  for (const app of requireAppNames(config, names, options.all)) {
    for (const snapshot of await listSnapshots(config.repository, app)) {
      const result = await verifySnapshot(snapshot);
      checked += 1;
      if (result.ok) {
        console.log(`OK      ${app}/${result.id} (${result.files} files)`);
      } else {
        failures += 1;
        console.log(`FAILED  ${app}/${result.id}`);
        for (const problem of result.problems) console.log(`        ${problem}`);
      }
    }
  }
  console.log(`${checked} snapshots verified, ${failures} failed`);
  return failures === 0 ? EXIT_OK : EXIT_FAILED;
}
