/**
 * The fault suite's ledger: each fault test records what it injected, what
 * BYSU was expected to do and what it did; `scripts/fault-table.ts` prints
 * the table and the summary from it. Rows go to a JSON-lines file so that
 * test files running in separate processes can all add to it.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from './cluster.ts';

export const FAULT_LEDGER = process.env.BYSU_FAULT_LEDGER ?? path.join(PROJECT_ROOT, 'test-artifacts', 'faults.jsonl');

export interface FaultRow {
  kind: 'fault' | 'load' | 'input';
  fault: string;
  expected: string;
  observed: string;
  pass: boolean;
  /** Snapshots that should exist and do not. */
  lost?: number;
  /** Partial snapshots visible as complete. */
  partialVisible?: number;
  /** Bad inputs tried, and how many were rejected as they should be. */
  tried?: number;
  rejected?: number;
}

/** Append a row to the ledger. */
export function recordFault(row: FaultRow): void {
  mkdirSync(path.dirname(FAULT_LEDGER), { recursive: true });
  appendFileSync(FAULT_LEDGER, `${JSON.stringify(row)}\n`);
}
