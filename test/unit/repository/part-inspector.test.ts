import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StreamHead } from '../../../src/repository/part-inspector.ts';

test('StreamHead keeps the first bytes only, as copies, and counts them all', () => {
  const head = new StreamHead(8);
  const first = Buffer.from('abcde');
  head.add(first);
  head.add(Buffer.from('fghij'));
  head.add(Buffer.alloc(1 << 20));
  first.fill(0); // a kept piece must not alias the chunk it came from
  assert.equal(head.bytes().toString(), 'abcdefgh');
  assert.equal(head.total, 10 + (1 << 20));
});
