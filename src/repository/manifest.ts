/**
 * manifest.json and SHA256SUMS: what a snapshot holds, in forms a person and
 * coreutils can read.
 */
import { cutToBytes } from '../printable.ts';
import type { MANIFEST_FORMAT } from './layout.ts';

/**
 * Most warnings one part adds to a manifest (and to the job's return value in
 * Redis); the rest are counted in one closing line, `… and N more warnings`.
 * With MAX_WARNING_BYTES this bounds what a node can make BYSU store: about
 * 21 × 512 bytes of warnings per part (twice that at worst once JSON-escaped),
 * whatever the archive holds.
 */
export const MAX_WARNINGS_PER_PART = 20;
/** Longest warning kept, in UTF-8 bytes; a longer one is cut and ends `… (N bytes)`. */
export const MAX_WARNING_BYTES = 512;
/** Longest entry name quoted in a warning, in UTF-8 bytes (escaped); a longer one is cut and its length given. */
export const MAX_WARNING_NAME_BYTES = 256;
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
  format: typeof MANIFEST_FORMAT;
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
  /** Set on a copy made by a mirror: where it was copied from, and when. */
  mirroredFrom?: MirroredFrom;
}

export interface MirroredFrom {
  /** The mirror's name (mirrors[].name) and the source's URL. */
  source: string;
  url: string;
  /** ISO time the copy was committed here. */
  copiedAt: string;
}

/**
 * Given a part's file name, its warnings and how many more were found but not
 * kept, return the lines for the manifest: each `<file>: <warning>` cut to
 * MAX_WARNING_BYTES, at most MAX_WARNINGS_PER_PART of them, then one
 * `<file>: … and N more warnings` when any were left out.
 */
export function boundPartWarnings(file: string, warnings: readonly string[], omitted = 0): string[] {
  const kept = warnings.slice(0, MAX_WARNINGS_PER_PART).map((warning) => cutToBytes(`${file}: ${warning}`, MAX_WARNING_BYTES));
  const more = warnings.length - kept.length + omitted;
  if (more > 0) kept.push(`${file}: … and ${more} more warning${more === 1 ? '' : 's'}`);
  return kept;
}

/**
 * Given parsed JSON, say whether it has the shape every reader relies on:
 * the times, the size, the warnings and each part's file, size and sha256. A
 * manifest.json that is JSON but not that (`{}`, `[]`, a part that is null)
 * is then read as unreadable, like one that is not JSON, instead of failing
 * the reader that trusted its fields.
 */
export function isManifest(value: unknown): value is Manifest {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const manifest = value as Record<string, unknown>;
  return typeof manifest.startedAt === 'string' && typeof manifest.finishedAt === 'string' && typeof manifest.bytes === 'number'
    && Array.isArray(manifest.warnings) && manifest.warnings.every((warning) => typeof warning === 'string')
    && Array.isArray(manifest.parts) && manifest.parts.every((part: unknown) => typeof part === 'object' && part !== null
      && typeof (part as ManifestPart).file === 'string' && typeof (part as ManifestPart).bytes === 'number' && typeof (part as ManifestPart).sha256 === 'string');
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
