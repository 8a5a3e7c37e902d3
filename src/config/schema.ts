/**
 * The convict schema of bysu.yaml: every process-level key with its doc,
 * format, default and environment variable. `nodes` and `apps` are lists
 * whose items load.ts checks one by one, because their rules refer to each
 * other (an app's node must exist) and the messages must name the item.
 */
import convict from 'convict';
import { checkCron, checkFraction, checkHttpUrl, checkTimezone, parseDuration, parseSize } from './formats.ts';

/** Register BYSU's formats with convict once; the messages omit the value, which convict appends. */
function registerFormats(): void {
  const withoutValue = (check: (value: unknown) => void) => (value: unknown) => {
    try {
      check(value);
    } catch (error) {
      throw new Error((error as Error).message.replace(/, got .*$/, ''));
    }
  };
  convict.addFormats({
    'bysu-duration': { validate: withoutValue(parseDuration), coerce: (value: string) => value },
    'bysu-optional-duration': {
      validate: withoutValue((value) => value === null || parseDuration(value)),
      coerce: (value: string) => value,
    },
    'bysu-size': { validate: withoutValue(parseSize), coerce: (value: string) => value },
    'bysu-cron': { validate: withoutValue((value) => checkCron(value)), coerce: (value: string) => value },
    'bysu-timezone': { validate: withoutValue(checkTimezone), coerce: (value: string) => value },
    'bysu-positive-int': {
      validate(value: unknown) {
        if (!Number.isSafeInteger(value) || (value as number) < 1) throw new Error('must be a whole number of at least 1');
      },
      coerce: (value: string) => (/^\d+$/.test(value) ? Number(value) : value),
    },
    'bysu-redis-url': {
      validate(value: unknown) {
        if (typeof value !== 'string' || !/^rediss?:\/\/[^\s]+$/.test(value)) {
          throw new Error('must be a redis:// or rediss:// URL');
        }
      },
      coerce: (value: string) => value,
    },
    'bysu-absolute-path': {
      validate(value: unknown) {
        if (typeof value !== 'string' || !value.startsWith('/')) throw new Error('must be an absolute path');
      },
      coerce: (value: string) => value,
    },
    'bysu-prefix': {
      validate(value: unknown) {
        if (typeof value !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(value)) {
          throw new Error('must be 1 to 64 letters, digits, ".", "_" or "-"');
        }
      },
      coerce: (value: string) => value,
    },
    'bysu-fraction': { validate: withoutValue(checkFraction), coerce: (value: string) => Number(value) },
    'bysu-optional-url': {
      validate: withoutValue((value) => {
        if (value !== '') checkHttpUrl(value);
      }),
      coerce: (value: string) => value,
    },
    'bysu-list': {
      validate(value: unknown) {
        if (!Array.isArray(value)) throw new Error('must be a list');
      },
      coerce: (value: string) => value,
    },
  });
}

registerFormats();

