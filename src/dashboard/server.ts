/**
 * `bysu dashboard`: the overview of every app and node at / (and each app's
 * page at /apps/<app>) and Bull Board over the snapshot, retention, drill and
 * verify queues at /board/, both behind HTTP basic auth; /healthz, /metrics, and
 * the read-only /api behind a bearer token. It refuses to listen beyond
 * loopback without a password.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Redis } from 'ioredis';
import type { LiveConfig } from '../config/live.ts';
import type { Config } from '../config/load.ts';
import { toError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { CLOSE_BOUND_MS, closeConnection, createDashboardConnection, redactRedisUrl, settlesWithin } from '../queue/connection.ts';
import { openAllQueues, type AllQueues } from '../queue/open-queue.ts';
import { RedisHealth } from '../queue/redis-health.ts';
import { repositoryProblem } from '../repository/marker.ts';
import { collectStatus, type StatusReport } from '../status/app-status.ts';
import { BYSU_VERSION } from '../version.ts';
import { apiRouter } from './api.ts';
import { basicAuth, bearerAuth, checkDashboardExposure, loopbackHostOnly } from './auth.ts';
import { MetricsPage, metricsBoundMs, PING_TIMEOUT_MS, redisAnswers } from './metrics.ts';
import { SharedComputation } from './shared-computation.ts';
import { recentAttempts, renderAppPage, renderOverview } from './overview.ts';
import { NAME_PATTERN } from '../config/formats.ts';
import { listSnapshots } from '../repository/read.ts';

/** How long an app's page waits for its recent attempts from Redis before it says Redis did not answer. */
const PAGE_REDIS_BOUND_MS = 5000;

