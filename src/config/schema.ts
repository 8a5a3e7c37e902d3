/**
 * bysu.yaml, declared once: every key with its format, default, environment
 * variable and doc, the items of `nodes` and `apps` (with their parts and
 * drill) included. The Config type, the checks and their messages, the
 * defaults → app merge, the convict schema and the JSON Schema
 * (`bysu config schema`) all come from here; load.ts adds only the checks
 * that look across keys.
 */
import { inherited, key, list, mapping, type OutputOf } from './declare.ts';
import {
  absolutePath, bandwidth, command, cron, duration, environmentName, exitCodes, fingerprint, fraction, host, httpUrl, listenPort, mailAddress,
  mailAddresses, mirrorApps, name, oneOf, optionalDuration, optionalHttpUrl, partFile, port, positiveInteger, prefix, redisUrl, regularExpression, size, text,
  timerDuration, timezone, userName, workerCount,
} from './formats.ts';

export const DEFAULT_DRILL_SCHEDULE = '0 6 * * 0';
/**
 * Saturday 12:00: as far from the nightly window (snapshots at 03:00, the
 * retention sweep at 04:30 by default) and from the drills (Sunday 06:00) as
 * a weekly run gets; at the default bound, 15 hours before the next night
 * read about 2.6 TiB.
 */
export const DEFAULT_VERIFY_SCHEDULE = '0 12 * * 6';

/** What each app inherits from `defaults` and may override: declared once for both. */
export const policyKeys = {
  schedule: key({ doc: 'Cron pattern (5 fields, or 6 with seconds first).', format: cron, default: '0 3 * * *' }),
  timezone: key({ doc: 'Time zone of the schedule.', format: timezone, default: 'UTC' }),
  keep: key({ doc: 'Complete snapshots kept per app.', format: positiveInteger, default: 3 }),
  timeout: key({ doc: 'Time allowed for a whole snapshot (or drill), every wait for the node included.', format: timerDuration, default: '2h', as: 'timeoutMs' }),
  stallTimeout: key({ doc: 'No byte received for this long aborts the attempt.', format: timerDuration, default: '5m', as: 'stallTimeoutMs' }),
  attempts: key({ doc: 'Attempts before a snapshot job fails for the night.', format: positiveInteger, default: 4 }),
  backoff: key({ doc: 'First retry delay, doubling after each failure.', format: duration, default: '1m', as: 'backoffMs' }),
  maxBytes: key({ doc: 'A snapshot larger than this is aborted.', format: size, default: '50GiB' }),
  staleAfter: key({
    doc: 'An app whose newest snapshot is older than this is stale (null: 1.5 × the schedule\'s longest interval).',
    format: optionalDuration,
    default: null,
    as: 'staleAfterMs',
  }),
  shrinkWarn: key({ doc: 'A snapshot smaller than this fraction of the previous one commits with a warning (0 turns it off).', format: fraction, default: 0.5 }),
};

const nodeItem = mapping('A machine BYSU logs in to over SSH.', {
  name: key({ doc: 'Name of the node, unique; apps refer to it.', format: name }),
  host: key({ doc: 'Host name or IP address.', format: host }),
  port: key({ doc: 'SSH port.', format: port, default: 22 }),
  user: key({ doc: 'Login user on this node.', format: userName, inherit: 'ssh.user' }),
  hostKey: key({ doc: 'Pinned host key fingerprint (SHA256:…, see bysu keyscan); else ssh.knownHosts must know the host.', format: fingerprint, optional: true }),
}, { label: 'name' });

const partItem = mapping('One file of a snapshot: the stdout of a command on the node.', {
  file: key({ doc: 'File name in the snapshot, unique in the app; not manifest.json or SHA256SUMS.', format: partFile }),
  run: key({ doc: 'The command whose stdout becomes the file (at most 128 KiB; longer: a script on the node).', format: command }),
  okExitCodes: key({ doc: 'Exit codes that count as success (GNU tar exits 1 when a file changed while read).', format: exitCodes, default: [0] }),
}, { label: 'file' });

const drillStep = mapping('One command of a restore drill.', {
  run: key({ doc: 'The command, run on the drill node.', format: command }),
  stdin: key({ doc: 'A part file of the snapshot streamed into the command\'s stdin (checked against SHA256SUMS).', format: partFile, optional: true }),
  expect: key({ doc: 'A regular expression (multiline) the command\'s stdout must match.', format: regularExpression, optional: true }),
});

