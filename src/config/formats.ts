/**
 * Parsers and checks for the value formats of bysu.yaml: durations, sizes,
 * names, cron patterns and time zones. Each parse function is given the raw
 * value and returns the parsed one or throws an Error whose message says what
 * is wrong with the value (the caller prefixes the field's name).
 */
import { CronExpressionParser } from 'cron-parser';
import type { Format, JsonSchema } from './declare.ts';

export const NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;
export const PART_FILE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** File names BYSU itself writes into every snapshot directory. */
export const RESERVED_FILE_NAMES: readonly string[] = ['manifest.json', 'SHA256SUMS'];

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const SIZE_UNITS: Record<string, number> = {
  B: 1,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  TiB: 1024 ** 4,
};

/**
 * Given a duration such as `90s`, `5m`, `2h`, `1d` (or `500ms`), return
 * milliseconds. Throw when it is not a positive duration with a unit.
 */
export function parseDuration(value: unknown): number {
  // A bare number is refused: `timeout: 7200` would otherwise be 7.2 seconds.
  if (typeof value === 'string') {
    const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(value);
    if (match) {
      const milliseconds = Math.round(Number(match[1]) * DURATION_UNITS[match[2]!]!);
      if (milliseconds >= 1) return milliseconds;
    }
  }
  throw new Error(`must be a duration with a unit, like 90s, 5m, 2h or 1d, got ${JSON.stringify(value)}`);
}

/**
 * Given a size such as `512MiB`, `50GiB` or a plain number of bytes, return
 * bytes. Throw when it is not a positive size.
 */
export function parseSize(value: unknown): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) return value;
  if (typeof value === 'string') {
    const match = /^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB)?\s*$/.exec(value);
    if (match) {
      const bytes = Math.floor(Number(match[1]) * SIZE_UNITS[match[2] ?? 'B']!);
      if (bytes > 0 && Number.isSafeInteger(bytes)) return bytes;
    }
  }
  throw new Error(`must be a size like 512MiB, 50GiB or a number of bytes, got ${JSON.stringify(value)}`);
}

/** Throw unless `value` is a valid node or app name. */
export function checkName(value: unknown): asserts value is string {
  if (typeof value !== 'string' || !NAME_PATTERN.test(value)) {
    throw new Error(`must match ${NAME_PATTERN.source} (lower-case letters, digits, ".", "_", "-"), got ${JSON.stringify(value)}`);
  }
}

/**
 * The longest command a node can run: sshd hands it to the login shell in an
 * environment variable and an argument, and Linux refuses either longer than
 * 128 KiB (MAX_ARG_STRLEN) before the forced-command wrapper can even refuse it.
 */
export const MAX_COMMAND_BYTES = 128 * 1024 - 64;

/** Throw unless `value` is a command a node can run: a non-empty string of at most MAX_COMMAND_BYTES. */
export function checkCommand(value: unknown): asserts value is string {
  if (typeof value !== 'string' || value.trim() === '') throw new Error(`must be a non-empty command, got ${JSON.stringify(value)}`);
  const bytes = Buffer.byteLength(value);
  if (bytes > MAX_COMMAND_BYTES) {
    throw new Error(`is ${bytes} bytes; a node cannot start a command over ${MAX_COMMAND_BYTES} bytes (Linux refuses an argument of 128 KiB): put it in a script on the node and run that`);
  }
}

/** Throw unless `value` is a valid part file name (a plain name, not reserved). */
export function checkPartFileName(value: unknown): asserts value is string {
  if (typeof value !== 'string' || !PART_FILE_PATTERN.test(value)) {
    throw new Error(`must be a plain file name matching ${PART_FILE_PATTERN.source}, got ${JSON.stringify(value)}`);
  }
  if (RESERVED_FILE_NAMES.includes(value)) {
    throw new Error(`${JSON.stringify(value)} is reserved for BYSU's own files`);
  }
}

