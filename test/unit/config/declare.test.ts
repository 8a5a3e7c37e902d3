/** The declaration vocabulary: near-miss suggestions and how list items are named in messages. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { itemPaths, key, mapping, nearestKey } from '../../../src/config/declare.ts';
import { name } from '../../../src/config/formats.ts';

test('nearestKey suggests a known key at most 2 edits away, or one that is a prefix', () => {
  const known = ['schedule', 'timezone', 'keep', 'timeout', 'stallTimeout', 'node', 'name', 'parts'];
  assert.equal(nearestKey('schedul', known), 'schedule');
  assert.equal(nearestKey('kepe', known), 'keep', 'a swap of neighbours is one edit');
  assert.equal(nearestKey('Timezone', known), 'timezone', 'case does not count');
  assert.equal(nearestKey('part', known), 'parts');
  assert.equal(nearestKey('stall', known), 'stallTimeout', 'a prefix');
  assert.equal(nearestKey('nodes', known), 'node');
  assert.equal(nearestKey('retention', known), undefined);
  assert.equal(nearestKey('x', known), undefined);
  assert.equal(nearestKey('ok', ['file', 'run', 'okExitCodes']), 'okExitCodes');
});

test('itemPaths names an item by its label when valid and unique, else by index', () => {
  const item = mapping('x', { name: key({ doc: 'n', format: name }) }, { label: 'name' });
  assert.deepEqual(
    itemPaths([{ name: 'shop' }, { name: 'blog' }, { name: 'blog' }, { name: 'Bad Name' }, 'text', {}], 'apps', item),
    ['apps[shop]', 'apps[1]', 'apps[2]', 'apps[3]', 'apps[4]', 'apps[5]'],
  );
  assert.deepEqual(itemPaths([{ run: 'a' }], 'steps', mapping('x', {})), ['steps[0]']);
});
