/**
 * A small vocabulary to declare a configuration file once: keys (format,
 * default, environment variable, doc), mappings of keys, and lists of
 * mappings. From one declaration come the TypeScript type of the loaded value
 * (OutputOf), the checks and their messages (readMapping), the convict schema
 * of the process-level keys (toConvictSchema) and the JSON Schema of the file
 * (json-schema.ts).
 */

export type JsonSchema = { [keyword: string]: unknown };

/** How one kind of value is checked, parsed and described. */
export interface Format<T> {
  /** Short name; convict knows the format as `bysu-<name>`. */
  name: string;
  /** Given the raw value from the file, return the parsed one or throw an Error saying what is wrong with it. */
  parse(value: unknown): T;
  /** JSON Schema of the raw value as written in the file. */
  json: JsonSchema;
  /** Given an environment variable's text, return the raw value to check (default: the text). */
  fromEnv?(text: string): unknown;
}

/** One key: `As` renames it in the loaded value (`timeout` → `timeoutMs`); `Opt` leaves it out when absent. */
export interface Key<T, As extends string | undefined = undefined, Opt extends boolean = boolean> {
  kind: 'key';
  doc: string;
  format: Format<T>;
  /** The raw default as it would be written in the file; none means required, unless optional or inherited. */
  default?: unknown;
  /** Environment variable that overrides the file. */
  env?: string;
  /** The value is never repeated in a message (it may hold a password). */
  sensitive?: boolean;
  /** Where the value comes from when the key is absent (`defaults`, `ssh.user`); the loader fills it in. */
  inherit?: string;
  as: As;
  optional: Opt;
}

/** A mapping of keys: a section of the file, a list's item, or a nested block like an app's drill. */
export interface Mapping<K extends Keys = Keys, Opt extends boolean = boolean> {
  kind: 'mapping';
  doc: string;
  keys: K;
  optional: Opt;
  /** For a list's items: the key whose value names the item in messages (`apps[shop]`), else its index. */
  label?: string;
}

export interface List<K extends Keys = Keys> {
  kind: 'list';
  doc: string;
  item: Mapping<K>;
  /** What one item is, for messages: "parts (file and run)". */
  noun: string;
  /** An empty (or absent) list is a problem. */
  nonEmpty: boolean;
}

// Not `any` for As and Opt: a key declared inside a mapping() call would take `any` from this context.
export type Spec = Key<any, string | undefined, boolean> | Mapping<any, boolean> | List<any>;
export type Keys = { [name: string]: Spec };

type Simplify<T> = { [P in keyof T]: T[P] } & {};
type NameOf<P extends string, S> = S extends { as: infer A extends string } ? A : P;
type IsOptional<S> = S extends { optional: true } ? true : false;
type ValueOf<S> = S extends Key<infer T, infer _As, infer _Opt> ? T
  : S extends Mapping<infer K, infer _Opt> ? OutputOf<K>
    : S extends List<infer K> ? OutputOf<K>[]
      : never;

/** The loaded value of a mapping: each key under its output name, optional keys optional. */
export type OutputOf<K extends Keys> = Simplify<
  { -readonly [P in keyof K & string as IsOptional<K[P]> extends true ? never : NameOf<P, K[P]>]: ValueOf<K[P]> } &
  { -readonly [P in keyof K & string as IsOptional<K[P]> extends true ? NameOf<P, K[P]> : never]?: ValueOf<K[P]> }
>;

/** Declare a key. */
export function key<T, const As extends string | undefined = undefined, const Opt extends boolean = false>(
  spec: Omit<Key<T, As, Opt>, 'kind' | 'as' | 'optional'> & { as?: As; optional?: Opt },
): Key<T, As, Opt> {
  return { kind: 'key', ...spec, as: spec.as as As, optional: (spec.optional ?? false) as Opt };
}

/** Declare a mapping of keys. */
export function mapping<const K extends Keys, const Opt extends boolean = false>(
  doc: string,
  keys: K,
  options: { optional?: Opt; label?: string } = {},
): Mapping<K, Opt> {
  return { kind: 'mapping', doc, keys, optional: (options.optional ?? false) as Opt, ...(options.label ? { label: options.label } : {}) };
}

