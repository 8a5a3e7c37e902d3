/**
 * Turns a bysu.yaml file into a validated, typed, frozen Config: YAML parse
 * (see readYaml),
 * the sources merged by convict (defaults, file, environment), every key
 * checked against the declaration in schema.ts, then the checks that look
 * across keys (an app's node must exist, a drill reads a part of its app,
 * names are unique). Every problem found is reported, not just the first,
 * each naming its field by path (`apps[shop].parts[shop.sql].run`).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import convict from 'convict';
import { CORE_SCHEMA, load as quickLoad } from 'js-yaml';
import type { YAMLError } from 'yaml';
import { ConfigError } from '../errors.ts';
import { environmentKeys, isMapping, itemPaths, kindOf, readMapping, toConvictSchema, type Mapping } from './declare.ts';
import { configDeclaration, type AppConfig, type Config } from './schema.ts';

export type { AppConfig, AppPolicy, Config, DrillConfig, DrillStep, EmailConfig, MirrorConfig, NodeConfig, PartConfig } from './schema.ts';
export { DEFAULT_DRILL_SCHEDULE } from './schema.ts';

const { nodes: nodeList, apps: appList, mirrors: mirrorList } = configDeclaration.keys;
const partList = appList.item.keys.parts;
const convictSchema = toConvictSchema(configDeclaration, (name, coerce) => convict.addFormat({ name, validate: () => {}, coerce }));
const ENVIRONMENT_KEYS = environmentKeys(configDeclaration);

/**
 * Given the command line's --config (if any) and the environment, return the
 * path of the config file: --config, else $BYSU_CONFIG, else ./bysu.yaml.
 */
export function resolveConfigPath(explicit: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(explicit ?? env.BYSU_CONFIG ?? 'bysu.yaml');
}

/**
 * Given a config file path, read, validate and return the frozen Config.
 * Environment variables named in the schema override the file.
 * Throw ConfigError listing every problem, each naming its field.
 */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw unreadableConfig(file, error);
  }
  return parseConfig(text, file, env);
}

/** Given the config file and why reading it failed, return the ConfigError that says so. */
export function unreadableConfig(file: string, error: unknown): ConfigError {
  const code = (error as NodeJS.ErrnoException).code;
  return new ConfigError([`${file}: cannot read the config file (${code === 'ENOENT' ? 'no such file' : code ?? String(error)})`]);
}

/** Given the text of a config file, validate it like loadConfig does. */
export function parseConfig(text: string, source: string, env: NodeJS.ProcessEnv = process.env): Config {
  const raw = readYaml(text, source);
  if (!isMapping(raw)) {
    throw new ConfigError([`${source}: the config must be a mapping of keys (redis, repository, nodes, apps, …)`]);
  }

  // Convict would merge the defaults into a section given as a scalar or list; say it plainly instead.
  const problems: string[] = [];
  for (const [name, spec] of Object.entries(configDeclaration.keys)) {
    if (spec.kind !== 'mapping' || !(name in raw)) continue;
    if (raw[name] === null) delete raw[name]; // `defaults:` with every line commented out
    else if (!isMapping(raw[name])) problems.push(`${name}: must be a mapping of keys, got ${kindOf(raw[name])}`);
  }
  if (problems.length > 0) throw new ConfigError(problems);

  // Convict reads the sources of the process-level keys; the lists (nodes, apps) come from the file alone.
  const isList = (name: string) => configDeclaration.keys[name as keyof typeof configDeclaration.keys]?.kind === 'list';
  const store = convict(convictSchema as convict.Schema<Record<string, unknown>>, { env, args: [] });
  store.load(Object.fromEntries(Object.entries(raw).filter(([name]) => !isList(name))));
  const merged = { ...(store.getProperties() as Record<string, unknown>), ...Object.fromEntries(Object.entries(raw).filter(([name]) => isList(name))) };
  const fromEnv = new Map([...ENVIRONMENT_KEYS].filter(([, variable]) => env[variable] !== undefined));
  const loaded = readMapping(merged, configDeclaration, '', { problems, fromEnv });
  checkAcrossKeys(merged, problems);
  checkMirrors(merged, problems);
  checkEmail(merged, problems);
  if (problems.length > 0) throw new ConfigError(problems);

  const nodes = loaded.nodes.map((node) => ({ ...node, user: node.user ?? loaded.ssh.user }));
  const apps = loaded.apps.map((app): AppConfig => ({ ...loaded.defaults, ...app }));
  return deepFreeze({ source, ...loaded, repository: path.resolve(loaded.repository), nodes, apps });
}

