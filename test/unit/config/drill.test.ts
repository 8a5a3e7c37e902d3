/** The drill section of an app: checked like the rest of the config, each problem naming its field. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../../../src/errors.ts';
import { DEFAULT_DRILL_SCHEDULE, parseConfig } from '../../../src/config/load.ts';

const config = (drill: string) => `
repository: /tmp/x
nodes: [{ name: db1, host: 127.0.0.1 }, { name: staging1, host: 127.0.0.2 }]
apps:
  - name: shop
    node: db1
    parts: [{ file: shop.sql, run: pg_dump shop }]
    drill: ${drill}
`;

function problemsOf(text: string): string[] {
  try {
    parseConfig(text, 'bysu.yaml', {});
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.problems;
  }
  return [];
}

test('a valid drill loads, with the weekly default schedule', () => {
  const loaded = parseConfig(config("{ node: staging1, steps: [{ run: 'psql -q x', stdin: shop.sql }, { run: 'psql -tAc q', expect: '^t$' }] }"), 'bysu.yaml', {});
  assert.deepEqual(loaded.apps[0]!.drill, {
    node: 'staging1',
    schedule: DEFAULT_DRILL_SCHEDULE,
    steps: [{ run: 'psql -q x', stdin: 'shop.sql' }, { run: 'psql -tAc q', expect: '^t$' }],
  });
});

test('bad drills are rejected naming the field', () => {
  const cases: [string, string][] = [
    ["{ node: staging9, steps: [{ run: x }] }", 'apps[shop].drill.node: unknown node "staging9" (nodes: db1, staging1)'],
    ["{ node: staging1, steps: [{ run: x, stdin: other.sql }] }", 'apps[shop].drill.steps[0].stdin: "other.sql" is not a part of this app (parts: shop.sql)'],
    ["{ node: staging1, steps: [{ run: x, expect: '(' }] }", 'apps[shop].drill.steps[0].expect: not a valid regular expression'],
    ["{ node: staging1, steps: [] }", 'apps[shop].drill.steps: must be a non-empty list'],
    ["{ node: staging1, steps: [{ run: '' }] }", 'apps[shop].drill.steps[0].run: must be a non-empty command'],
    ["{ node: staging1, steps: [{ run: x, input: shop.sql }] }", 'apps[shop].drill.steps[0].input: unknown key'],
    ["{ node: staging1, schedule: 'every sunday', steps: [{ run: x }] }", 'apps[shop].drill.schedule'],
    ["{ node: staging1, steps: [{ run: x }], when: now }", 'apps[shop].drill.when: unknown key'],
    ['yes', 'apps[shop].drill: must be a mapping'],
  ];
  for (const [drill, expected] of cases) {
    const problems = problemsOf(config(drill));
    assert.ok(problems.some((problem) => problem.includes(expected)), `${drill}: ${JSON.stringify(problems)}`);
  }
});