/** Time zones found valid (each app names one; building a formatter to ask costs a fraction of a millisecond). */
const validTimezones = new Set<string>();

/** Throw unless `value` is an IANA time zone this Node.js knows. */
export function checkTimezone(value: unknown): asserts value is string {
  if (typeof value === 'string' && validTimezones.has(value)) return;
  if (typeof value !== 'string' || value === '') throw new Error(`must be a time zone name like UTC or Europe/Berlin, got ${JSON.stringify(value)}`);
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: value });
  } catch {
    throw new Error(`unknown time zone ${JSON.stringify(value)}`);
  }
  validTimezones.add(value);
}

/** Patterns (with their time zone) found valid: a fleet's apps share a few schedules, and cron-parser takes milliseconds per pattern. */
const validCrons = new Set<string>();

/**
 * Throw unless `pattern` is a cron pattern (5 fields, or 6 with seconds first)
 * that has a next run in `timezone`.
 */
export function checkCron(pattern: unknown, timezone = 'UTC'): asserts pattern is string {
  if (typeof pattern === 'string' && validCrons.has(`${timezone}\0${pattern}`)) return;
  if (typeof pattern !== 'string' || pattern.trim() === '') {
    throw new Error(`must be a cron pattern like "0 3 * * *", got ${JSON.stringify(pattern)}`);
  }
  const fields = pattern.trim().split(/\s+/).length;
  if (fields !== 5 && fields !== 6) {
    throw new Error(`must be a cron pattern with 5 fields (or 6 with seconds), got ${JSON.stringify(pattern)}`);
  }
  const outOfRange = cronFieldOutOfRange(pattern.trim().split(/\s+/));
  if (outOfRange) throw new Error(`invalid cron pattern ${JSON.stringify(pattern)}: ${outOfRange}`);
  try {
    CronExpressionParser.parse(pattern, { tz: timezone, strict: false }).next();
  } catch (error) {
    throw new Error(`invalid cron pattern ${JSON.stringify(pattern)}: ${(error as Error).message}`);
  }
  validCrons.add(`${timezone}\0${pattern}`);
}

const CRON_FIELDS = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12 },
  { name: 'day of week', min: 0, max: 7 },
];
const CRON_SECOND = { name: 'second', min: 0, max: 59 };

/**
 * Given the fields of a cron pattern, return which number is out of its
 * field's range (`minute 61 is out of range 0-59`), or undefined. Only plain
 * numbers, ranges and steps are looked at; names and other syntax are left
 * to cron-parser.
 */
function cronFieldOutOfRange(fields: string[]): string | undefined {
  const ranges = fields.length === 6 ? [CRON_SECOND, ...CRON_FIELDS] : CRON_FIELDS;
  for (const [index, field] of fields.entries()) {
    const range = ranges[index]!;
    for (const element of field.split(',')) {
      const match = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(element);
      if (!match) continue;
      for (const number of [match[2], match[3]]) {
        if (number !== undefined && (Number(number) < range.min || Number(number) > range.max)) {
          return `${range.name} ${number} is out of range ${range.min}-${range.max}`;
        }
      }
      if (match[4] !== undefined && Number(match[4]) < 1) return `${range.name} step ${match[4]} must be at least 1`;
    }
  }
  return undefined;
}

/** Throw unless `value` is an http:// or https:// URL (for webhooks and pings). */
export function checkHttpUrl(value: unknown): asserts value is string {
  let parsed: URL | null = null;
  try {
    parsed = typeof value === 'string' ? new URL(value) : null;
  } catch {
    parsed = null;
  }
  if (parsed === null || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
    throw new Error(`must be an http:// or https:// URL, got ${JSON.stringify(value)}`);
  }
  if (parsed.username !== '' || parsed.password !== '') {
    // fetch refuses such URLs; and the message must not repeat the password.
    throw new Error('must not contain a user or password (user:password@): put a token in the path or query instead');
  }
}