export const configSchema = {
  redis: {
    url: {
      doc: 'Redis that holds the queues.',
      format: 'bysu-redis-url',
      default: 'redis://127.0.0.1:6379/0',
      env: 'BYSU_REDIS_URL',
      sensitive: true,
    },
    prefix: {
      doc: 'BullMQ key prefix; several installs or test runs can share one Redis.',
      format: 'bysu-prefix',
      default: 'bysu',
      env: 'BYSU_REDIS_PREFIX',
    },
  },
  repository: {
    doc: 'Directory that holds the snapshots.',
    format: 'bysu-absolute-path',
    default: '/var/lib/bysu',
    env: 'BYSU_REPOSITORY',
  },
  ssh: {
    user: { doc: 'Login user on the nodes, unless a node sets its own.', format: String, default: 'bysu', env: 'BYSU_SSH_USER' },
    identityFile: {
      doc: 'Private key BYSU logs in with.',
      format: 'bysu-absolute-path',
      default: '/etc/bysu/id_ed25519',
      env: 'BYSU_SSH_IDENTITY',
    },
    knownHosts: {
      doc: 'OpenSSH known_hosts file ([host]:port and hashed entries too).',
      format: 'bysu-absolute-path',
      default: '/etc/bysu/known_hosts',
      env: 'BYSU_SSH_KNOWN_HOSTS',
    },
    connectTimeout: {
      doc: 'Time allowed for TCP connect plus SSH handshake and login.',
      format: 'bysu-duration',
      default: '20s',
      env: 'BYSU_SSH_CONNECT_TIMEOUT',
    },
    keepaliveInterval: {
      doc: 'SSH keepalive interval; after keepaliveCountMax unanswered ones the connection counts as dead.',
      format: 'bysu-duration',
      default: '15s',
    },
    keepaliveCountMax: { doc: 'Unanswered keepalives before the connection counts as dead.', format: 'bysu-positive-int', default: 3 },
  },
  concurrency: {
    global: { doc: 'Snapshot jobs running at once, all workers together.', format: 'bysu-positive-int', default: 16, env: 'BYSU_CONCURRENCY_GLOBAL' },
    perNode: { doc: 'Snapshots at once against one node, all workers together.', format: 'bysu-positive-int', default: 1, env: 'BYSU_CONCURRENCY_PER_NODE' },
    perWorker: { doc: 'Snapshots at once in one worker process.', format: 'bysu-positive-int', default: 4, env: 'BYSU_CONCURRENCY_PER_WORKER' },
    lockDuration: {
      doc: 'BullMQ job lock; a worker that does not renew it (dead, frozen) loses the job to stalled-job recovery.',
      format: 'bysu-duration',
      default: '30s',
    },
    stalledInterval: { doc: 'How often workers look for stalled jobs (of dead workers).', format: 'bysu-duration', default: '30s' },
    busyNodeDelay: {
      doc: 'How long a job whose node is at its perNode limit waits before trying again (plus up to as much jitter).',
      format: 'bysu-duration',
      default: '5s',
      env: 'BYSU_BUSY_NODE_DELAY',
    },
  },
  shutdownGrace: {
    doc: 'On SIGTERM, how long running snapshots may take to finish before they are handed back to the queue.',
    format: 'bysu-duration',
    default: '1m',
    env: 'BYSU_SHUTDOWN_GRACE',
  },
  log: {
    level: {
      doc: 'pino log level.',
      format: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      default: 'info',
      env: 'BYSU_LOG_LEVEL',
    },
  },
  defaults: {
    schedule: { doc: 'Cron pattern (5 fields, or 6 with seconds).', format: 'bysu-cron', default: '0 3 * * *' },
    timezone: { doc: 'Time zone of the schedule.', format: 'bysu-timezone', default: 'UTC' },
    keep: { doc: 'Complete snapshots kept per app.', format: 'bysu-positive-int', default: 3 },
    timeout: { doc: 'Time allowed for a whole snapshot.', format: 'bysu-duration', default: '2h' },
    stallTimeout: { doc: 'No byte received for this long aborts the attempt.', format: 'bysu-duration', default: '5m' },
    attempts: { doc: 'Attempts before a snapshot job fails for the night.', format: 'bysu-positive-int', default: 4 },
    backoff: { doc: 'First retry delay, doubling after each failure.', format: 'bysu-duration', default: '1m' },
    maxBytes: { doc: 'A snapshot larger than this is aborted.', format: 'bysu-size', default: '50GiB' },
    staleAfter: {
      doc: 'An app whose newest snapshot is older than this is stale (default 1.5 × the schedule interval).',
      format: 'bysu-optional-duration',
      default: null as string | null,
    },
    shrinkWarn: {
      doc: 'A snapshot smaller than this fraction of the median size of the kept snapshots commits with a warning (0 turns it off).',
      format: 'bysu-fraction',
      default: 0.5,
    },
  },
  retention: {
    sweepSchedule: {
      doc: 'Cron pattern of the daily retention sweep over every app.',
      format: 'bysu-cron',
      default: '30 4 * * *',
      env: 'BYSU_RETENTION_SWEEP',
    },
    incomingMargin: {
      doc: 'An attempt left in .incoming is removed once older than the app\'s timeout plus this.',
      format: 'bysu-duration',
      default: '1h',
    },
  },
  notify: {
    webhook: {
      doc: 'URL that gets a JSON POST when an app fails for good, goes stale, or recovers ("" = none).',
      format: 'bysu-optional-url',
      default: '',
      env: 'BYSU_NOTIFY_WEBHOOK',
      sensitive: true,
    },
    timeout: { doc: 'Time allowed for one webhook or ping request.', format: 'bysu-duration', default: '10s' },
    staleCheckInterval: { doc: 'How often the scheduler checks: apps gone stale, failing apps whose alert was not delivered, job schedulers Redis lost.', format: 'bysu-duration', default: '1m' },
  },
  dashboard: {
    host: { doc: 'Address the dashboard listens on.', format: String, default: '127.0.0.1', env: 'BYSU_DASHBOARD_HOST' },
    port: { doc: 'Port of the dashboard.', format: 'port', default: 3000, env: 'BYSU_DASHBOARD_PORT' },
    user: { doc: 'Basic-auth user of the dashboard.', format: String, default: 'admin', env: 'BYSU_DASHBOARD_USER' },
    password: {
      doc: 'Basic-auth password; required when host is not loopback.',
      format: String,
      default: '',
      env: 'BYSU_DASHBOARD_PASSWORD',
      sensitive: true,
    },
    apiToken: { doc: 'Read-only bearer token for /api.', format: String, default: '', env: 'BYSU_API_TOKEN', sensitive: true },
  },
  nodes: { doc: 'Cluster nodes (checked by load.ts).', format: 'bysu-list', default: [] as unknown[] },
  apps: { doc: 'Applications to back up (checked by load.ts).', format: 'bysu-list', default: [] as unknown[] },
};

/** Keys an app may set to override `defaults`. */
export const POLICY_KEYS = Object.keys(configSchema.defaults) as (keyof typeof configSchema.defaults)[];
