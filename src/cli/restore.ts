/**
 * `bysu restore <app> [--snapshot ID] [--to DIR] [--part FILE]… [--extract]`:
 * check the chosen files of a snapshot against its SHA256SUMS, copy them (or
 * extract its tar parts) into a new directory, `./<app>-<snapshot id>` by
 * default, and say what was written where and what to run next. Reads only
 * the config and the repository: it works with Redis down.
 */
import path from 'node:path';
import { formatBytes } from '../config/formats.ts';
import { BysuError } from '../errors.ts';
import { escapeControls } from '../printable.ts';
import { archiveKind } from '../repository/layout.ts';
import { snapshotFileLabel, type CheckedSnapshot } from '../repository/snapshot-files.ts';
import { RestoreTargetError, restoreSnapshot, type RestoreResult } from '../restore/restore-snapshot.ts';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, ExitError, loadCliConfig, type GlobalOptions } from './context.ts';
import { chooseParts, chooseSnapshot } from './snapshot-choice.ts';

export interface RestoreOptions {
  snapshot?: string;
  to?: string;
  part?: string[];
  extract?: boolean;
}

/** Given a path, return it as one shell word: as it is when it is plain, else in single quotes. */
export function shellWord(text: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}

/** Given a restored file's path and its name, return the command that loads it, or null when its kind is not known. */
function nextStep(file: string, restored: string): string | null {
  const where = shellWord(restored);
  const stem = file.replace(/\.(sql|sql\.gz|dump|pgdump|tar|tar\.gz|tgz)$/, '');
  const database = /^[A-Za-z0-9_]+$/.test(stem) ? stem : '<database>';
  if (file.endsWith('.sql')) return `createdb ${database} && psql -v ON_ERROR_STOP=1 ${database} < ${where}`;
  if (file.endsWith('.sql.gz')) return `createdb ${database} && gunzip -c ${where} | psql -v ON_ERROR_STOP=1 ${database}`;
  if (file.endsWith('.dump') || file.endsWith('.pgdump')) return `createdb ${database} && pg_restore --no-owner -d ${database} ${where}`;
  const kind = archiveKind(file);
  if (kind === 'tar') return `tar -C <destination> -xf ${where}`;
  if (kind === 'tar.gz') return `tar -C <destination> -xzf ${where}`;
  return null;
}

/** Given the snapshot and what was restored, print what was written where, and what to run next. */
function report(snapshot: CheckedSnapshot, result: RestoreResult): void {
  const manifest = snapshot.manifest;
  const taken = typeof manifest.startedAt === 'string' ? ` (taken ${manifest.startedAt}${typeof manifest.node === 'string' ? ` on ${escapeControls(manifest.node)}` : ''})` : '';
  console.log(`restored ${snapshotFileLabel(snapshot)}${taken} into ${result.target}`);
  const width = Math.max(...result.files.map((file) => file.file.length), 0);
  for (const file of result.files) {
    const what = file.extractedEntries !== undefined ? `extracted (${file.extractedEntries} entries, ${formatBytes(file.bytes)} archive)` : formatBytes(file.bytes);
    console.log(`  ${escapeControls(file.file).padEnd(width)}  ${what}, checked against SHA256SUMS`);
  }
  if (result.listings.length > 0) console.log(`  ${result.listings.join(' and ')} beside them: cd ${shellWord(result.target)} && sha256sum -c SHA256SUMS checks the copy again`);
  const steps: string[] = [];
  const extracted = result.files.filter((file) => file.extractedEntries !== undefined).map((file) => escapeControls(file.file));
  if (extracted.length > 0) steps.push(`the files of ${extracted.join(', ')} are in ${shellWord(result.target)}: look, then copy them into place, e.g. cp -a ${shellWord(`${result.target}/.`)} <destination>/`);
  for (const file of result.files.filter((candidate) => candidate.extractedEntries === undefined)) {
    const step = nextStep(file.file, path.join(result.target, file.file));
    const run = manifest.parts.find((part) => part.file === file.file)?.run;
    steps.push(step ?? `${escapeControls(file.file)} is what \`${escapeControls(String(run ?? '?'))}\` printed on the node: load it with that tool's counterpart`);
  }
  console.log('next:');
  for (const step of steps) console.log(`  ${step}`);
}

export async function restore(globals: GlobalOptions, app: string, options: RestoreOptions): Promise<number> {
  const config = loadCliConfig(globals);
  const snapshot = await chooseSnapshot(config, app, options.snapshot);
  const files = chooseParts(snapshot, options.part ?? []);
  const target = path.resolve(options.to ?? `${app}-${snapshot.id}`);
  // Ctrl-C or SIGTERM stops the copy and removes what was staged, rather than leaving it behind.
  const controller = new AbortController();
  const interrupt = (signal: NodeJS.Signals) => controller.abort(new Error(`interrupted by ${signal}`));
  process.on('SIGINT', interrupt);
  process.on('SIGTERM', interrupt);
  let result: RestoreResult;
  try {
    result = await restoreSnapshot({ snapshot, files, target, extract: options.extract === true, signal: controller.signal });
  } catch (error) {
    if (error instanceof RestoreTargetError) throw new ExitError(EXIT_USAGE, error.message);
    const nothing = `nothing was restored into ${target}`;
    if (controller.signal.aborted) throw new ExitError(EXIT_FAILED, `${snapshotFileLabel(snapshot)}: ${(controller.signal.reason as Error).message}: ${nothing}`);
    if (error instanceof BysuError) {
      throw new ExitError(EXIT_FAILED, `${error.message}. ${nothing[0]!.toUpperCase()}${nothing.slice(1)}; bysu verify ${app} checks every snapshot, bysu list ${app} shows the others`);
    }
    throw new ExitError(EXIT_FAILED, `restoring ${snapshotFileLabel(snapshot)} failed: ${(error as Error).message}; ${nothing}`);
  } finally {
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
  }
  report(snapshot, result);
  return EXIT_OK;
}
