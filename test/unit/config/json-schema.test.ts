/**
 * The JSON Schema of bysu.yaml: the committed bysu.schema.json is what
 * `bysu config schema` prints now, it accepts the example and the configs the
 * loader accepts, and rejects bad files the loader rejects too (checked with a
 * real validator, ajv, so the schema is valid draft-07 as well).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { Ajv } from 'ajv';
import { parse } from 'yaml';
import { configSchemaText } from '../../../src/cli/config-schema.ts';
import { toJsonSchema } from '../../../src/config/json-schema.ts';
import { parseConfig } from '../../../src/config/load.ts';
import { ConfigError } from '../../../src/errors.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const validate = new Ajv({ allErrors: true, allowUnionTypes: true, strict: true }).compile(toJsonSchema());

function schemaErrors(text: string): string[] {
  return validate(parse(text) ?? {}) ? [] : (validate.errors ?? []).map((error) => `${error.instancePath} ${error.message}`);
}

function loaderAccepts(text: string): boolean {
  try {
    parseConfig(text, 'bysu.yaml', {});
    return true;
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return false;
  }
}

const NODES = 'nodes:\n  - { name: db1, host: 10.0.0.11 }\n';
const app = (fields: string, part = 'file: a.sql, run: pg_dump a') => `${NODES}apps:\n  - { name: shop, node: db1, parts: [{ ${part} }]${fields} }\n`;

test('bysu.schema.json is what `bysu config schema` prints (regenerate: bysu config schema > bysu.schema.json)', () => {
  const committed = readFileSync(path.join(ROOT, 'bysu.schema.json'), 'utf8');
  // Not assert.equal: its diff of two 20 KB texts buries the one line that matters.
  assert.ok(committed === configSchemaText(), 'bysu.schema.json is stale: run `bysu config schema > bysu.schema.json` and commit it');
  assert.equal(JSON.parse(committed).$schema, 'http://json-schema.org/draft-07/schema#');
});

test('the schema accepts the example config and the configs the loader accepts', () => {
  const valid = [
    readFileSync(path.join(ROOT, 'bysu.example.yaml'), 'utf8'),
    '',
    'defaults:\n#  keep: 5\n',
    app(''),
    app(', keep: 7, timeout: 30m, maxBytes: 512MiB, staleAfter: 36h, shrinkWarn: 0, ping: "https://hc-ping.com/x"'),
    app(', drill: { node: db1, steps: [{ run: psql, stdin: a.sql }, { run: q, expect: "^t$" }] }'),
    app('', 'file: a.tar, run: tar -cf - x, okExitCodes: [0, 1]'),
    `${NODES.replace('}', ', port: 2222, user: backup, hostKey: "SHA256:Jd7Bq2mQ0mJp0n3m1u9sVJm8GZ2m5n4b8cQ1xYz0AbC" }')}`,
    'redis: { url: "rediss://r:6380/1", prefix: test-1 }\n',
    'defaults: { maxBytes: 1000000, staleAfter: null }\nlog: { level: debug }\nnotify: { webhook: "" }\n',
  ];
  for (const text of valid) {
    assert.ok(loaderAccepts(text), `the loader accepts:\n${text}`);
    assert.deepEqual(schemaErrors(text), [], `the schema accepts:\n${text}`);
  }
});

test('the schema rejects bad files that the loader rejects', () => {
  const invalid: [string, string][] = [
    ['unknown top-level key', 'repositroy: /x\n'],
    ['unknown key in a section', 'ssh: { usr: bysu }\n'],
    ['unknown key in an app', app(', schedul: "0 3 * * *"')],
    ['unknown key in a part', app('', 'file: a.sql, run: x, ok: [0]')],
    ['unknown key in a drill step', app(', drill: { node: db1, steps: [{ run: x, input: a.sql }] }')],
    ['app without parts', `${NODES}apps:\n  - { name: shop, node: db1 }\n`],
    ['empty parts', app('').replace(/parts: \[.*\]/, 'parts: []')],
    ['part without run', app('', 'file: a.sql')],
    ['node without host', 'nodes:\n  - { name: db1 }\n'],
    ['drill without steps', app(', drill: { node: db1 }')],
    ['duration without unit', app(', timeout: 7200')],
    ['bad size', 'defaults: { maxBytes: 10XB }\n'],
    ['keep 0', app(', keep: 0')],
    ['port out of range', 'nodes:\n  - { name: db1, host: h, port: 70000 }\n'],
    ['name with upper case', app('').replace('name: shop', 'name: Shop')],
    ['reserved part file', app('', 'file: SHA256SUMS, run: x')],
    ['relative repository', 'repository: var/lib/bysu\n'],
    ['redis URL not redis://', 'redis: { url: "http://x:6379" }\n'],
    ['fingerprint not SHA256', 'nodes:\n  - { name: db1, host: h, hostKey: "MD5:aa" }\n'],
    ['exit code 256', app('', 'file: a.sql, run: x, okExitCodes: [256]')],
    ['shrinkWarn 1', 'defaults: { shrinkWarn: 1 }\n'],
    ['log level unknown', 'log: { level: verbose }\n'],
    ['cron with 3 fields', 'defaults: { schedule: "0 3 *" }\n'],
    ['apps as a mapping', 'apps: { name: shop }\n'],
    ['section as a number', 'ssh: 5\n'],
  ];
  for (const [name, text] of invalid) {
    assert.equal(loaderAccepts(text), false, `${name}: the loader rejects it`);
    assert.notDeepEqual(schemaErrors(text), [], `${name}: the schema rejects it:\n${text}`);
  }
});
