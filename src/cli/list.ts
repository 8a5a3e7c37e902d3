/** `bysu list <app> [--json]`: the complete snapshots of an app, newest first. */
import { formatBytes } from '../config/formats.ts';
import { requireRepository } from '../repository/marker.ts';
import { escapeControls } from '../printable.ts';
import { listSnapshots } from '../repository/read.ts';
import { EXIT_OK, loadCliConfig, requireAppNames, type GlobalOptions } from './context.ts';

export async function list(globals: GlobalOptions, app: string, options: { json?: boolean }): Promise<number> {
  const config = loadCliConfig(globals);
  requireAppNames(config, [app], false);
  await requireRepository(config.repository);
  const snapshots = await listSnapshots(config.repository, app);
  if (options.json) {
    // escapeControls keeps it valid JSON (C0 is escaped by JSON.stringify already) with no C1 control reaching the terminal.
    console.log(escapeControls(JSON.stringify(snapshots.map((snapshot) => ({
      id: snapshot.id,
      path: snapshot.path,
      finishedAt: snapshot.manifest?.finishedAt ?? null,
      bytes: snapshot.manifest?.bytes ?? null,
      trigger: snapshot.manifest?.trigger ?? null,
      parts: snapshot.manifest?.parts.map((part) => part.file) ?? [],
      warnings: snapshot.manifest?.warnings ?? [],
    })), null, 2), { keepLineBreaks: true }));
    return EXIT_OK;
  }
  if (snapshots.length === 0) {
    console.log(`${app}: no complete snapshots in ${config.repository}`);
    return EXIT_OK;
  }
  for (const snapshot of snapshots) {
    const manifest = snapshot.manifest;
    console.log(manifest
      ? `${snapshot.id}  ${formatBytes(manifest.bytes).padStart(10)}  ${manifest.trigger.padEnd(8)}  ${manifest.parts.map((part) => part.file).join(', ')}${manifest.warnings.length ? `  (${manifest.warnings.length} warnings)` : ''}`
      : `${snapshot.id}  (manifest.json unreadable)`);
  }
  return EXIT_OK;
}
