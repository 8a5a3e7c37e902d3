/**
 * `bysu init [--adopt]`: make the configured repository root a BYSU
 * repository, once, by hand. The only command that creates the root; every
 * other command, worker and the dashboard refuses a root without the marker,
 * so an unmounted disk is never replaced by a fresh directory.
 */
import { RepositoryUnavailableError } from '../errors.ts';
import { initRepository, type InitOutcome } from '../repository/marker.ts';
import { EXIT_FAILED, EXIT_OK, ExitError, loadCliConfig, type GlobalOptions } from './context.ts';

export async function init(globals: GlobalOptions, options: { adopt?: boolean }): Promise<number> {
  const config = loadCliConfig(globals);
  const root = config.repository;
  let outcome: InitOutcome;
  try {
    outcome = await initRepository(root, { adopt: options.adopt === true });
  } catch (error) {
    // A refusal is this command failing (exit 1), not a setup that other commands cannot use (exit 2).
    if (error instanceof RepositoryUnavailableError) throw new ExitError(EXIT_FAILED, error.message);
    throw error;
  }
  const { id, createdAt } = outcome.marker;
  const what = outcome.action === 'existing' ? `repository ${root} is already initialised (id ${id}, created ${createdAt}): nothing to do`
    : outcome.action === 'created' ? `created repository ${root} (id ${id})`
      : outcome.action === 'marked' ? `marked the empty directory ${root} as a repository (id ${id})`
        : `adopted ${root} with its app directories ${outcome.apps.join(', ')} (id ${id})`;
  console.log(what);
  // A hint, not a check: on a dedicated disk the root is usually a mount point, and init cannot know which you meant.
  console.log(outcome.mountPoint ? `${root} is a mount point (its own filesystem)` : `${root} is on the same filesystem as its parent (not a mount point)`);
  return EXIT_OK;
}