/** Given the app's name, return its config or throw ConfigError naming the known apps. */
export function findApp(config: Config, name: string): AppConfig {
  const app = config.apps.find((candidate) => candidate.name === name);
  if (!app) {
    const known = config.apps.map((candidate) => candidate.name).join(', ') || 'none';
    throw new ConfigError([`unknown app "${name}" (configured: ${known})`]);
  }
  return app;
}

/**
 * Given the merged raw config (each key already checked on its own), record
 * the problems that only show across keys: duplicate node, app and part
 * names, an app or drill naming a node that is not configured, a drill step
 * reading a file that is not a part of its app, a drill that reads none.
 */
function checkAcrossKeys(merged: Record<string, unknown>, problems: string[]): void {
  const nodes = Array.isArray(merged.nodes) ? merged.nodes : [];
  const apps = Array.isArray(merged.apps) ? merged.apps : [];
  const nodeNames = reportDuplicates(nodes, 'nodes', nodeList.item, 'node name', problems);
  const knownNodes = `nodes: ${nodeNames.join(', ') || 'none'}`;
  reportDuplicates(apps, 'apps', appList.item, 'app name', problems);
  const appPaths = itemPaths(apps, 'apps', appList.item);
  apps.forEach((app, index) => {
    if (!isMapping(app)) return;
    const field = appPaths[index]!;
    if (typeof app.node === 'string' && !nodeNames.includes(app.node)) problems.push(`${field}.node: unknown node "${app.node}" (${knownNodes})`);
    const parts = Array.isArray(app.parts) ? app.parts : [];
    const files = reportDuplicates(parts, `${field}.parts`, partList.item, 'file name', problems, ' in this app');
    if (!isMapping(app.drill)) return;
    const drill = app.drill;
    if (typeof drill.node === 'string' && !nodeNames.includes(drill.node)) problems.push(`${field}.drill.node: unknown node "${drill.node}" (${knownNodes})`);
    if (!Array.isArray(drill.steps) || drill.steps.length === 0) return;
    const steps = drill.steps.filter(isMapping);
    drill.steps.forEach((step, stepIndex) => {
      if (isMapping(step) && typeof step.stdin === 'string' && files.length > 0 && !files.includes(step.stdin)) {
        problems.push(`${field}.drill.steps[${stepIndex}].stdin: ${JSON.stringify(step.stdin)} is not a part of this app (parts: ${files.join(', ')})`);
      }
    });
    if (steps.length > 0 && !steps.some((step) => step.stdin !== undefined)) {
      // A drill that reads nothing of the snapshot proves nothing about it.
      problems.push(`${field}.drill.steps: at least one step must restore a part of the snapshot (stdin: <part file>)`);
    }
  });
}

/**
 * Given the merged raw config, record what the mirrors say together: unique
 * names, and no app named twice (by two mirrors, or by a mirror and `apps`):
 * one directory of the repository holds one app's snapshots from one place.
 */
function checkMirrors(merged: Record<string, unknown>, problems: string[]): void {
  const mirrors = Array.isArray(merged.mirrors) ? merged.mirrors : [];
  reportDuplicates(mirrors, 'mirrors', mirrorList.item, 'mirror name', problems);
  const paths = itemPaths(mirrors, 'mirrors', mirrorList.item);
  const owner = new Map<string, string>();
  for (const app of Array.isArray(merged.apps) ? merged.apps : []) {
    if (isMapping(app) && typeof app.name === 'string') owner.set(app.name, `apps[${app.name}]`);
  }
  mirrors.forEach((mirror, index) => {
    if (!isMapping(mirror) || !Array.isArray(mirror.apps)) return;
    for (const app of mirror.apps) {
      if (typeof app !== 'string') continue;
      const earlier = owner.get(app);
      if (earlier !== undefined) problems.push(`${paths[index]}.apps: "${app}" is already ${earlier}; one app's snapshots come from one place (copy it under another BYSU's name, or drop it here)`);
      else owner.set(app, `copied by ${paths[index]}`);
    }
  });
}

/**
 * Given the merged raw config, record what notify.email's keys say together:
 * a login needs both user and passwordEnv, and never crosses the network in
 * clear (security none); a CA file only means something with TLS. Whether the
 * password's variable is set is checked where the password is used (the
 * processes that send alerts, and config check), not by every command.
 */
function checkEmail(merged: Record<string, unknown>, problems: string[]): void {
  const email = isMapping(merged.notify) && isMapping(merged.notify.email) ? merged.notify.email : null;
  if (email === null) return;
  if (email.user !== undefined && email.passwordEnv === undefined) {
    problems.push('notify.email.passwordEnv: missing; with a user, name the environment variable that holds the SMTP password (e.g. passwordEnv: BYSU_SMTP_PASSWORD)');
  }
  if (email.passwordEnv !== undefined && email.user === undefined) problems.push('notify.email.user: missing; passwordEnv is set, so name the SMTP login user too');
  if (email.security === 'none' && email.user !== undefined) {
    problems.push('notify.email.security: "none" would send the SMTP password in clear; use starttls or tls (or a relay that needs no login)');
  }
  if (email.security === 'none' && email.caFile !== undefined) problems.push('notify.email.caFile: only used with TLS; remove it, or set security to starttls or tls');
}

