/**
 * Which snapshot `bysu restore` and `bysu cat` read: the app (configured, or
 * removed from the config but still with snapshots in the repository, which
 * BYSU keeps), the snapshot (by id, else the newest complete one, the one
 * `bysu latest` names), its SHA256SUMS and manifest.json checked, and the
 * files asked for among those it holds. Each refusal says what to do.
 */
import { NAME_PATTERN } from '../config/formats.ts';
import type { Config } from '../config/load.ts';
import { escapeControls } from '../printable.ts';
import { isSnapshotId } from '../repository/layout.ts';
import { requireRepository } from '../repository/marker.ts';
import { listAppDirectories } from '../repository/read.ts';
import { checkSnapshotListing, findSnapshot, snapshotFileLabel, type CheckedSnapshot } from '../repository/snapshot-files.ts';
import { EXIT_FAILED, EXIT_USAGE, ExitError } from './context.ts';

/**
 * Given the config, an app and a snapshot id (undefined: the newest complete
 * snapshot), return the snapshot with its listing checked. Throw
 * RepositoryUnavailableError for a repository not mounted, ExitError (2) for
 * an unknown app or id, ExitError (1) when the app has no complete snapshot,
 * SnapshotDamagedError when SHA256SUMS or manifest.json is wrong.
 */
export async function chooseSnapshot(config: Config, app: string, id: string | undefined): Promise<CheckedSnapshot> {
  await requireRepository(config.repository);
  const configured = config.apps.map((candidate) => candidate.name);
  if (!configured.includes(app) && !(NAME_PATTERN.test(app) && (await listAppDirectories(config.repository)).includes(app))) {
    throw new ExitError(EXIT_USAGE, `unknown app "${escapeControls(app)}" (configured: ${configured.join(', ') || 'none'}; an app removed from the config can still be read while its directory is in ${config.repository})`);
  }
  if (id !== undefined && !isSnapshotId(id)) {
    throw new ExitError(EXIT_USAGE, `--snapshot "${escapeControls(id)}" is not a snapshot id (they look like 20261126T021500Z); see ${app}'s with: bysu list ${app}`);
  }
  const snapshot = await findSnapshot(config.repository, app, id);
  if (snapshot === null) {
    if (id !== undefined) throw new ExitError(EXIT_USAGE, `${app} has no complete snapshot ${id}; see its snapshots with: bysu list ${app}`);
    throw new ExitError(EXIT_FAILED, `${app}: no complete snapshot in ${config.repository}`);
  }
  return checkSnapshotListing(snapshot, app);
}

/**
 * Given a checked snapshot and the part files asked for (none: all of them),
 * return them in the manifest's order, each once. Throw ExitError (2) naming
 * a file the snapshot has no part of, with the parts it has.
 */
export function chooseParts(snapshot: CheckedSnapshot, asked: readonly string[]): string[] {
  const parts = snapshot.manifest.parts.map((part) => part.file);
  for (const file of asked) {
    if (!parts.includes(file)) {
      throw new ExitError(EXIT_USAGE, `${snapshotFileLabel(snapshot)} has no part "${escapeControls(file)}" (its parts: ${parts.map((part) => escapeControls(part)).join(', ') || 'none'})`);
    }
  }
  return asked.length === 0 ? parts : parts.filter((part) => asked.includes(part));
}
