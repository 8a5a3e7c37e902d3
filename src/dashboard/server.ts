/**
 * `bysu dashboard`: Bull Board over the snapshot, retention, drill and verify queues at
 * /board/ behind HTTP basic auth (/ redirects there), /healthz, /metrics, and
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
import { CLOSE_BOUND_MS, closeConnection, createDashboardConnection, settlesWithin } from '../queue/connection.ts';
import { openAllQueues, type AllQueues } from '../queue/open-queue.ts';
import { RedisHealth } from '../queue/redis-health.ts';
import { repositoryProblem } from '../repository/marker.ts';
import { collectStatus, type StatusReport } from '../status/app-status.ts';
import { BYSU_VERSION } from '../version.ts';
import { apiRouter } from './api.ts';
import { basicAuth, bearerAuth, checkDashboardExposure, loopbackHostOnly } from './auth.ts';
import { MetricsPage, metricsBoundMs, PING_TIMEOUT_MS, redisAnswers } from './metrics.ts';
import { SharedComputation } from './shared-computation.ts';

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
  const metrics = new MetricsPage(redis, [queues.snapshot, queues.retention, queues.drill, queues.verify], status, logger);
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

  app.use('/api', bearerAuth(() => current().dashboard.apiToken), apiRouter(current, async (config) => (await status.get(config)).value));

  // Bull Board lives under /board: its own API is /board/api/…, clear of BYSU's /api.
  const board = new ExpressAdapter();
  board.setBasePath(BOARD_PATH);
  createBullBoard({
    // Read-only: a job's data says which host to log in to and what to run there, so nobody edits or adds one
    // through the dashboard (re-run a snapshot with `bysu snapshot <app>`).
    queues: [queues.snapshot, queues.retention, queues.drill, queues.verify].map((queue) => new BullMQAdapter(queue, { readOnlyMode: true })),
    serverAdapter: board,
    options: { uiConfig: { boardTitle: 'BYSU backups' } },
  });
  app.use(BOARD_PATH, basicAuth(() => current().dashboard), board.getRouter());
  app.get('/', (_request, response) => response.redirect(`${BOARD_PATH}/`));

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