/** Declare a list of mappings. */
export function list<const K extends Keys>(doc: string, item: Mapping<K>, options: { noun: string; nonEmpty?: boolean }): List<K> {
  return { kind: 'list', doc, item, noun: options.noun, nonEmpty: options.nonEmpty ?? false };
}

/** Given keys, return copies that an item may set and otherwise inherits from `from` (no default of their own). */
export function inherited<const K extends { [name: string]: Key<unknown, string | undefined, false> }>(keys: K, from: string): K {
  return Object.fromEntries(Object.entries(keys).map(([name, spec]) => {
    const { default: _default, ...rest } = spec;
    return [name, { ...rest, inherit: `${from}.${name}` }];
  })) as K;
}

/** Whether a key must be written in the file. */
export function isRequired(spec: Spec): boolean {
  if (spec.kind === 'list') return spec.nonEmpty;
  if (spec.kind === 'mapping') return !spec.optional && Object.values(spec.keys as Keys).some(isRequired);
  return !spec.optional && spec.default === undefined && spec.inherit === undefined;
}

export function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Given a value, return how a message names its kind: "a list", "a number", "null". */
export function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'a mapping' : `a ${typeof value}`;
}

/**
 * Given a list's raw items and their declaration, return each item's path:
 * `apps[shop]` when its label key holds a valid value unique in the list,
 * else `apps[2]` (a duplicate or a broken name cannot name the item).
 */
export function itemPaths(items: unknown[], path: string, item: Mapping): string[] {
  const labelKey = item.label === undefined ? undefined : (item.keys as Keys)[item.label];
  const labels = items.map((raw) => {
    if (labelKey?.kind !== 'key' || !isMapping(raw)) return undefined;
    try {
      const label = labelKey.format.parse(raw[item.label!]);
      return typeof label === 'string' ? label : undefined;
    } catch {
      return undefined;
    }
  });
  return labels.map((name, index) => (name !== undefined && labels.indexOf(name) === labels.lastIndexOf(name) ? `${path}[${name}]` : `${path}[${index}]`));
}

/**
 * Given an unknown key and the known ones, return the known key it most likely
 * misspells: at most 2 edits away (a swap of neighbours counts as one), or
 * one of them (of 2 characters or more) a prefix of the other. Undefined when none is close.
 */
export function nearestKey(unknown: string, known: string[]): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const name of known) {
    const a = unknown.toLowerCase();
    const b = name.toLowerCase();
    const distance = a.length >= 2 && (a.startsWith(b) || b.startsWith(a)) ? 1 : editDistance(a, b);
    if (distance <= 2 && distance < (best?.distance ?? Infinity)) best = { name, distance };
  }
  return best?.name;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours. */
function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i += 1) {
    for (let j = 1; j <= b.length; j += 1) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let value = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) value = Math.min(value, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = value;
    }
  }
  return rows[a.length]![b.length]!;
}

/** What the walker needs besides the value: where to put problems, and which keys the environment set. */
export interface ReadContext {
  problems: string[];
  /** Dotted paths of keys whose value came from an environment variable, with its name. */
  fromEnv?: Map<string, string>;
}

/**
 * Given a raw mapping, its declaration and its path in messages, check every
 * key and return the loaded value: defaults applied, formats parsed, keys
 * renamed. Inherited keys that are absent stay absent (the caller fills them).
 * Each problem is recorded as `path.key: what is wrong`; the returned value is
 * then incomplete and only fit for further checks, never for use.
 */
