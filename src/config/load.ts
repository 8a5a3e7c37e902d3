/**
 * Turns a bysu.yaml file into a validated, typed, frozen Config: YAML parse,
 * convict validation (with environment overrides and unknown keys rejected),
 * then the per-item rules of nodes and apps. Every problem found is reported,
 * not just the first, each naming its field.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import path from 'node:path';
import convict from 'convict';
import { parseDocument } from 'yaml';
import { ConfigError } from '../errors.ts';
import { identityFileProblems } from '../ssh/identity-file.ts';
import type { NodeAddress } from '../ssh/node-address.ts';
import { checkCommand, checkCron, checkFraction, checkHttpUrl, checkName, checkPartFileName, checkTimezone, parseDuration, parseSize } from './formats.ts';
import { configSchema, POLICY_KEYS } from './schema.ts';

/** What each app inherits from `defaults` and may override. */
export interface AppPolicy {
  /** Cron pattern. @defaultValue "0 3 * * *" */
  schedule: string;
  /** @defaultValue "UTC" */
  timezone: string;
  /** Complete snapshots kept. @defaultValue 3 */
  keep: number;
  /** Whole snapshot. @defaultValue 2h */
  timeoutMs: number;
  /** No byte received for this long aborts the attempt. @defaultValue 5m */
  stallTimeoutMs: number;
  /** @defaultValue 4 */
  attempts: number;
  /** First retry delay, doubling. @defaultValue 1m */
  backoffMs: number;
  /** @defaultValue 50GiB */
  maxBytes: number;
  /** Null: 1.5 × the schedule's interval. */
  staleAfterMs: number | null;
  /** A snapshot smaller than this fraction of the kept snapshots' median size gets a warning; 0 = off. @defaultValue 0.5 */
  shrinkWarn: number;
}

export interface PartConfig {
  file: string;
  run: string;
  okExitCodes: number[];
}

export interface AppConfig extends AppPolicy {
  name: string;
  node: string;
  parts: PartConfig[];
  /** healthchecks-style URL: GET on success, GET <url>/fail on failure. */
  ping?: string;
  /** A restore drill of the newest snapshot, on a schedule. */
  drill?: DrillConfig;
}

export interface DrillStep {
  run: string;
  /** A part file of the snapshot streamed into the command's stdin. */
  stdin?: string;
  /** A regular expression (multiline) the command's stdout must match. */
  expect?: string;
}

export interface DrillConfig {
  /** Node the drill runs on (a scratch target, not the app's own node unless you mean it). */
  node: string;
  /** @defaultValue "0 6 * * 0" (weekly) */
  schedule: string;
  steps: DrillStep[];
}

export const DEFAULT_DRILL_SCHEDULE = '0 6 * * 0';
const DRILL_KEYS = ['node', 'schedule', 'steps'];
const DRILL_STEP_KEYS = ['run', 'stdin', 'expect'];

export interface Config {
  /** The file this was loaded from. */
  source: string;
  redis: { url: string; prefix: string };
  repository: string;
  ssh: { user: string; identityFile: string; knownHosts: string; connectTimeoutMs: number; keepaliveIntervalMs: number; keepaliveCountMax: number };
  concurrency: { global: number; perNode: number; perWorker: number; busyNodeDelayMs: number; lockDurationMs: number; stalledIntervalMs: number };
  shutdownGraceMs: number;
  log: { level: string };
  defaults: AppPolicy;
  retention: { sweepSchedule: string; incomingMarginMs: number };
  notify: { webhook: string; timeoutMs: number; staleCheckIntervalMs: number };
  dashboard: { host: string; port: number; user: string; password: string; apiToken: string };
  nodes: NodeAddress[];
  apps: AppConfig[];
}

const NODE_KEYS = ['name', 'host', 'port', 'user', 'hostKey'];
const APP_KEYS = ['name', 'node', 'parts', 'ping', 'drill', ...POLICY_KEYS];
const PART_KEYS = ['file', 'run', 'okExitCodes'];
const FINGERPRINT_PATTERN = /^SHA256:[A-Za-z0-9+/]{43}$/;
const USER_PATTERN = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/;

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
    const code = (error as NodeJS.ErrnoException).code;
    throw new ConfigError([`${file}: cannot read the config file (${code === 'ENOENT' ? 'no such file' : code ?? String(error)})`]);
  }
  return parseConfig(text, file, env);
}

