/**
 * `bysu cat <app> <file> [--snapshot ID]`: one file of a snapshot on stdout,
 * checked. Output cannot be taken back once written, so the file is first
 * read whole and checked against SHA256SUMS (a damaged file writes nothing),
 * then streamed while it is hashed again: a file that changed between the
 * two reads ends with exit 1 and a message that the output is not to be
 * trusted. Reads only the config and the repository: it works with Redis down.
 */
import { pipeline } from 'node:stream/promises';
import { SnapshotDamagedError } from '../errors.ts';
import { escapeControls } from '../printable.ts';
import { MANIFEST_FILE, SUMS_FILE } from '../repository/layout.ts';
import { checkSnapshotFile, expectedSha256, HashingStream, openSnapshotFile, snapshotFileLabel } from '../repository/snapshot-files.ts';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, ExitError, loadCliConfig, type GlobalOptions } from './context.ts';
import { chooseSnapshot } from './snapshot-choice.ts';

export async function cat(globals: GlobalOptions, app: string, file: string, options: { snapshot?: string }): Promise<number> {
  const config = loadCliConfig(globals);
  const snapshot = await chooseSnapshot(config, app, options.snapshot);
  const label = snapshotFileLabel(snapshot, file);
  if (file === SUMS_FILE) {
    throw new ExitError(EXIT_USAGE, `${SUMS_FILE} is what the other files are checked against, so bysu cat cannot check it; read it as it is: cat ${snapshot.path}/${SUMS_FILE}`);
  }
  const files = [...snapshot.manifest.parts.map((part) => part.file), MANIFEST_FILE];
  if (!files.includes(file)) {
    throw new ExitError(EXIT_USAGE, `${snapshotFileLabel(snapshot)} has no file "${escapeControls(file)}" (its files: ${files.map((name) => escapeControls(name)).join(', ')})`);
  }
  // First pass: nothing of a damaged file reaches the reader (a psql loading a staging database, say).
  try {
    await checkSnapshotFile(snapshot, file);
  } catch (error) {
    if (error instanceof SnapshotDamagedError) throw new ExitError(EXIT_FAILED, `${error.message}. Nothing was written to stdout; bysu verify ${app} checks every snapshot, bysu list ${app} shows the others`);
    throw error;
  }
  // Second pass: streamed and hashed again, in case the file changed in between.
  const expected = expectedSha256(snapshot, file);
  const { handle } = await openSnapshotFile(snapshot, file);
  const hashing = new HashingStream();
  try {
    await pipeline(handle.createReadStream({ autoClose: false }), hashing, process.stdout);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EPIPE') throw new ExitError(EXIT_FAILED, `${label}: the reader closed the pipe before the end: it got only part of the file`);
    throw new ExitError(EXIT_FAILED, `${label}: stopped before the end (${code ?? (error as Error).message}): the output is incomplete and NOT to be trusted`);
  } finally {
    await handle.close();
  }
  const actual = hashing.digest();
  if (actual !== expected) {
    throw new ExitError(EXIT_FAILED, `${label} changed while it was written out: its sha256 was ${actual}, ${SUMS_FILE} says ${expected}. The output is NOT to be trusted: discard what was loaded from it`);
  }
  return EXIT_OK;
}
