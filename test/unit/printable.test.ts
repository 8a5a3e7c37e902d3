import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cutToBytes, escapeControls, quoteName } from '../../src/printable.ts';

test('escapeControls: C0, DEL, C1 and bidi controls become JSON-style escapes; the rest is untouched', () => {
  assert.equal(escapeControls('a\u001b[2Jb'), 'a\\u001b[2Jb');
  assert.equal(escapeControls('\u009b31m \u007f \u202e \u2066 \u2028'), '\\u009b31m \\u007f \\u202e \\u2066 \\u2028');
  assert.equal(escapeControls('line\nnext\ttab\rcr'), 'line\\nnext\\ttab\\rcr');
  assert.equal(escapeControls('line\nnext\ttab\rcr', { keepLineBreaks: true }), 'line\nnext\ttab\\rcr');
  assert.equal(escapeControls('ünïcødé 日本 🙂 "quoted" back\\slash'), 'ünïcødé 日本 🙂 "quoted" back\\slash');
  // A JSON document stays valid JSON, and equal to what it was.
  const document = JSON.stringify({ name: '\u009b\u001b\u202e🙂' }, null, 2);
  assert.deepEqual(JSON.parse(escapeControls(document, { keepLineBreaks: true })), { name: '\u009b\u001b\u202e🙂' });
  assert.doesNotMatch(escapeControls(document, { keepLineBreaks: true }), /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
});

test('cutToBytes: text that fits is kept; longer text is cut within the budget, at a character boundary, and says its length', () => {
  assert.equal(cutToBytes('short', 512), 'short');
  assert.equal(cutToBytes('x'.repeat(512), 512), 'x'.repeat(512));
  const cut = cutToBytes('x'.repeat(513), 512);
  assert.ok(cut.endsWith('… (513 bytes)'));
  assert.ok(Buffer.byteLength(cut) <= 512);
  assert.ok(Buffer.byteLength(cut) >= 505, 'the budget is used, not wasted');
  // Multi-byte characters are never split (no U+FFFD appears), whatever the budget.
  for (let budget = 20; budget < 40; budget += 1) {
    const text = cutToBytes('日本🙂'.repeat(50), budget);
    assert.ok(Buffer.byteLength(text) <= budget, `${budget}: ${text}`);
    assert.ok(!text.includes('\ufffd'), `${budget}: ${text}`);
  }
});

test('quoteName: a short name quoted whole with controls escaped; a long one cut, never half an escape, with its length', () => {
  assert.equal(quoteName('/etc/passwd', 256), '"/etc/passwd"');
  assert.equal(quoteName('../\u001b]0;x\u0007', 256), '"../\\u001b]0;x\\u0007"');
  const long = `/${'\u0001'.repeat(256 * 1024)}`;
  const quoted = quoteName(long, 256);
  assert.ok(Buffer.byteLength(quoted) <= 256, quoted);
  assert.match(quoted, /^"\/(\\u0001)+"… \(262145-byte name\)$/);
  // Exactly at the budget: kept whole; one byte over: cut.
  const fits = 'n'.repeat(254);
  assert.equal(quoteName(fits, 256), `"${fits}"`);
  assert.match(quoteName(`${fits}n`, 256), /^"n+"… \(255-byte name\)$/);
});
