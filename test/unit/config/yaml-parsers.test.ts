/**
 * The config is read by two YAML parsers (src/config/load.ts, readYaml):
 * js-yaml takes every document it reads without error, aliases or tags,
 * `yaml` every other one. This holds them to one meaning: wherever js-yaml
 * accepts a document, `yaml` accepts it too and reads the same data, over the
 * example config, the README's configs and the corners of YAML 1.2's core
 * schema a config may meet (numbers, booleans, nulls, tags, block and quoted
 * scalars, flow collections, keys that look like other types). And a
 * document only `yaml` reads, or that neither reads, still loads or fails as
 * `yaml` says.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CORE_SCHEMA, load as quickLoad } from 'js-yaml';
import { parseDocument } from 'yaml';
import { NEEDS_REFERENCE_PARSER, parseConfig } from '../../../src/config/load.ts';
import { ConfigError } from '../../../src/errors.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** The README's YAML blocks that are whole configs or pieces of one. */
function readmeYamlBlocks(): string[] {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  return [...readme.matchAll(/```ya?ml\n([\s\S]*?)```/g)].map((match) => match[1]!).filter((text) => /^[^#\s]/m.test(text));
}

const CORNERS = [
  'a: 0o14\nb: 0x1F\nc: 012\nd: +12\ne: -0\nf: 1_000\ng: 0b101',
  'a: 1.5\nb: 1e3\nc: .inf\nd: -.Inf\ne: .nan\nf: 6.02e+23\ng: 1.\nh: .5',
  'a: true\nb: True\nc: TRUE\nd: yes\ne: no\nf: on\ng: off\nh: y\ni: tRuE',
  'a: null\nb: ~\nc:\nd: Null\ne: NULL\nf: nULL',
  'a: 2026-12-02\nb: 2026-12-02T03:00:00Z\nc: 12:30\nd: 1:20:30',
  'a: !!str 12\nb: !!int "12"\nc: !!float 1\nd: !!null ""\ne: !!bool "true"',
  'a: |\n  line one\n  line two\nb: >-\n  folded\n  text\n\n  para\nc: |+\n  kept\n\nd: x',
  'a: "esc \\t \\n \\u00e9 \\x41 \\\\ \\""\nb: \'single \'\' quote\'\nc: "multi\n  line"\nd: plain # comment\ne: "#not"',
  'a: [1, "two", {b: 3}]\nc: {d: [e, f], "g h": i}\nj: []\nk: {}',
  '"1": a\n2: b\ntrue: c\n1.5: e\n? complex\n: f',
  'a: -1\nb: - x\nc: :x\nd: x:y\ne: "x: y"\nf: http://example.com:8080/a?b=c#d\ng: \'\'',
  '- a\n- - b\n  - c\n- d: e\n  f: g',
  'key with spaces: v\nkey-dash: v\nkey.dot: v\n"quoted key": v',
  'a: 😀 ünïcode\nb: "\\U0001F600"',
  '%YAML 1.2\n---\na: 1\n...\n',
  'a: !custom x',
  'a: test ! -f /x && echo "!" || echo done!',
  'apps:\n  - name: shop\n    parts:\n      - { file: shop.sql, run: "pg_dump --no-owner shop" }\n    keep: 14\n    schedule: "0 3 * * *"',
  'a:\n\t- b',
  'a: b\n  c: d',
  'a: 1\na: 2',
  'a: &x 1\nb: *x',
  '<<: {a: 1}\nb: 2',
  '---\na: 1\n---\nb: 2',
  '',
  '# only a comment\n',
  // Found by an attack: each read differently by the two, so each must go to the reference.
  '%YAML 1.1\n---\nkeep: 010\na: yes\nb: 1_000\nc: 1:30\nd: 0b101',
  'a: &x !!int 0b101\nb: &y !!float 1',
  '{"a":!!int 0b11}',
  'a: 1e400\nb: 1234567890123456789012345678901234567890',
];

const corpus = [
  { name: 'bysu.example.yaml', text: readFileSync(path.join(ROOT, 'bysu.example.yaml'), 'utf8') },
  ...readmeYamlBlocks().map((text, index) => ({ name: `README block ${index + 1}`, text })),
  ...CORNERS.map((text, index) => ({ name: `corner ${index + 1}: ${JSON.stringify(text.slice(0, 40))}`, text })),
];

test('wherever js-yaml (no aliases, no tags) reads a document, yaml reads it too, with the same data', () => {
  const slow: string[] = [];
  for (const { name, text } of corpus) {
    let quick: unknown;
    try {
      if (NEEDS_REFERENCE_PARSER.test(text)) throw new Error('may have tags');
      quick = quickLoad(text, { schema: CORE_SCHEMA, maxAliases: 0 });
    } catch {
      slow.push(name); // the reference reads it alone
      continue;
    }
    const document = parseDocument(text, { uniqueKeys: true });
    assert.deepEqual(document.errors.map((error) => error.message), [], `${name}: js-yaml accepts what yaml refuses`);
    assert.deepEqual(quick, document.toJS(), `${name}: the two parsers read different data`);
  }
  // Real configs take the fast path; the corners that do not are the invalid ones, tags, aliases and the empty ones.
  assert.deepEqual(slow.filter((name) => !name.startsWith('corner')), [], 'the example and the README configs are read by js-yaml');
  // 6 and 16: tags; 11: `b: - x`, which js-yaml refuses; 19-21: a tab, a bad indent, a duplicate key; 22: an alias;
  // 24-26: several documents, none, only a comment; 15 and 27: directives; 28-29: tags after an anchor or `:`;
  // 30: numbers too large for a double.
  assert.deepEqual(slow.map((name) => Number(/^corner (\d+)/.exec(name)?.[1])), [6, 11, 15, 16, 19, 20, 21, 22, 24, 25, 26, 27, 28, 29, 30]);
});

test('a document only the reference reads, or neither, loads or fails as the reference says', () => {
  // Aliases: js-yaml is told to refuse them, the reference reads them (with its alias guard).
  const withAlias = 'repository: /srv/bysu\nnodes: [{ name: db1, host: db1.example }]\nparts: &dump [{ file: a.sql, run: pg_dump a }]\napps:\n  - { name: a, node: db1, parts: *dump }\n';
  assert.throws(() => parseConfig(withAlias, 'bysu.yaml', {}), (error: unknown) => error instanceof ConfigError && /parts: unknown key/.test(error.message) && !/YAML/.test(error.message));
  const aliased = parseConfig(withAlias.replace('parts: &dump [{ file: a.sql, run: pg_dump a }]\n', 'defaults: &d { keep: 9 }\n').replace('parts: *dump', 'parts: [{ file: a.sql, run: pg_dump a }], keep: 3'), 'bysu.yaml', {});
  assert.equal(aliased.apps[0]!.keep, 3);
  // An alias bomb is the reference's to refuse, not a hang.
  const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]', ...Array.from({ length: 8 }, (_, index) => `${String.fromCharCode(98 + index)}: &${String.fromCharCode(98 + index)} [${Array(9).fill(`*${String.fromCharCode(97 + index)}`).join(',')}]`)].join('\n');
  assert.throws(() => parseConfig(bomb, 'bysu.yaml', {}), /resource exhaustion|alias/i);
  // Invalid YAML is worded by the reference, with the line and a caret.
  assert.throws(() => parseConfig('repository: /a\nrepository: /b\n', 'bysu.yaml', {}), /^ConfigError: bysu\.yaml:2:1: not valid YAML: Map keys must be unique/);
  // The one difference found: a null key reads as 'null' in js-yaml and '' in yaml. Every key of the config is
  // declared (there is no mapping of free keys), so such a key is refused either way, only spelled otherwise.
  assert.throws(() => parseConfig('repository: /srv/bysu\nnull: 1\n', 'bysu.yaml', {}), (error: unknown) => error instanceof ConfigError && /null: unknown key/.test(error.message));
  // Empty (js-yaml refuses it): no keys at all, as before.
  assert.deepEqual(parseConfig('', 'bysu.yaml', {}), parseConfig('{}', 'bysu.yaml', {}));
  // An explicit tag is the reference's to read (the two differ on `!!float 1`); a `!` inside a command is not a tag.
  assert.equal(parseConfig('repository: !!str /srv/bysu\n', 'bysu.yaml', {}).repository, '/srv/bysu');
});