/** Throw unless `value` is a fraction from 0 to below 1. */
export function checkFraction(value: unknown): asserts value is number {
  if (typeof value !== 'number' || !(value >= 0 && value < 1)) {
    throw new Error(`must be a number from 0 (off) to below 1, like 0.5, got ${JSON.stringify(value)}`);
  }
}

/** Given milliseconds, return the shortest duration text (`90s`, `2h`) for messages. */
export function formatDuration(milliseconds: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (milliseconds >= size && milliseconds % size === 0) return `${milliseconds / size}${unit}`;
  }
  return `${milliseconds}ms`;
}

/** Given an age or a wait in ms (or null), return it rounded to a unit a person reads at a glance (`45s`, `12m`, `3h`), or `-`. */
export function formatAge(ms: number | null): string {
  if (ms === null) return '-';
  const rounded = ms < 120_000 ? Math.round(ms / 1000) * 1000 : ms < 7_200_000 ? Math.round(ms / 60_000) * 60_000 : Math.round(ms / 3_600_000) * 3_600_000;
  return formatDuration(Math.max(rounded, 1000));
}

/** Given bytes, return a human size (`1.5 GiB`) for messages and tables. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

// The formats of the declaration in schema.ts: each pairs a check above with
// the JSON Schema of the value as written in the file (what an editor can
// check as you type; the check itself stays the authority).

const DURATION_JSON = { type: 'string', pattern: '^\\s*\\d+(\\.\\d+)?\\s*(ms|s|m|h|d)\\s*$', examples: ['90s', '5m', '2h', '1d'] };
const digitsToNumber = (text: string): unknown => (/^\d+$/.test(text) ? Number(text) : text);

function fail(message: string, value: unknown): never {
  throw new Error(`${message}, got ${JSON.stringify(value)}`);
}

function matching(name: string, pattern: RegExp, message: string, json: JsonSchema = {}): Format<string> {
  return {
    name,
    parse: (value) => (typeof value === 'string' && pattern.test(value) ? value : fail(message, value)),
    json: { type: 'string', pattern: pattern.source.replaceAll('\\/', '/'), ...json },
  };
}

export const duration: Format<number> = { name: 'duration', parse: parseDuration, json: DURATION_JSON };
/** The longest a Node.js timer can wait (2^31 - 1 ms, about 24.8 days): a longer one fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** A duration that BYSU waits with a timer (a timeout, an interval): at most MAX_TIMER_MS. */
export const timerDuration: Format<number> = {
  name: 'timer-duration',
  parse(value) {
    const milliseconds = parseDuration(value);
    if (milliseconds > MAX_TIMER_MS) fail('must be at most 24d (a longer wait would end at once)', value);
    return milliseconds;
  },
  json: DURATION_JSON,
};
export const optionalDuration: Format<number | null> = {
  name: 'optional-duration',
  parse: (value) => (value === null ? null : parseDuration(value)),
  json: { ...DURATION_JSON, type: ['string', 'null'] },
};
export const size: Format<number> = {
  name: 'size',
  parse: parseSize,
  json: { type: ['string', 'integer'], pattern: '^\\s*\\d+(\\.\\d+)?\\s*(B|KiB|MiB|GiB|TiB)?\\s*$', minimum: 1, examples: ['512MiB', '50GiB'] },
};
/** A read bound in bytes per second: a size (`50MiB`: 50 MiB/s), or 0 for none. */
export const bandwidth: Format<number> = {
  name: 'bandwidth',
  parse: (value) => {
    if (value === 0 || value === '0') return 0;
    try {
      return parseSize(value);
    } catch {
      return fail('must be a size per second like 50MiB, or 0 for no bound', value);
    }
  },
  json: { type: ['string', 'integer'], pattern: '^\\s*\\d+(\\.\\d+)?\\s*(B|KiB|MiB|GiB|TiB)?\\s*$', minimum: 0, examples: ['50MiB', 0] },
};
export const cron: Format<string> = {
  name: 'cron',
  parse: (value) => {
    checkCron(value);
    return value;
  },
  json: { type: 'string', pattern: '^\\s*\\S+(\\s+\\S+){4,5}\\s*$', examples: ['0 3 * * *'] },
};
export const timezone: Format<string> = {
  name: 'timezone',
  parse: (value) => {
    checkTimezone(value);
    return value;
  },
  json: { type: 'string', minLength: 1, examples: ['UTC', 'Europe/Berlin'] },
};
export const positiveInteger: Format<number> = {
  name: 'positive-integer',
  parse: (value) => (Number.isSafeInteger(value) && (value as number) >= 1 ? (value as number) : fail('must be a whole number of at least 1', value)),
  json: { type: 'integer', minimum: 1 },
  fromEnv: digitsToNumber,
};
/** The most processes a count of worker processes may ask for: more is a typo, not a machine. */
export const MAX_WORKER_PROCESSES = 64;
export const workerCount: Format<number> = {
  name: 'worker-count',
  parse: (value) => (Number.isInteger(value) && (value as number) >= 0 && (value as number) <= MAX_WORKER_PROCESSES
    ? (value as number)
    : fail(`must be a whole number from 0 (automatic) to ${MAX_WORKER_PROCESSES}`, value)),
  json: { type: 'integer', minimum: 0, maximum: MAX_WORKER_PROCESSES },
  fromEnv: digitsToNumber,
};
export const port: Format<number> = {
  name: 'port',
  parse: (value) => (Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 65535 ? (value as number) : fail('must be a port number from 1 to 65535', value)),
  json: { type: 'integer', minimum: 1, maximum: 65535 },
  fromEnv: digitsToNumber,
};
/** A port to listen on: 0 lets the system choose a free one (the dashboard logs the URL it got). */
export const listenPort: Format<number> = {
  name: 'listen-port',
  parse: (value) => (Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 65535 ? (value as number) : fail('must be a port number from 0 (any free port) to 65535', value)),
  json: { type: 'integer', minimum: 0, maximum: 65535 },
  fromEnv: digitsToNumber,
};
export const fraction: Format<number> = {
  name: 'fraction',
  parse: (value) => {
    checkFraction(value);
    return value;
  },
  json: { type: 'number', minimum: 0, exclusiveMaximum: 1 },
};
export const text: Format<string> = {
  name: 'text',
  parse: (value) => (typeof value === 'string' ? value : fail('must be a string', value)),
  json: { type: 'string' },
};
export const redisUrl = matching('redis-url', /^rediss?:\/\/\S+$/, 'must be a redis:// or rediss:// URL');
export const absolutePath = matching('absolute-path', /^\//, 'must be an absolute path');
export const prefix = matching('prefix', /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'must be 1 to 64 letters, digits, ".", "_" or "-"');
export const name: Format<string> = {
  name: 'name',
  parse: (value) => {
    checkName(value);
    return value;
  },
  json: { type: 'string', pattern: NAME_PATTERN.source },
};
export const host = matching('host', /^[A-Za-z0-9.:_-]+$/, 'must be a host name or IP address');
export const userName = matching('user', /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/, 'must be a user name');
export const fingerprint = matching(
  'fingerprint',
  /^SHA256:[A-Za-z0-9+/]{43}$/,
  'must be an OpenSSH fingerprint like SHA256:<43 base64 characters> (see bysu keyscan)',
);
export function oneOf(formatName: string, values: readonly string[]): Format<string> {
  return {
    name: formatName,
    parse: (value) => (typeof value === 'string' && values.includes(value) ? value : fail(`must be one of ${values.join(', ')}`, value)),
    json: { enum: [...values] },
  };
}
export const httpUrl: Format<string> = {
  name: 'http-url',
  parse: (value) => {
    checkHttpUrl(value);
    return value;
  },
  json: { type: 'string', pattern: '^https?://[^@/]+(/.*)?$' },
};
export const optionalHttpUrl: Format<string> = {
  name: 'optional-http-url',
  parse: (value) => (value === '' ? '' : httpUrl.parse(value)),
  json: { type: 'string', pattern: '^(https?://[^@/]+(/.*)?)?$' },
};
export const command: Format<string> = {
  name: 'command',
  parse: (value) => {
    checkCommand(value);
    return value;
  },
  json: { type: 'string', pattern: '\\S', maxLength: MAX_COMMAND_BYTES },
};
export const partFile: Format<string> = {
  name: 'part-file',
  parse: (value) => {
    checkPartFileName(value);
    return value;
  },
  json: { type: 'string', pattern: PART_FILE_PATTERN.source, not: { enum: [...RESERVED_FILE_NAMES] } },
};
export const exitCodes: Format<number[]> = {
  name: 'exit-codes',
  parse: (value) => {
    const valid = Array.isArray(value) && value.length > 0 && value.every((code) => Number.isInteger(code) && code >= 0 && code <= 255);
    return valid ? [...new Set(value as number[])] : fail('must be a non-empty list of exit codes from 0 to 255', value);
  },
  json: { type: 'array', items: { type: 'integer', minimum: 0, maximum: 255 }, minItems: 1 },
};
export const regularExpression: Format<string> = {
  name: 'regular-expression',
  parse: (value) => {
    if (typeof value !== 'string') fail('must be a regular expression', value);
    try {
      new RegExp(value, 'm');
    } catch (error) {
      throw new Error(`not a valid regular expression: ${(error as Error).message}`);
    }
    return value;
  },
  json: { type: 'string' },
};

/**
 * One mail address, bare (`ops@example.com`) or with a display name
 * (`BYSU <bysu@example.com>`): a local part and a domain, no spaces, angle
 * brackets or line breaks in the address itself. Loose on purpose (the SMTP
 * server is the judge of what it delivers); strict enough to catch a typo and
 * any header injection.
 */
const MAIL_ADDRESS = /^(?:[^<>\r\n]*<[^\s<>@]+@[^\s<>@]+>|[^\s<>@]+@[^\s<>@]+)$/;
/** The name of an environment variable, as a shell can set it. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export const mailAddress = matching('mail-address', MAIL_ADDRESS, 'must be a mail address like ops@example.com or "BYSU <bysu@example.com>"');
export const mailAddresses: Format<string[]> = {
  name: 'mail-addresses',
  parse: (value) => {
    const list = typeof value === 'string' ? [value] : value;
    const valid = Array.isArray(list) && list.length > 0 && list.every((address) => typeof address === 'string' && MAIL_ADDRESS.test(address));
    return valid ? [...new Set(list as string[])] : fail('must be a mail address or a non-empty list of them, like [ops@example.com, oncall@example.com]', value);
  },
  json: {
    oneOf: [
      { type: 'string', pattern: MAIL_ADDRESS.source },
      { type: 'array', items: { type: 'string', pattern: MAIL_ADDRESS.source }, minItems: 1 },
    ],
  },
};
export const environmentName = matching('environment-name', ENV_NAME, 'must be the name of an environment variable, like BYSU_SMTP_PASSWORD (the password itself never goes in the file)');
/** The apps a mirror copies: `all` (every app its source lists), or a non-empty list of app names. */
export const mirrorApps: Format<'all' | string[]> = {
  name: 'mirror-apps',
  parse: (value) => {
    if (value === 'all') return 'all';
    const valid = Array.isArray(value) && value.length > 0 && value.every((entry) => typeof entry === 'string' && NAME_PATTERN.test(entry));
    return valid ? [...new Set(value as string[])] : fail('must be all, or a non-empty list of app names like [shop, blog]', value);
  },
  json: { oneOf: [{ const: 'all' }, { type: 'array', items: { type: 'string', pattern: NAME_PATTERN.source }, minItems: 1 }] },
};
