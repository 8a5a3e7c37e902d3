/**
 * `bysu config allow-list <node>`: the lines a node's bysu-allow must hold,
 * printed from the config (parts of the apps on the node, drill steps that run
 * there), and the `run:` values the wrapper could never match refused, each
 * named by its field.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { allowListText } from '../../../src/cli/config-allow-list.ts';
import { EXIT_FAILED, EXIT_USAGE, ExitError } from '../../../src/cli/context.ts';
import { parseConfig } from '../../../src/config/load.ts';
import { ConfigError } from '../../../src/errors.ts';

const TWO_NODES = `
repository: /tmp/x
nodes: [{ name: db1, host: 10.0.0.11 }, { name: db2, host: 10.0.0.12 }, { name: spare, host: 10.0.0.13 }]
apps:
  - name: shop
    node: db1
    parts:
      - { file: shop.sql, run: pg_dump --no-owner shop }
      - { file: uploads.tar, run: tar -C /srv/shop -cf - uploads, okExitCodes: [0, 1] }
    drill: { node: db2, steps: [{ run: psql -q -d scratch, stdin: shop.sql }] }
  - name: wiki
    node: db2
    parts: [{ file: wiki.sql, run: "  pg_dump wiki | tee /dev/null # it's \\"quoted\\"  " }]
  - name: blog
    node: db1
    parts: [{ file: blog.sql, run: pg_dump blog }]
`;

test('a node\'s list holds the run: of its apps\' parts and of the drill steps run there, each app under a comment, in config order', () => {
  const config = parseConfig(TWO_NODES, 'bysu.yaml', {});
  assert.equal(allowListText(config, 'db1'), [
    '# node db1: the commands BYSU may run there (bysu config allow-list db1)',
    '# shop',
    'pg_dump --no-owner shop',
    'tar -C /srv/shop -cf - uploads',
    '# blog',
    'pg_dump blog',
    '',
  ].join('\n'));
  // Spaces at either end count for bysu-allow: kept as they are.
  assert.equal(allowListText(config, 'db2'), [
    '# node db2: the commands BYSU may run there (bysu config allow-list db2)',
    '# shop (drill)',
    'psql -q -d scratch',
    '# wiki',
    '  pg_dump wiki | tee /dev/null # it\'s "quoted"  ',
    '',
  ].join('\n'));
});

test('an unknown node is a usage error naming the configured ones; a node that runs nothing fails', () => {
  const config = parseConfig(TWO_NODES, 'bysu.yaml', {});
  assert.throws(() => allowListText(config, 'db9'), (error: unknown) =>
    error instanceof ExitError && error.status === EXIT_USAGE && error.message === 'unknown node "db9" (configured: db1, db2, spare)');
  assert.throws(() => allowListText(config, 'spare'), (error: unknown) =>
    error instanceof ExitError && error.status === EXIT_FAILED && /no app and no drill runs on node "spare"/.test(error.message));
});

test('a run: that bysu-allow could never match is refused, every one named by its field', () => {
  const config = parseConfig(`
repository: /tmp/x
nodes: [{ name: db1, host: 10.0.0.11 }, { name: db2, host: 10.0.0.12 }]
apps:
  - name: shop
    node: db1
    parts:
      - file: shop.sql
        run: |
          pg_dump shop
      - { file: two.sql, run: "pg_dump a\\npg_dump b" }
      - { file: tab.sql, run: "pg_dump\\tshop" }
      - { file: esc.sql, run: "pg_dump \\e shop" }
      - { file: fine.sql, run: pg_dump fine }
      - { file: hash.sql, run: "  # pg_dump shop" }
    drill: { node: db1, steps: [{ run: "psql\\r", stdin: shop.sql }] }
  - name: elsewhere
    node: db2
    parts: [{ file: x.sql, run: "a\\nb" }]
`, 'bysu.yaml', {});
  let problems: string[] = [];
  try {
    allowListText(config, 'db1');
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    problems = error.problems;
  }
  const never = 'bysu-allow refuses every command that holds a control character, so the node could never run it; write it on one line (a longer one: a script on the node, and its path here)';
  assert.deepEqual(problems, [
    `apps[shop].parts[shop.sql].run: holds a newline at its end (a YAML block scalar \`|\` keeps one; \`|-\` does not): ${never}`,
    `apps[shop].parts[two.sql].run: holds a newline: ${never}`,
    `apps[shop].parts[tab.sql].run: holds a tab: ${never}`,
    `apps[shop].parts[esc.sql].run: holds the control character 0x1b: ${never}`,
    'apps[shop].parts[hash.sql].run: starts with "#": bysu-allow reads such a line of its allow-list as a comment, so the node could never run it',
    `apps[shop].drill.steps[0].run: holds a carriage return: ${never}`,
  ]);
});