export function readMapping<K extends Keys>(raw: unknown, spec: Mapping<K>, path: string, context: ReadContext): OutputOf<K> {
  const { problems } = context;
  const output: Record<string, unknown> = {};
  const prefix = path === '' ? '' : `${path}.`;
  if (!isMapping(raw)) {
    const required = Object.entries(spec.keys).filter(([, child]) => isRequired(child)).map(([name]) => name);
    const shape = required.length > 0 ? `a mapping with ${required.join(', ')}` : 'a mapping of keys';
    problems.push(`${path}: must be ${shape}, got ${kindOf(raw)}`);
    return output as OutputOf<K>;
  }
  const known = Object.keys(spec.keys);
  for (const name of Object.keys(raw)) {
    if (name in spec.keys) continue;
    const near = nearestKey(name, known);
    problems.push(`${prefix}${name}: unknown key; ${near ? `did you mean \`${near}\`?` : `known keys: ${known.join(', ')}`}`);
  }
  for (const [name, child] of Object.entries(spec.keys)) {
    const field = `${prefix}${name}`;
    const value = raw[name];
    const outputName = child.kind === 'key' && child.as !== undefined ? child.as : name;
    if (value === undefined || (value === null && child.kind !== 'key')) {
      // `defaults:` or `apps:` with every line below commented out is left at its default.
      if (isRequired(child)) {
        problems.push(child.kind === 'list' ? `${field}: missing; must be a non-empty list of ${child.noun}` : `${field}: missing; ${lowerFirst(child.doc)}`);
      } else if (child.kind === 'key' && child.default !== undefined) {
        output[outputName] = child.format.parse(child.default);
      } else if (child.kind === 'mapping' && !child.optional) {
        output[outputName] = readMapping({}, child, field, context);
      } else if (child.kind === 'list') {
        output[outputName] = [];
      }
      continue;
    }
    if (child.kind === 'mapping') {
      output[outputName] = readMapping(value, child, field, context);
    } else if (child.kind === 'list') {
      output[outputName] = readList(value, child, field, context);
    } else {
      try {
        output[outputName] = child.format.parse(value);
      } catch (error) {
        const message = (error as Error).message;
        const env = context.fromEnv?.get(field);
        problems.push(`${field}: ${child.sensitive ? message.replace(/, got .*$/s, '') : message}${env ? ` (from ${env})` : ''}`);
      }
    }
  }
  return output as OutputOf<K>;
}

function readList<K extends Keys>(raw: unknown, spec: List<K>, path: string, context: ReadContext): OutputOf<K>[] {
  if (!Array.isArray(raw) || (spec.nonEmpty && raw.length === 0)) {
    context.problems.push(`${path}: must be a ${spec.nonEmpty ? 'non-empty ' : ''}list of ${spec.noun}, got ${Array.isArray(raw) ? 'an empty list' : kindOf(raw)}`);
    return [];
  }
  const paths = itemPaths(raw, path, spec.item);
  return raw.map((item, index) => readMapping(item, spec.item, paths[index]!, context));
}

function lowerFirst(text: string): string {
  return text.charAt(0).toLowerCase() + text.slice(1);
}

/**
 * Given the file's root mapping, return the convict schema that reads its
 * sources: each key's default, the file, then its environment variable
 * (coerced by its format's fromEnv). Lists and optional mappings are left
 * out: they come from the file alone (convict would merge a mapping given in
 * place of a list, and fill an absent optional mapping with its defaults, as
 * if it were written). Convict does not check anything here: readMapping
 * does, with the same messages everywhere.
 */
export function toConvictSchema(root: Mapping, register: (name: string, coerce: (text: string) => unknown) => void): Record<string, unknown> {
  register('bysu-raw', (text) => text);
  const convert = (spec: Spec): unknown => {
    if (spec.kind === 'mapping') {
      const fromFileAlone = (child: Spec) => child.kind === 'list' || (child.kind === 'mapping' && child.optional);
      return Object.fromEntries(Object.entries(spec.keys as Keys).filter(([, child]) => !fromFileAlone(child)).map(([name, child]) => [name, convert(child)]));
    }
    if (spec.kind === 'list') throw new Error('a list has no convict schema');
    if (spec.env === undefined) return { doc: spec.doc, format: 'bysu-raw', default: spec.default ?? null };
    const format = `bysu-env-${spec.format.name}`;
    register(format, spec.format.fromEnv ?? ((text) => text));
    return { doc: spec.doc, format, default: spec.default ?? null, env: spec.env, ...(spec.sensitive ? { sensitive: true } : {}) };
  };
  return convert(root) as Record<string, unknown>;
}

/** Given the root mapping, return each key that has an environment variable, by dotted path. */
export function environmentKeys(root: Mapping): Map<string, string> {
  const found = new Map<string, string>();
  const visit = (spec: Spec, path: string) => {
    if (spec.kind === 'mapping') for (const [name, child] of Object.entries(spec.keys as Keys)) visit(child, path === '' ? name : `${path}.${name}`);
    else if (spec.kind === 'key' && spec.env !== undefined) found.set(path, spec.env);
  };
  visit(root, '');
  return found;
}
