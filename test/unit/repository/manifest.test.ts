import { test } from 'node:test';
import assert from 'node:assert/strict';
import { boundPartWarnings, MAX_WARNING_BYTES, MAX_WARNINGS_PER_PART } from '../../../src/repository/manifest.ts';

test(`boundPartWarnings: exactly ${MAX_WARNINGS_PER_PART} warnings are kept as they are`, () => {
  const warnings = Array.from({ length: MAX_WARNINGS_PER_PART }, (_, index) => `warning ${index}`);
  assert.deepEqual(boundPartWarnings('a.tar', warnings), warnings.map((warning) => `a.tar: ${warning}`));
});

test(`boundPartWarnings: one more than ${MAX_WARNINGS_PER_PART} is counted in a closing line, as are those the validator left out`, () => {
  const warnings = Array.from({ length: MAX_WARNINGS_PER_PART + 1 }, (_, index) => `warning ${index}`);
  const bounded = boundPartWarnings('a.tar', warnings);
  assert.equal(bounded.length, MAX_WARNINGS_PER_PART + 1);
  assert.equal(bounded[MAX_WARNINGS_PER_PART - 1], `a.tar: warning ${MAX_WARNINGS_PER_PART - 1}`);
  assert.equal(bounded.at(-1), 'a.tar: … and 1 more warning');
  assert.equal(boundPartWarnings('a.tar', warnings, 999).at(-1), 'a.tar: … and 1000 more warnings');
  assert.deepEqual(boundPartWarnings('a.tar', ['one'], 3), ['a.tar: one', 'a.tar: … and 3 more warnings']);
});

test(`boundPartWarnings: each line is at most ${MAX_WARNING_BYTES} bytes`, () => {
  const [line] = boundPartWarnings('a.tar', ['x'.repeat(1024 * 1024)]);
  assert.ok(Buffer.byteLength(line!) <= MAX_WARNING_BYTES);
  assert.match(line!, /^a\.tar: x+… \(1048583 bytes\)$/);
  const [fits] = boundPartWarnings('a.tar', ['x'.repeat(MAX_WARNING_BYTES - 'a.tar: '.length)]);
  assert.equal(Buffer.byteLength(fits!), MAX_WARNING_BYTES);
  assert.ok(!fits!.includes('…'));
});
