/** `bysu list <app>|--all [--json]`: the complete snapshots of an app (or of every configured app), newest first. */
import { formatBytes, NAME_PATTERN } from '../config/formats.ts';
import { requireRepository } from '../repository/marker.ts';
import { escapeControls } from '../printable.ts';
import { listAppDirectories, listSnapshots, type SnapshotEntry } from '../repository/read.ts';
import { EXIT_OK, loadCliConfig, requireAppNames, type GlobalOptions } from './context.ts';

/** One snapshot as `list --json` prints it. */
function listed(app: string, snapshot: SnapshotEntry) {
  return {
    app,
    id: snapshot.id,
    path: snapshot.path,
    finishedAt: snapshot.manifest?.finishedAt ?? null,
    bytes: snapshot.manifest?.bytes ?? null,
    trigger: snapshot.manifest?.trigger ?? null,
    parts: snapshot.manifest?.parts.map((part) => part.file) ?? [],
    warnings: snapshot.manifest?.warnings ?? [],
  };
}

export async function list(globals: GlobalOptions, app: string | undefined, options: { all?: boolean; json?: boolean }): Promise<number> {
  const config = loadCliConfig(globals);
  await requireRepository(config.repository);
  // An app that is not configured here but has a directory (a mirror's copies, an app removed from the config) can be listed by name.
  const onDisk = app !== undefined && NAME_PATTERN.test(app) && !config.apps.some((candidate) => candidate.name === app)
    && (await listAppDirectories(config.repository)).includes(app);
  const apps = onDisk ? [app] : requireAppNames(config, app === undefined ? [] : [app], options.all);
  const found: { app: string; snapshots: SnapshotEntry[] }[] = [];
  for (const name of apps) found.push({ app: name, snapshots: await listSnapshots(config.repository, name) });
  if (options.json) {
    // escapeControls keeps it valid JSON (C0 is escaped by JSON.stringify already) with no C1 control reaching the terminal.
    const entries = found.flatMap(({ app: name, snapshots }) => snapshots.map((snapshot) => listed(name, snapshot)));
    console.log(escapeControls(JSON.stringify(entries, null, 2), { keepLineBreaks: true }));
    return EXIT_OK;
  }
  for (const { app: name, snapshots } of found) {
    // With --all every line starts with its app, so that grep and sort work on the output.
    const prefix = options.all ? `${name}  ` : '';
    if (snapshots.length === 0) {
      console.log(`${name}: no complete snapshots in ${config.repository}`);
      continue;
    }
    for (const snapshot of snapshots) {
      const manifest = snapshot.manifest;
      console.log(prefix + (manifest
        ? `${snapshot.id}  ${formatBytes(manifest.bytes).padStart(10)}  ${String(manifest.trigger ?? '-').padEnd(8)}  ${manifest.parts.map((part) => part.file).join(', ')}${manifest.warnings.length ? `  (${manifest.warnings.length} warnings)` : ''}`
        : `${snapshot.id}  (manifest.json unreadable)`));
    }
  }
  return EXIT_OK;
}
