/** `bysu latest <app> [--json]`: the absolute path of the newest complete snapshot (exit 1 if none). */
import { requireRepository } from '../repository/marker.ts';
import { newestSnapshot } from '../repository/read.ts';
import { EXIT_FAILED, EXIT_OK, ExitError, loadCliConfig, requireAppNames, type GlobalOptions } from './context.ts';

export async function latest(globals: GlobalOptions, app: string, options: { json?: boolean } = {}): Promise<number> {
  const config = loadCliConfig(globals);
  requireAppNames(config, [app], false);
  await requireRepository(config.repository);
  const snapshot = await newestSnapshot(config.repository, app);
  if (!snapshot) throw new ExitError(EXIT_FAILED, `${app}: no complete snapshot in ${config.repository}`);
  if (options.json) {
    const { manifest } = snapshot;
    console.log(JSON.stringify({ app, id: snapshot.id, path: snapshot.path, finishedAt: manifest?.finishedAt ?? null, bytes: manifest?.bytes ?? null, parts: manifest?.parts.map((part) => part.file) ?? [] }, null, 2));
  } else {
    console.log(snapshot.path);
  }
  return EXIT_OK;
}