const drill = mapping('A restore drill of the newest snapshot, on a schedule.', {
  node: key({ doc: 'Node the drill runs on: a scratch target, not the app\'s own node unless you mean it.', format: name }),
  schedule: key({ doc: 'Cron pattern of the drill, in the app\'s time zone.', format: cron, default: DEFAULT_DRILL_SCHEDULE }),
  steps: list('Commands run in order; any non-zero exit or failed expect fails the drill.', drillStep, {
    noun: 'steps (run, and optionally stdin and expect)',
    nonEmpty: true,
  }),
}, { optional: true });

const appItem = mapping('An application to back up.', {
  name: key({ doc: 'Name of the app, unique; its directory in the repository.', format: name }),
  node: key({ doc: 'Node the parts are taken from.', format: name }),
  parts: list('Files of a snapshot, taken in order over one SSH connection.', partItem, { noun: 'parts (file and run)', nonEmpty: true }),
  ping: key({ doc: 'healthchecks-style URL: GET on success, GET <url>/fail on final failure.', format: httpUrl, optional: true }),
  drill,
  ...inherited(policyKeys, 'defaults'),
}, { label: 'name' });

const email = mapping('Email alerts over SMTP: the events of the webhook, once per change of state, delivered independently of it.', {
  host: key({ doc: 'The SMTP server: host name or IP address.', format: host }),
  port: key({ doc: 'SMTP port (default: 587 for starttls, 465 for tls, 25 for none).', format: port, optional: true }),
  security: key({
    doc: 'starttls: connect, then STARTTLS, and refuse a server that does not offer it; tls: TLS from the first byte (SMTPS); ' +
      'none: no encryption at all (a relay on this machine; refused with a user). The server\'s certificate is always verified.',
    format: oneOf('smtp-security', ['starttls', 'tls', 'none']),
    default: 'starttls',
  }),
  caFile: key({ doc: 'PEM file of the CA (or the self-signed certificate) that signs the server\'s certificate, trusted instead of the system\'s CAs.', format: absolutePath, optional: true }),
  user: key({ doc: 'SMTP login user (absent: no login).', format: text, optional: true }),
  passwordEnv: key({
    doc: 'Name of the environment variable that holds the SMTP password (never the password itself); required with user.',
    format: environmentName,
    optional: true,
    sensitive: true,
  }),
  from: key({ doc: 'The sender: bysu@example.com or "BYSU <bysu@example.com>".', format: mailAddress }),
  to: key({ doc: 'The recipients: one address, or a list of them.', format: mailAddresses }),
  dashboardUrl: key({ doc: 'The dashboard\'s URL as the recipients reach it (behind its TLS proxy); each email links the app\'s page under it.', format: httpUrl, optional: true }),
}, { optional: true });

const mirrorItem = mapping('Another BYSU whose snapshots this one copies: an offsite copy, pulled over the source\'s read-only /api, which the source cannot reach to delete.', {
  name: key({ doc: 'Name of the source, unique; shown beside its apps.', format: name }),
  url: key({ doc: 'The source dashboard\'s URL as this machine reaches it (through its TLS proxy, or an SSH tunnel).', format: httpUrl }),
  tokenEnv: key({ doc: 'Name of the environment variable that holds the source\'s dashboard.apiToken (never the token itself).', format: environmentName }),
  apps: key({ doc: 'Apps copied: all (every app the source lists), or a list of names.', format: mirrorApps, default: 'all' }),
  schedule: key({ doc: 'Cron pattern of the copy runs, in defaults.timezone.', format: cron, default: '0 * * * *' }),
  keep: key({ doc: 'Copies kept per app here (default: the largest keep the source has said, never less than applied before, at most twice the first), and besides them the newest copy of each of the last keep arrival days and the first to arrive of each of the last keep snapshot days, so that a flood cannot push the good copies out; snapshots gone on the source are never deleted here because of that.', format: positiveInteger, optional: true }),
  maxLag: key({
    doc: 'A mirrored app is STALE when a source snapshot has waited longer than this to be copied, or the source has not listed it (or not answered) for this long.',
    format: timerDuration,
    default: '12h',
    as: 'maxLagMs',
  }),
  maxRate: key({ doc: 'The most this mirror receives per second, all its downloads together (a size: 10MiB; 0: no bound).', format: bandwidth, default: 0 }),
  concurrency: key({ doc: 'Snapshots copied from this source at once.', format: positiveInteger, default: 1 }),
  stallTimeout: key({ doc: 'No byte received for this long aborts a download (the next attempt resumes it).', format: timerDuration, default: '2m', as: 'stallTimeoutMs' }),
  attempts: key({ doc: 'Attempts of one copy run before it fails (the next scheduled run tries again).', format: positiveInteger, default: 3 }),
}, { label: 'name' });