/** Given a list's raw items, record each repeated value of their label key and return the distinct string values. */
function reportDuplicates(items: unknown[], path: string, item: Mapping, what: string, problems: string[], where = ''): string[] {
  const key = item.label!;
  const paths = itemPaths(items, path, item);
  const seen: string[] = [];
  items.forEach((raw, index) => {
    if (!isMapping(raw) || typeof raw[key] !== 'string') return;
    const value = raw[key];
    const first = seen.indexOf(value);
    if (first === -1) seen.push(value);
    else problems.push(`${paths[index]}.${key}: duplicate ${what} "${value}"${where} (also ${paths[items.findIndex((other) => isMapping(other) && other[key] === value)]})`);
  });
  return seen;
}

/**
 * Text that the reference parser must read (see readYaml), conservatively:
 * a `!` where a node can start (a line's start, after `: `, `- `, `? `, `[`,
 * `{` or `,`) or a `!` followed by tag characters after a space, `:` or an
 * anchor (`&a !!int 5`, `{"a":!!int 5}`): an explicit tag; a directive
 * (`%YAML 1.1` changes what scalars mean in `yaml` and not in js-yaml); a
 * number too large for a double (`1e400`, 16 digits or more), which one reads
 * as Infinity and the other as a string. A `!` inside a command followed by a
 * space (`test ! -f x`) does not match.
 */
export const NEEDS_REFERENCE_PARSER = /(?:^|[[{,]|[:?-]\s)\s*!|(?:^|[\s[{,:])!(?=\S)|^%|\d{16}|\d[eE][+-]?\d{3}/m;

/**
 * Given the config text, return its data. Two parsers of YAML 1.2's core
 * schema read it: js-yaml, about four times faster (0.11 s against 0.45 s
 * for a file of 1,000 apps in a fresh process: a third of a `bysu status`),
 * takes every document it reads without error that has no aliases and that
 * NEEDS_REFERENCE_PARSER does not match; `yaml`, the reference, reads every
 * other one, so that an invalid file is reported as before (its messages,
 * the line and a caret under the column), a document with aliases gets its
 * guard against alias bombs, and tags, directives and huge numbers mean what
 * they meant (the two differ on `!!float 1`, `%YAML 1.1`, `1e400`). The two
 * agree on what every other document means
 * (test/unit/config/yaml-parsers.test.ts).
 */
function readYaml(text: string, source: string): unknown {
  if (!NEEDS_REFERENCE_PARSER.test(text)) {
    try {
      return quickLoad(text, { schema: CORE_SCHEMA, maxAliases: 0 }) ?? {};
    } catch {
      // Invalid, empty, several documents, or aliases: the reference decides and words it.
    }
  }
  // Loaded only now: a process whose config takes the fast path does not pay for loading it.
  const { parseDocument } = createRequire(import.meta.url)('yaml') as typeof import('yaml');
  const document = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (document.errors.length > 0) throw new ConfigError(document.errors.map((error) => describeYamlError(error, text, source)));
  return document.toJS() ?? {};
}

/** Given a YAML error, return it as `file:line:column: not valid YAML: …` with the line and a caret under the column. */
function describeYamlError(error: YAMLError, text: string, source: string): string {
  const message = error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
  const position = error.linePos?.[0];
  if (!position) return `${source}: not valid YAML: ${message}`;
  const lines = text.split(/\r?\n/);
  let { line: lineNumber, col: columnNumber } = position;
  // An unclosed [ { or " is found at the end of the file; point after the last line that has text instead.
  while (lineNumber > 1 && (lines[lineNumber - 1] ?? '').trim() === '') {
    lineNumber -= 1;
    columnNumber = (lines[lineNumber - 1] ?? '').trimEnd().length + 1;
  }
  let line = lines[lineNumber - 1] ?? '';
  let column = columnNumber - 1;
  if (line.length > 120) {
    // A long line (JSON on one line): show the part around the column.
    const start = Math.max(0, column - 60);
    line = `${start > 0 ? '…' : ''}${line.slice(start, start + 120)}`;
    column = column - start + (start > 0 ? 1 : 0);
  }
  const gutter = ' '.repeat(String(lineNumber).length);
  const indent = [...line.slice(0, column)].map((character) => (character === '\t' ? '\t' : ' ')).join('');
  return `${source}:${lineNumber}:${columnNumber}: not valid YAML: ${message}\n  ${lineNumber} | ${line}\n  ${gutter} | ${indent}^`;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
