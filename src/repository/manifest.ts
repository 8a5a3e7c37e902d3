/**
 * manifest.json and SHA256SUMS: what a snapshot holds, in forms a person and
 * coreutils can read.
 */
export interface ManifestPart {
  file: string;
  run: string;
  bytes: number;
  sha256: string;
  exitCode: number;
  durationMs: number;
  /** Entries of a tar part. */
  tarEntries?: number;
}

export interface Manifest {
  format: 'bysu-snapshot/1';
  app: string;
  node: string;
  host: string;
  id: string;
  trigger: 'schedule' | 'manual';
  jobId: string;
  attempt: number;
  startedAt: string;
  finishedAt: string;
  bytes: number;
  bysuVersion: string;
  warnings: string[];
  parts: ManifestPart[];
}

/** Given a manifest, return its file text (pretty JSON, final newline). */
export function renderManifest(manifest: Manifest): string {
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

/** Given file names and their sha256, return SHA256SUMS text that `sha256sum -c` accepts. */
export function renderSums(entries: { file: string; sha256: string }[]): string {
  return entries.map(({ file, sha256 }) => `${sha256}  ${file}\n`).join('');
}

/** Given SHA256SUMS text, return its entries; throw on a malformed line. */
export function parseSums(text: string): { file: string; sha256: string }[] {
  return text.split('\n').filter((line) => line !== '').map((line, index) => {
    const match = /^([0-9a-f]{64}) [ *](.+)$/.exec(line);
    if (!match) throw new Error(`SHA256SUMS line ${index + 1} is malformed`);
    return { sha256: match[1]!, file: match[2]! };
  });
}
