/**
 * The declaration in src/config/schema.ts and the example config agree: the
 * example loads, and every key the declaration knows (and every environment
 * variable) appears in it, so a key added to the declaration without being
 * documented fails here.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { parse } from 'yaml';
import type { Keys, Mapping } from '../../../src/config/declare.ts';
import { loadConfig } from '../../../src/config/load.ts';
import { configDeclaration, POLICY_KEYS, policyKeys } from '../../../src/config/schema.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const EXAMPLE = path.join(ROOT, 'bysu.example.yaml');
const exampleText = readFileSync(EXAMPLE, 'utf8');

/** Given a declaration, return every key path (`apps[].parts[].file`) with its leaf name and where it inherits from. */
function declaredPaths(spec: Mapping, prefix = ''): { path: string; leaf: string; inherit?: string }[] {
  return Object.entries(spec.keys as Keys).flatMap(([name, child]) => {
    const here = `${prefix}${name}`;
    if (child.kind === 'mapping') return [{ path: here, leaf: name }, ...declaredPaths(child, `${here}.`)];
    if (child.kind === 'list') return [{ path: here, leaf: name }, ...declaredPaths(child.item, `${here}[].`)];
    return [{ path: here, leaf: name, ...(child.inherit ? { inherit: child.inherit } : {}) }];
  });
}

/** Given a parsed document and a declared path, return whether some value (some item, for lists) has it. */
function present(document: unknown, keyPath: string): boolean {
  const [head, ...rest] = keyPath.split('.');
  const isList = head!.endsWith('[]');
  const name = isList ? head!.slice(0, -2) : head!;
  if (typeof document !== 'object' || document === null || !(name in document)) return false;
  const value = (document as Record<string, unknown>)[name];
  if (rest.length === 0) return true;
  const children = isList ? (Array.isArray(value) ? value : []) : [value];
  return children.some((child) => present(child, rest.join('.')));
}

test('the example config loads', () => {
  assert.doesNotThrow(() => loadConfig(EXAMPLE, {}));
});

test('every declared key appears in the example config, set or commented out', () => {
  const document: unknown = parse(exampleText);
  const missing: string[] = [];
  for (const { path: keyPath, leaf, inherit } of declaredPaths(configDeclaration)) {
    if (present(document, keyPath)) continue;
    // An app's policy keys are documented once, under defaults ("any key of `defaults` may be set here").
    if (inherit?.startsWith('defaults.') && present(document, inherit)) continue;
    // A key that is better left unset is shown commented out: `# staleAfter: 36h`.
    if (new RegExp(`^\\s*#\\s*(- )?${leaf}:`, 'm').test(exampleText)) continue;
    missing.push(keyPath);
  }
  assert.deepEqual(missing, [], `keys declared in src/config/schema.ts but not shown in bysu.example.yaml: ${missing.join(', ')}`);
});

test('every environment variable of the declaration is named in the example config', () => {
  const variables: string[] = [];
  const visit = (spec: Mapping) => {
    for (const child of Object.values(spec.keys as Keys)) {
      if (child.kind === 'mapping') visit(child);
      else if (child.kind === 'key' && child.env) variables.push(child.env);
    }
  };
  visit(configDeclaration);
  assert.ok(variables.length >= 15, `found ${variables.length}`);
  assert.deepEqual(variables.filter((variable) => !exampleText.includes(variable)), []);
});

test('the policy keys are declared once: defaults and apps share them', () => {
  assert.deepEqual(Object.keys(configDeclaration.keys.defaults.keys), POLICY_KEYS);
  const appKeys = configDeclaration.keys.apps.item.keys;
  for (const name of POLICY_KEYS) {
    const appKey = appKeys[name];
    assert.equal(appKey.format, policyKeys[name].format, name);
    assert.equal(appKey.default, undefined, `apps[].${name} inherits, it has no default of its own`);
    assert.equal(appKey.inherit, `defaults.${name}`);
  }
});

test('the example points editors at the committed JSON Schema by a relative path', () => {
  const first = exampleText.split('\n')[0];
  assert.equal(first, '# yaml-language-server: $schema=./bysu.schema.json');
  assert.doesNotThrow(() => readFileSync(path.join(ROOT, 'bysu.schema.json'), 'utf8'));
});
