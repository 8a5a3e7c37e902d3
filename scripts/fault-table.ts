/**
 * Prints the fault suite's table (fault, expected, observed, pass) and its
 * summary line from the ledger the fault tests wrote. Exit 1 when a row failed.
 */
import { existsSync, readFileSync } from 'node:fs';
import { FAULT_LEDGER, type FaultRow } from '../test/helpers/fault-report.ts';

if (!existsSync(FAULT_LEDGER)) {
  console.log(`no fault ledger at ${FAULT_LEDGER}`);
  process.exit(1);
}
const rows = readFileSync(FAULT_LEDGER, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as FaultRow);
const wrap = (text: string, width: number) => (text.length <= width ? text : `${text.slice(0, width - 1)}…`);
const header = ['FAULT', 'EXPECTED', 'OBSERVED', 'PASS'];
const widths = [34, 44, 52, 4];
console.log(header.map((cell, index) => cell.padEnd(widths[index]!)).join('  '));
for (const row of rows) {
  console.log([row.fault, row.expected, row.observed, row.pass ? 'yes' : 'NO'].map((cell, index) => wrap(cell, widths[index]!).padEnd(widths[index]!)).join('  '));
}
const faults = rows.filter((row) => row.kind === 'fault');
const inputs = rows.filter((row) => row.kind === 'input');
const sum = (values: (number | undefined)[]) => values.reduce<number>((total, value) => total + (value ?? 0), 0);
console.log(
  `faults injected ${faults.length}, survived ${faults.filter((row) => row.pass).length}; ` +
  `snapshots lost ${sum(rows.map((row) => row.lost))}; partial snapshots visible ${sum(rows.map((row) => row.partialVisible))}; ` +
  `bad inputs tried ${sum(inputs.map((row) => row.tried))}, rejected ${sum(inputs.map((row) => row.rejected))}; ` +
  `load rows ${rows.filter((row) => row.kind === 'load').length}`,
);
process.exit(rows.every((row) => row.pass) ? 0 : 1);