const UTC_TIME = { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23', timeZone: 'UTC', timeZoneName: 'short' } as const;
/** Bull Board's times: today's as `16:40:12 UTC`, this year's with the day, older ones with the year. */
const BOARD_DATE_FORMATS = {
  short: UTC_TIME,
  common: { month: 'short', day: 'numeric', ...UTC_TIME },
  full: { year: 'numeric', month: 'short', day: 'numeric', ...UTC_TIME },
} satisfies Record<string, Intl.DateTimeFormatOptions>;

/** Where Bull Board is served. */
export const BOARD_PATH = '/board';

export interface RunningDashboard {
  /** The URL it listens on (with the real port when 0 was configured); Bull Board is at url + 'board/'. */
  url: string;
  close(): Promise<void>;
}

/**
 * Given the live config, Redis and the queues, return the Express app (no
 * listening). Every request reads the config as of its arrival: a reload
 * (a new password or token, an app added) applies to the next request.
 * The apps' states are computed once for the requests that arrive together
 * and kept KEEP_RESULTS_MS for the config they were computed with (shared by
 * /metrics and /api/apps); /metrics answers within its bound.
 */
export function createDashboardApp(live: LiveConfig, redis: Redis, queues: AllQueues, logger: Logger): express.Express {
  const current = () => live.current();
  const status = new SharedComputation<Config, StatusReport>(async (config) => ({ value: await collectStatus(config, redis), at: Date.now() }));
  const metrics = new MetricsPage(redis, [queues.snapshot, queues.retention, queues.drill, queues.verify, queues.mirror], status, logger);
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  // Without a password only loopback may be served: refuse other Host names (DNS rebinding).
  app.use((request, response, next) => {
    if (current().dashboard.password === '') loopbackHostOnly(request, response, next);
    else next();
  });

  app.get('/healthz', async (_request, response) => {
    const config = current();
    const [answered, repository] = await Promise.all([
      redisAnswers(redis, PING_TIMEOUT_MS),
      // An unmounted repository is as fatal as a dead Redis: no snapshot can be committed or read.
      repositoryProblem(config.repository).catch((error: unknown) => toError(error).message),
    ]);
    const ok = answered && repository === null;
    response.status(ok ? 200 : 503).json({ status: ok ? 'ok' : 'unavailable', redis: answered ? 'up' : 'down', repository: repository ?? 'ok', version: BYSU_VERSION });
  });

  app.get('/metrics', async (request, response) => {
    // Prometheus says how long it waits: answer inside that too, when it is shorter than our own bound.
    const { contentType, text } = await metrics.answer(current(), metricsBoundMs(request.get('x-prometheus-scrape-timeout-seconds')));
    response.type(contentType).send(text);
  });

  app.use('/api', bearerAuth(() => current().dashboard.apiToken), apiRouter(current, async (config) => (await status.get(config)).value, logger));

  // Bull Board lives under /board: its own API is /board/api/…, clear of BYSU's /api.
  const board = new ExpressAdapter();
  board.setBasePath(BOARD_PATH);
  createBullBoard({
    // Read-only: a job's data says which host to log in to and what to run there, so nobody edits or adds one
    // through the dashboard (re-run a snapshot with `bysu snapshot <app>`).
    queues: [queues.snapshot, queues.retention, queues.drill, queues.verify, queues.mirror].map((queue) => new BullMQAdapter(queue, { readOnlyMode: true })),
    serverAdapter: board,
    // UTC and 24 hours, as the CLI and the overview speak (Bull Board showed the browser's local 12-hour time).
    options: { uiConfig: { boardTitle: 'BYSU backups', dateFormats: BOARD_DATE_FORMATS } },
  });
  const pageAuth = basicAuth(() => current().dashboard);
  app.use(BOARD_PATH, pageAuth, board.getRouter());

  // The overview pages, behind the same password as Bull Board. A page is always answered: what cannot be
  // read (Redis down, an unmounted repository) is said on the page rather than failing it.
  const sendPage = (response: Response, code: number, text: string) => response.status(code).type('html').set('Cache-Control', 'no-store').send(text);
  // With Redis down the pages still show what the repository knows, as `bysu status` does, and say so.
  // Redis is asked first (as /metrics does): the shared states may have been computed just before it went away.
  const pageReport = async (config: Config): Promise<StatusReport | Error> => {
    if (!(await redisAnswers(redis, PING_TIMEOUT_MS))) {
      return collectStatus(config, { unreachable: `Redis unreachable at ${redactRedisUrl(config.redis.url)}` }).catch(toError);
    }
    return status.get(config).then(({ value }) => value, toError);
  };
  app.get('/', pageAuth, async (_request, response) => {
    const config = current();
    sendPage(response, 200, renderOverview(config, await pageReport(config), Date.now()));
  });
  app.get('/apps/:app', pageAuth, async (request, response) => {
    const config = current();
    const name = String(request.params.app);
    const report = await pageReport(config);
    if (report instanceof Error) return sendPage(response, 503, renderOverview(config, report, Date.now()));
    const found = NAME_PATTERN.test(name) ? report.apps.find((candidate) => candidate.app === name) : undefined;
    if (!found) return sendPage(response, 404, renderOverview(config, new Error(`no app named "${name.slice(0, 100)}": the list of apps is on the overview page`), Date.now()));
    const [snapshots, attempts] = await Promise.all([
      listSnapshots(config.repository, name),
      Promise.race([
        recentAttempts(redis, config.redis.prefix, queues.snapshot, name),
        new Promise<Error>((resolve) => setTimeout(() => resolve(new Error(`Redis did not answer within ${PAGE_REDIS_BOUND_MS} ms`)), PAGE_REDIS_BOUND_MS).unref()),
      ]).catch(toError),
    ]);
    sendPage(response, 200, renderAppPage(found, snapshots, attempts, Date.now()));
  });

  // Errors answer with their HTTP status (a malformed URL is a 400), never a stack trace.
  app.use((error: unknown, _request: Request, response: Response, _next: NextFunction) => {
    const status = (error as { status?: number }).status;
    const clientError = typeof status === 'number' && status >= 400 && status < 500;
    if (!clientError) logger.error({ err: toError(error).message }, 'dashboard request failed');
    if (response.headersSent) response.destroy();
    else response.status(clientError ? status : 500).json({ error: clientError ? 'bad request' : 'internal error' });
  });
  return app;
}

/**
 * Given the live config and a logger, start the dashboard and return it.
 * Throw ConfigError when it would listen beyond loopback without a password
 * (a reload to such a config is refused by the process's checks).
 * `redisHealth` is where Redis errors are reported (`bysu up` shares one per
 * process); by default the dashboard has its own.
 */
export async function startDashboard(live: LiveConfig, logger: Logger, options: { redisHealth?: RedisHealth } = {}): Promise<RunningDashboard> {
  const config = live.current();
  checkDashboardExposure(config.dashboard);
  if (config.dashboard.password === '') logger.warn('dashboard.password is empty: Bull Board is open to anyone on this machine');
  const redis = createDashboardConnection(config.redis.url);
  const redisHealth = options.redisHealth ?? new RedisHealth(logger, config.redis.url);
  redisHealth.watch(redis, 'dashboard connection');
  const queues = openAllQueues(redis, config.redis.prefix, redisHealth);
  const app = createDashboardApp(live, redis, queues, logger);
  const server: Server = await new Promise((resolve, reject) => {
    const listening = app.listen(config.dashboard.port, config.dashboard.host, (error?: Error) => (error ? reject(error) : resolve(listening)));
    listening.once('error', reject);
  });
  const { port } = server.address() as AddressInfo;
  const host = config.dashboard.host.includes(':') ? `[${config.dashboard.host}]` : config.dashboard.host;
  const url = `http://${host}:${port}/`;
  logger.info({ url, auth: config.dashboard.password ? 'basic' : 'none', api: config.dashboard.apiToken ? 'on' : 'off' }, 'dashboard started');
  // The dashboard stays up to report it (/healthz 503, bysu_repository_ok 0), but says it at once too.
  const problem = await repositoryProblem(config.repository).catch((error: unknown) => toError(error).message);
  if (problem !== null) logger.error({ repository: config.repository }, problem);
  return {
    url,
    async close() {
      const started = Date.now();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await settlesWithin(queues.close(), CLOSE_BOUND_MS);
      const closed = await closeConnection(redis);
      logger.info({ stoppedInMs: Date.now() - started, waitedFor: 'open HTTP connections (closed at once)', redis: closed }, 'dashboard stopped');
    },
  };
}