/** The whole file. */
export const configDeclaration = mapping('BYSU configuration (bysu.yaml).', {
  redis: mapping('The Redis that holds the queues.', {
    url: key({ doc: 'Redis URL (a password in it is never printed).', format: redisUrl, default: 'redis://127.0.0.1:6379/0', env: 'BYSU_REDIS_URL', sensitive: true }),
    prefix: key({ doc: 'BullMQ key prefix; installs sharing one Redis need different ones.', format: prefix, default: 'bysu', env: 'BYSU_REDIS_PREFIX' }),
  }),
  repository: key({ doc: 'Directory that holds the snapshots (create it with bysu init).', format: absolutePath, default: '/var/lib/bysu', env: 'BYSU_REPOSITORY' }),
  ssh: mapping('How BYSU logs in to the nodes.', {
    user: key({ doc: 'Login user on the nodes, unless a node sets its own.', format: userName, default: 'bysu', env: 'BYSU_SSH_USER' }),
    identityFile: key({ doc: 'Private key BYSU logs in with; not readable by group or others.', format: absolutePath, default: '/etc/bysu/id_ed25519', env: 'BYSU_SSH_IDENTITY' }),
    knownHosts: key({ doc: 'OpenSSH known_hosts file ([host]:port and hashed entries too).', format: absolutePath, default: '/etc/bysu/known_hosts', env: 'BYSU_SSH_KNOWN_HOSTS' }),
    connectTimeout: key({ doc: 'Time allowed for TCP connect plus SSH handshake and login.', format: timerDuration, default: '20s', env: 'BYSU_SSH_CONNECT_TIMEOUT', as: 'connectTimeoutMs' }),
    keepaliveInterval: key({ doc: 'SSH keepalive interval.', format: timerDuration, default: '15s', as: 'keepaliveIntervalMs' }),
    keepaliveCountMax: key({ doc: 'Unanswered keepalives before the connection counts as dead.', format: positiveInteger, default: 3 }),
  }),
  concurrency: mapping('How many snapshots run at once.', {
    global: key({ doc: 'Snapshot jobs running at once, all workers together.', format: positiveInteger, default: 16, env: 'BYSU_CONCURRENCY_GLOBAL' }),
    perNode: key({ doc: 'Snapshots at once against one node, all workers together.', format: positiveInteger, default: 1, env: 'BYSU_CONCURRENCY_PER_NODE' }),
    perWorker: key({ doc: 'Snapshots at once in one worker process.', format: positiveInteger, default: 4, env: 'BYSU_CONCURRENCY_PER_WORKER' }),
    busyNodeDelay: key({
      doc: 'How long a job whose node is at its perNode limit waits before trying again (plus up to as much jitter).',
      format: timerDuration,
      default: '5s',
      env: 'BYSU_BUSY_NODE_DELAY',
      as: 'busyNodeDelayMs',
    }),
    lockDuration: key({ doc: 'BullMQ job lock; a worker that does not renew it (dead, frozen) loses the job.', format: timerDuration, default: '30s', as: 'lockDurationMs' }),
    stalledInterval: key({ doc: 'How often workers look for stalled jobs (of dead workers).', format: timerDuration, default: '30s', as: 'stalledIntervalMs' }),
  }),
  shutdownGrace: key({
    doc: 'On SIGTERM, how long running snapshots may take to finish before they go back to the queue.',
    format: timerDuration,
    default: '1m',
    env: 'BYSU_SHUTDOWN_GRACE',
    as: 'shutdownGraceMs',
  }),
  up: mapping('How bysu up runs its parts.', {
    snapshotWorkers: key({
      doc: 'Snapshot worker processes bysu up runs (1: in its own process); 0 = one per CPU core, but no more than concurrency.global / concurrency.perWorker (rounded up). Read at start.',
      format: workerCount,
      default: 0,
      env: 'BYSU_UP_SNAPSHOT_WORKERS',
    }),
  }),
  log: mapping('Logging.', {
    level: key({ doc: 'pino log level.', format: oneOf('log-level', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']), default: 'info', env: 'BYSU_LOG_LEVEL' }),
  }),
  defaults: mapping('What every app inherits unless it sets its own.', policyKeys),
  retention: mapping('Deleting old snapshots.', {
    sweepSchedule: key({ doc: 'Cron pattern of the daily retention sweep over every app.', format: cron, default: '30 4 * * *', env: 'BYSU_RETENTION_SWEEP' }),
    incomingMargin: key({ doc: 'An attempt left in .incoming is removed once older than the app\'s timeout plus this.', format: duration, default: '1h', as: 'incomingMarginMs' }),
  }),
  verify: mapping('Reading every kept snapshot again against its SHA256SUMS on a schedule (bysu worker verify): bit rot is found before a restore needs the file.', {
    schedule: key({ doc: 'Cron pattern of the verification of every app, in defaults.timezone (default: weekly, Saturday 12:00, away from the nightly snapshots).', format: cron, default: DEFAULT_VERIFY_SCHEDULE, env: 'BYSU_VERIFY_SCHEDULE' }),
    concurrency: key({ doc: 'Apps verified at once, all verify workers together.', format: positiveInteger, default: 1 }),
    maxBytesPerSecond: key({
      doc: 'The most one app\'s verification reads from the repository per second (a size: 50MiB is 50 MiB/s; 0: no bound).',
      format: bandwidth,
      default: '50MiB',
      env: 'BYSU_VERIFY_MAX_BYTES_PER_SECOND',
    }),
  }),
  notify: mapping('Alerts.', {
    webhook: key({
      doc: 'URL that gets a JSON POST when an app fails for good, goes stale, recovers, or has a damaged snapshot ("" = none).',
      format: optionalHttpUrl,
      default: '',
      env: 'BYSU_NOTIFY_WEBHOOK',
      sensitive: true,
    }),
    timeout: key({ doc: 'Time allowed for one webhook or ping request, or one email delivery.', format: timerDuration, default: '10s', as: 'timeoutMs' }),
    staleCheckInterval: key({
      doc: 'How often the scheduler checks: apps gone stale, failing apps whose alert was not delivered, job schedulers Redis lost.',
      format: timerDuration,
      default: '1m',
      as: 'staleCheckIntervalMs',
    }),
    email,
  }),
  dashboard: mapping('The web dashboard.', {
    host: key({ doc: 'Address the dashboard listens on.', format: text, default: '127.0.0.1', env: 'BYSU_DASHBOARD_HOST' }),
    port: key({ doc: 'Port of the dashboard (0: any free port; the log says which).', format: listenPort, default: 3000, env: 'BYSU_DASHBOARD_PORT' }),
    user: key({ doc: 'Basic-auth user of the dashboard.', format: text, default: 'admin', env: 'BYSU_DASHBOARD_USER' }),
    password: key({ doc: 'Basic-auth password; required when host is not loopback.', format: text, default: '', env: 'BYSU_DASHBOARD_PASSWORD', sensitive: true }),
    apiToken: key({ doc: 'Read-only bearer token for /api.', format: text, default: '', env: 'BYSU_API_TOKEN', sensitive: true }),
  }),
  nodes: list('Machines BYSU logs in to.', nodeItem, { noun: 'nodes (name and host)' }),
  apps: list('Applications to back up.', appItem, { noun: 'apps (name, node and parts)' }),
  mirrors: list('Other BYSU instances whose snapshots this one copies (offsite copies).', mirrorItem, { noun: 'mirrors (name, url and tokenEnv)' }),
});

/** Keys an app may set to override `defaults`. */
export const POLICY_KEYS = Object.keys(policyKeys) as (keyof typeof policyKeys)[];

/** What each app inherits from `defaults` and may override (durations in ms, sizes in bytes). */
export type AppPolicy = OutputOf<typeof policyKeys>;
export type NodeConfig = OutputOf<typeof nodeItem.keys>;
export type PartConfig = OutputOf<typeof partItem.keys>;
export type DrillStep = OutputOf<typeof drillStep.keys>;
export type DrillConfig = OutputOf<typeof drill.keys>;
export type EmailConfig = OutputOf<typeof email.keys>;
export type AppConfig = OutputOf<typeof appItem.keys>;
export type MirrorConfig = OutputOf<typeof mirrorItem.keys>;
/** The loaded configuration; `source` is the file it was loaded from. */
export type Config = OutputOf<typeof configDeclaration.keys> & { source: string };