/** Given the text of a config file, validate it like loadConfig does. */
export function parseConfig(text: string, source: string, env: NodeJS.ProcessEnv = process.env): Config {
  const document = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (document.errors.length > 0) {
    throw new ConfigError(document.errors.map((error) => `${source}: not valid YAML: ${error.message.split('\n')[0]}`));
  }
  const raw: unknown = document.toJS() ?? {};
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError([`${source}: the config must be a mapping of keys (redis, repository, nodes, apps, …)`]);
  }

  const problems: string[] = [];
  // Convict's own messages for a section of the wrong type name keys inside it; say it plainly.
  const sections = raw as Record<string, unknown>;
  for (const [key, spec] of Object.entries(configSchema)) {
    const isSection = !('doc' in spec);
    if (!isSection || !(key in sections)) continue;
    if (sections[key] === null) delete sections[key]; // `defaults:` with every line commented out
    else if (!isMapping(sections[key])) problems.push(`${key}: must be a mapping of keys, got ${Array.isArray(sections[key]) ? 'a list' : `a ${typeof sections[key]}`}`);
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const store = convict(configSchema, { env, args: [] });
  try {
    store.load(raw);
    store.validate({ allowed: 'strict' });
  } catch (error) {
    problems.push(...(error as Error).message.split('\n').map(rewriteConvictMessage));
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const properties = store.getProperties();
  const defaults = toPolicy(properties.defaults as Record<string, unknown>);
  const sshUser = properties.ssh.user;
  const nodes = checkNodes(properties.nodes, sshUser, problems);
  const apps = checkApps(properties.apps, defaults, nodes, problems);
  if (problems.length > 0) throw new ConfigError(problems);

  return deepFreeze({
    source,
    redis: { url: properties.redis.url, prefix: properties.redis.prefix },
    repository: path.resolve(properties.repository),
    ssh: {
      user: sshUser,
      identityFile: properties.ssh.identityFile,
      knownHosts: properties.ssh.knownHosts,
      connectTimeoutMs: parseDuration(properties.ssh.connectTimeout),
      keepaliveIntervalMs: parseDuration(properties.ssh.keepaliveInterval),
      keepaliveCountMax: properties.ssh.keepaliveCountMax,
    },
    concurrency: {
      global: properties.concurrency.global,
      perNode: properties.concurrency.perNode,
      perWorker: properties.concurrency.perWorker,
      busyNodeDelayMs: parseDuration(properties.concurrency.busyNodeDelay),
      lockDurationMs: parseDuration(properties.concurrency.lockDuration),
      stalledIntervalMs: parseDuration(properties.concurrency.stalledInterval),
    },
    shutdownGraceMs: parseDuration(properties.shutdownGrace),
    log: { level: properties.log.level },
    defaults,
    retention: { sweepSchedule: properties.retention.sweepSchedule, incomingMarginMs: parseDuration(properties.retention.incomingMargin) },
    notify: {
      webhook: properties.notify.webhook,
      timeoutMs: parseDuration(properties.notify.timeout),
      staleCheckIntervalMs: parseDuration(properties.notify.staleCheckInterval),
    },
    dashboard: { ...properties.dashboard },
    nodes,
    apps,
  });
}

/**
 * Given a loaded Config, check the SSH files a worker needs: the identity file
 * exists, is readable and is not readable by group or others; the known_hosts
 * file exists when some node has no pinned key. Throw ConfigError otherwise.
 */
export function checkSshFiles(config: Config): void {
  const problems = identityFileProblems(config.ssh.identityFile);
  const unpinned = config.nodes.filter((node) => node.hostKey === undefined);
  if (unpinned.length > 0) {
    try {
      accessSync(config.ssh.knownHosts, constants.R_OK);
    } catch (error) {
      problems.push(
        `ssh.knownHosts: cannot read ${config.ssh.knownHosts} (${(error as NodeJS.ErrnoException).code ?? error}), ` +
          `and node "${unpinned[0]!.name}" has no pinned hostKey`,
      );
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
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

function rewriteConvictMessage(line: string): string {
  const undeclared = /^configuration param '(.+)' not declared in the schema$/.exec(line);
  if (undeclared) return `${undeclared[1]}: unknown key`;
  return line.replace(/: value was (.*)$/, (_match, value: string) => (value.includes('[Sensitive]') ? '' : `, got ${value}`));
}

function toPolicy(values: Record<string, unknown>): AppPolicy {
  return {
    schedule: values.schedule as string,
    timezone: values.timezone as string,
    keep: values.keep as number,
    timeoutMs: parseDuration(values.timeout),
    stallTimeoutMs: parseDuration(values.stallTimeout),
    attempts: values.attempts as number,
    backoffMs: parseDuration(values.backoff),
    maxBytes: parseSize(values.maxBytes),
    staleAfterMs: values.staleAfter === null || values.staleAfter === undefined ? null : parseDuration(values.staleAfter),
    shrinkWarn: values.shrinkWarn as number,
  };
}

/** Run `check` on `value`; on failure record `field: message` and return false. */
function attempt(problems: string[], field: string, check: () => void): boolean {
  try {
    check();
    return true;
  } catch (error) {
    problems.push(`${field}: ${(error as Error).message}`);
    return false;
  }
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function rejectUnknownKeys(item: Record<string, unknown>, allowed: string[], field: string, problems: string[]): void {
  for (const key of Object.keys(item)) {
    if (!allowed.includes(key)) problems.push(`${field}.${key}: unknown key (allowed: ${allowed.join(', ')})`);
  }
}

function checkNodes(items: unknown[], sshUser: string, problems: string[]): NodeAddress[] {
  const nodes: NodeAddress[] = [];
  const seen = new Set<string>();
  items.forEach((item, index) => {
    const field = `nodes[${index}]`;
    if (!isMapping(item)) {
      problems.push(`${field}: must be a mapping with name and host`);
      return;
    }
    rejectUnknownKeys(item, NODE_KEYS, field, problems);
    const { name, host, port = 22, user = sshUser, hostKey } = item;
    let ok = attempt(problems, `${field}.name`, () => checkName(name));
    if (ok && seen.has(name as string)) {
      problems.push(`${field}.name: duplicate node name "${name}"`);
      ok = false;
    }
    if (typeof name === 'string') seen.add(name);
    ok = attempt(problems, `${field}.host`, () => {
      if (typeof host !== 'string' || !/^[A-Za-z0-9.:_-]+$/.test(host)) {
        throw new Error(`must be a host name or IP address, got ${JSON.stringify(host)}`);
      }
    }) && ok;
    ok = attempt(problems, `${field}.port`, () => {
      if (!Number.isInteger(port) || (port as number) < 1 || (port as number) > 65535) {
        throw new Error(`must be a port number from 1 to 65535, got ${JSON.stringify(port)}`);
      }
    }) && ok;
    ok = attempt(problems, `${field}.user`, () => {
      if (typeof user !== 'string' || !USER_PATTERN.test(user)) throw new Error(`must be a user name, got ${JSON.stringify(user)}`);
    }) && ok;
    ok = attempt(problems, `${field}.hostKey`, () => {
      if (hostKey !== undefined && (typeof hostKey !== 'string' || !FINGERPRINT_PATTERN.test(hostKey))) {
        throw new Error(`must be an OpenSSH fingerprint like SHA256:<43 base64 characters> (see bysu keyscan), got ${JSON.stringify(hostKey)}`);
      }
    }) && ok;
    if (ok) {
      const node: NodeAddress = { name: name as string, host: host as string, port: port as number, user: user as string };
      if (hostKey !== undefined) node.hostKey = hostKey as string;
      nodes.push(node);
    }
  });
  return nodes;
}

/** Given an app's raw override values, check each like convict checks `defaults`. */
function checkPolicyOverrides(item: Record<string, unknown>, field: string, problems: string[]): boolean {
  const checks: Record<string, (value: unknown) => void> = {
    schedule: (value) => checkCron(value, typeof item.timezone === 'string' ? item.timezone : 'UTC'),
    timezone: checkTimezone,
    keep: checkPositiveInteger,
    timeout: parseDuration,
    stallTimeout: parseDuration,
    attempts: checkPositiveInteger,
    backoff: parseDuration,
    maxBytes: parseSize,
    staleAfter: parseDuration,
    shrinkWarn: checkFraction,
  };
  let ok = true;
  for (const key of POLICY_KEYS) {
    if (key in item) ok = attempt(problems, `${field}.${key}`, () => checks[key]!(item[key])) && ok;
  }
  return ok;
}

function checkPositiveInteger(value: unknown): void {
  if (!Number.isSafeInteger(value) || (value as number) < 1) {
    throw new Error(`must be a whole number of at least 1, got ${JSON.stringify(value)}`);
  }
}

function checkParts(parts: unknown, field: string, problems: string[]): PartConfig[] | undefined {
  if (!Array.isArray(parts) || parts.length === 0) {
    problems.push(`${field}: must be a non-empty list of parts (file and run)`);
    return undefined;
  }
  const result: PartConfig[] = [];
  const files = new Set<string>();
  let ok = true;
  parts.forEach((part, index) => {
    const partField = `${field}[${index}]`;
    if (!isMapping(part)) {
      problems.push(`${partField}: must be a mapping with file and run`);
      ok = false;
      return;
    }
    rejectUnknownKeys(part, PART_KEYS, partField, problems);
    const { file, run, okExitCodes = [0] } = part;
    let partOk = attempt(problems, `${partField}.file`, () => checkPartFileName(file));
    if (partOk && files.has(file as string)) {
      problems.push(`${partField}.file: duplicate file name "${file}" in this app`);
      partOk = false;
    }
    if (typeof file === 'string') files.add(file);
    partOk = attempt(problems, `${partField}.run`, () => checkCommand(run)) && partOk;
    partOk = attempt(problems, `${partField}.okExitCodes`, () => {
      const valid = Array.isArray(okExitCodes) && okExitCodes.length > 0 &&
        okExitCodes.every((code) => Number.isInteger(code) && code >= 0 && code <= 255);
      if (!valid) throw new Error(`must be a non-empty list of exit codes from 0 to 255, got ${JSON.stringify(okExitCodes)}`);
    }) && partOk;
    if (partOk) result.push({ file: file as string, run: run as string, okExitCodes: [...new Set(okExitCodes as number[])] });
    ok = ok && partOk;
  });
  return ok ? result : undefined;
}

function checkApps(items: unknown[], defaults: AppPolicy, nodes: NodeAddress[], problems: string[]): AppConfig[] {
  const apps: AppConfig[] = [];
  const seen = new Set<string>();
  items.forEach((item, index) => {
    const field = `apps[${index}]`;
    if (!isMapping(item)) {
      problems.push(`${field}: must be a mapping with name, node and parts`);
      return;
    }
    rejectUnknownKeys(item, APP_KEYS, field, problems);
    let ok = attempt(problems, `${field}.name`, () => checkName(item.name));
    if (ok && seen.has(item.name as string)) {
      problems.push(`${field}.name: duplicate app name "${item.name}"`);
      ok = false;
    }
    if (typeof item.name === 'string') seen.add(item.name);
    if (!nodes.some((node) => node.name === item.node)) {
      problems.push(
        typeof item.node === 'string' ? `${field}.node: unknown node "${item.node}"` : `${field}.node: must name a configured node, got ${JSON.stringify(item.node)}`,
      );
      ok = false;
    }
    ok = checkPolicyOverrides(item, field, problems) && ok;
    if (item.ping !== undefined) ok = attempt(problems, `${field}.ping`, () => checkHttpUrl(item.ping)) && ok;
    const parts = checkParts(item.parts, `${field}.parts`, problems);
    const drill = item.drill === undefined ? undefined : checkDrill(item.drill, `${field}.drill`, nodes, parts ?? [], item.timezone, problems);
    if (item.drill !== undefined && drill === undefined) ok = false;
    if (!ok || !parts) return;
    apps.push({
      name: item.name as string,
      node: item.node as string,
      parts,
      ...applyOverrides(defaults, item),
      ...(item.ping !== undefined ? { ping: item.ping as string } : {}),
      ...(drill ? { drill } : {}),
    });
  });
  return apps;
}

/** Given an app's raw `drill`, check it (node, schedule, steps with stdin naming a part, expect a regex). */
function checkDrill(raw: unknown, field: string, nodes: NodeAddress[], parts: PartConfig[], timezone: unknown, problems: string[]): DrillConfig | undefined {
  if (!isMapping(raw)) {
    problems.push(`${field}: must be a mapping with node and steps`);
    return undefined;
  }
  const before = problems.length;
  rejectUnknownKeys(raw, DRILL_KEYS, field, problems);
  if (!nodes.some((node) => node.name === raw.node)) {
    problems.push(typeof raw.node === 'string' ? `${field}.node: unknown node "${raw.node}"` : `${field}.node: must name a configured node`);
  }
  const schedule = raw.schedule ?? DEFAULT_DRILL_SCHEDULE;
  attempt(problems, `${field}.schedule`, () => checkCron(schedule, typeof timezone === 'string' ? timezone : 'UTC'));
  const steps: DrillStep[] = [];
  if (!Array.isArray(raw.steps) || raw.steps.length === 0) {
    problems.push(`${field}.steps: must be a non-empty list of steps (run, and optionally stdin and expect)`);
  } else {
    raw.steps.forEach((step, index) => {
      const stepField = `${field}.steps[${index}]`;
      if (!isMapping(step)) {
        problems.push(`${stepField}: must be a mapping with run`);
        return;
      }
      rejectUnknownKeys(step, DRILL_STEP_KEYS, stepField, problems);
      attempt(problems, `${stepField}.run`, () => checkCommand(step.run));
      if (step.stdin !== undefined && parts.length > 0 && !parts.some((part) => part.file === step.stdin)) {
        problems.push(`${stepField}.stdin: ${JSON.stringify(step.stdin)} is not a part of this app (parts: ${parts.map((part) => part.file).join(', ')})`);
      }
      if (step.expect !== undefined) {
        attempt(problems, `${stepField}.expect`, () => {
          if (typeof step.expect !== 'string') throw new Error(`must be a regular expression, got ${JSON.stringify(step.expect)}`);
          try {
            new RegExp(step.expect, 'm');
          } catch (error) {
            throw new Error(`not a valid regular expression: ${(error as Error).message}`);
          }
        });
      }
      steps.push({ run: step.run as string, ...(step.stdin !== undefined ? { stdin: step.stdin as string } : {}), ...(step.expect !== undefined ? { expect: step.expect as string } : {}) });
    });
  }
  if (steps.length > 0 && !steps.some((step) => step.stdin !== undefined)) {
    // A drill that reads nothing of the snapshot proves nothing about it.
    problems.push(`${field}.steps: at least one step must restore a part of the snapshot (stdin: <part file>)`);
  }
  if (problems.length > before) return undefined;
  return { node: raw.node as string, schedule: schedule as string, steps };
}

/** Given the defaults and an app's (already checked) raw keys, return the app's policy. */
function applyOverrides(defaults: AppPolicy, item: Record<string, unknown>): AppPolicy {
  const pick = <T>(key: string, parse: (value: unknown) => T, fallback: T): T => (item[key] === undefined ? fallback : parse(item[key]));
  const same = (value: unknown) => value as never;
  return {
    schedule: pick('schedule', same, defaults.schedule),
    timezone: pick('timezone', same, defaults.timezone),
    keep: pick('keep', same, defaults.keep),
    timeoutMs: pick('timeout', parseDuration, defaults.timeoutMs),
    stallTimeoutMs: pick('stallTimeout', parseDuration, defaults.stallTimeoutMs),
    attempts: pick('attempts', same, defaults.attempts),
    backoffMs: pick('backoff', parseDuration, defaults.backoffMs),
    maxBytes: pick('maxBytes', parseSize, defaults.maxBytes),
    staleAfterMs: pick<number | null>('staleAfter', parseDuration, defaults.staleAfterMs),
    shrinkWarn: pick('shrinkWarn', same, defaults.shrinkWarn),
  };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
