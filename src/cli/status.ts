/**
 * `bysu status [apps...] [--json]`: per app the newest snapshot, its age and
 * size, the next run, the last failure and the state; exit 1 when any app
 * shown is stale, failing or corrupt (a kept snapshot found damaged, named
 * with its file), or no scheduler is running, so cron or a monitoring agent
 * can call it. Named apps: only their rows (what an alert email tells its
 * reader to run). With Redis unreachable it shows what the repository knows,
 * says that Redis is unreachable, and exits 1.
 */
import type { Redis } from 'ioredis';
import { formatAge, formatBytes } from '../config/formats.ts';
import { RedisUnavailableError } from '../errors.ts';
import { cutToBytes, escapeControls } from '../printable.ts';
import { connectProducer } from '../queue/connection.ts';
import { MAX_WARNING_BYTES } from '../repository/manifest.ts';
import { collectStatus, type AppStatus, type StatusReport } from '../status/app-status.ts';
import { EXIT_FAILED, EXIT_OK, loadCliConfig, requireAppNames, type GlobalOptions } from './context.ts';

/** The states that make status exit 1. */
const UNHEALTHY_STATES: readonly string[] = ['stale', 'failing', 'corrupt'];

/** Given a report, say whether it is healthy (exit 0): Redis answered, nothing stale, failing or corrupt, no other problem, a scheduler alive, every mirror's source answering. */
export function isHealthy(report: StatusReport): boolean {
  return report.redis.reachable && report.scheduler !== null && report.apps.every((app) => !UNHEALTHY_STATES.includes(app.state) && app.problems.length === 0)
    && report.mirrors.every((mirror) => !mirror.stale);
}

/** Given a mirror's source, one line on whether it answers. */
function mirrorLine(mirror: StatusReport['mirrors'][number]): string {
  const answered = mirror.lastContactAt === null ? 'has never answered' : `last answered ${mirror.lastContactAt}`;
  const error = mirror.lastError ? `; last run: ${printableLine(mirror.lastError.reason.split('\n')[0]!)}` : '';
  return `mirror ${mirror.name} (${mirror.url}): ${mirror.stale ? `STALE, ${answered}, longer than maxLag ago` : answered}${error}`;
}

function drillNote(app: AppStatus): string {
  if (!app.lastDrill?.passed) return '';
  return `drill passed ${app.lastDrill.at} (${app.lastDrill.snapshotId} restored on ${app.lastDrill.node})`;
}

function printableLine(text: string): string {
  return cutToBytes(escapeControls(text), MAX_WARNING_BYTES);
}

function nextRun(app: AppStatus, now: number, redisReachable: boolean): string {
  // Next runs live in Redis: without it they are unknown, which is not "none".
  if (!redisReachable) return '?';
  if (app.nextRunAt === null) return '-';
  return app.nextRunAt >= now ? `in ${formatAge(app.nextRunAt - now)}` : `overdue ${formatAge(now - app.nextRunAt)}`;
}

function row(app: AppStatus, now: number, redisReachable: boolean): string[] {
  // Warnings and failure reasons carry what a node sent (entry names, stderr): cut and escaped, also when an
  // older manifest holds them whole, so that one line stays one short line and no escape sequence reaches the terminal.
  const warnings = app.newest?.warnings.length ? `${app.newest.warnings.length} warning(s): ${printableLine(app.newest.warnings[0]!)}` : '';
  const failure = app.lastFailure && app.state === 'failing' ? `${app.lastFailure.at} ${printableLine(app.lastFailure.reason.split('\n')[0]!)}` : '';
  const never = app.state === 'stale' && app.newest === null ? (app.firstSeenAt ? `no snapshot since ${app.firstSeenAt}` : 'no snapshot yet') : '';
  return [
    app.app,
    app.state.toUpperCase(),
    app.newest?.id ?? '-',
    formatAge(app.ageMs),
    app.newest ? formatBytes(app.newest.bytes) : '-',
    nextRun(app, now, redisReachable),
    [...app.problems, never, failure, warnings, drillNote(app), mirrorNote(app)].filter(Boolean).join('; '),
  ];
}

/** Given a mirrored app, say where it is copied from and how far behind it is. */
function mirrorNote(app: AppStatus): string {
  if (app.mirror === null) return '';
  const { source, behind, lagMs, checkedAt } = app.mirror;
  if (checkedAt === null) return `copy of ${source}: its source has not listed it yet`;
  return behind === 0 ? `copy of ${source}: up to date (source checked ${checkedAt})` : `copy of ${source}: ${behind} behind, the oldest waiting ${formatAge(lagMs)}`;
}

/** Given the Redis URL, connect, or return why Redis did not answer (status then shows what the repository knows). */
async function connectOrReason(url: string): Promise<Redis | { unreachable: string }> {
  try {
    return await connectProducer(url);
  } catch (error) {
    if (error instanceof RedisUnavailableError) return { unreachable: error.message };
    throw error;
  }
}

export async function status(globals: GlobalOptions, apps: string[], options: { json?: boolean }): Promise<number> {
  const config = loadCliConfig(globals);
  const only = apps.length > 0 ? new Set(apps) : null;
  const connection = await connectOrReason(config.redis.url);
  try {
    const collected = await collectStatus(config, connection);
    // Named apps: configured ones, or any the report has (a mirror's copies, an orphaned directory).
    const unknown = apps.filter((name) => !collected.apps.some((app) => app.app === name));
    if (unknown.length > 0) requireAppNames(config, unknown, false);
    const report = only === null ? collected : { ...collected, apps: collected.apps.filter((app) => only.has(app.app)), mirrors: [] };
    const healthy = isHealthy(report);
    if (options.json) {
      // Still valid JSON: C0 controls are escaped by JSON.stringify, the C1 and bidi ones by escapeControls.
      console.log(escapeControls(JSON.stringify({ ...report, healthy }, null, 2), { keepLineBreaks: true }));
      return healthy ? EXIT_OK : EXIT_FAILED;
    }
    const now = Date.parse(report.at);
    const rows = [['APP', 'STATE', 'NEWEST', 'AGE', 'SIZE', 'NEXT RUN', 'NOTES'], ...report.apps.map((app) => row(app, now, report.redis.reachable))];
    const widths = rows[0]!.map((_, column) => Math.max(...rows.map((cells) => cells[column]!.length)));
    for (const cells of rows) console.log(cells.map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ').trimEnd());
    if (!report.redis.reachable) {
      console.log(`${report.redis.error}: job states, the scheduler and next runs are unknown; the table is what the repository knows`);
    } else {
      console.log(report.scheduler
        ? `scheduler: alive (${report.scheduler.host} pid ${report.scheduler.pid}, heartbeat ${report.scheduler.at})`
        : 'scheduler: NOT RUNNING (no heartbeat in Redis): nothing will be scheduled');
    }
    for (const mirror of report.mirrors) console.log(mirrorLine(mirror));
    if (report.apps.length === 0) console.log('no apps configured');
    return healthy ? EXIT_OK : EXIT_FAILED;
  } finally {
    if (!('unreachable' in connection)) connection.disconnect();
  }
}
