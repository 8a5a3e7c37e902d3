/**
 * `bysu status [--json]`: per app the newest snapshot, its age and size, the
 * next run, the last failure and the state; exit 1 when any app is stale,
 * failing or corrupt (a kept snapshot found damaged, named with its file), or
 * no scheduler is running, so cron or a monitoring agent can call it.
 */
import { formatBytes, formatDuration } from '../config/formats.ts';
import { cutToBytes, escapeControls } from '../printable.ts';
import { connectProducer } from '../queue/connection.ts';
import { MAX_WARNING_BYTES } from '../repository/manifest.ts';
import { collectStatus, type AppStatus, type StatusReport } from '../status/app-status.ts';
import { EXIT_FAILED, EXIT_OK, loadCliConfig, type GlobalOptions } from './context.ts';

/** The states that make status exit 1. */
const UNHEALTHY_STATES: readonly string[] = ['stale', 'failing', 'corrupt'];

/** Given a report, say whether it is healthy (exit 0): nothing stale, failing or corrupt, no other problem, a scheduler alive. */
export function isHealthy(report: StatusReport): boolean {
  return report.scheduler !== null && report.apps.every((app) => !UNHEALTHY_STATES.includes(app.state) && app.problems.length === 0);
}

function age(ms: number | null): string {
  if (ms === null) return '-';
  const rounded = ms < 120_000 ? Math.round(ms / 1000) * 1000 : ms < 7_200_000 ? Math.round(ms / 60_000) * 60_000 : Math.round(ms / 3_600_000) * 3_600_000;
  return formatDuration(Math.max(rounded, 1000));
}

function drillNote(app: AppStatus): string {
  if (!app.lastDrill?.passed) return '';
  return `drill passed ${app.lastDrill.at} (${app.lastDrill.snapshotId} restored on ${app.lastDrill.node})`;
}

function printableLine(text: string): string {
  return cutToBytes(escapeControls(text), MAX_WARNING_BYTES);
}

function row(app: AppStatus, now: number): string[] {
  // Warnings and failure reasons carry what a node sent (entry names, stderr): cut and escaped, also when an
  // older manifest holds them whole, so that one line stays one short line and no escape sequence reaches the terminal.
  const warnings = app.newest?.warnings.length ? `${app.newest.warnings.length} warning(s): ${printableLine(app.newest.warnings[0]!)}` : '';
  const failure = app.lastFailure && app.state === 'failing' ? `${app.lastFailure.at} ${printableLine(app.lastFailure.reason.split('\n')[0]!)}` : '';
  const never = app.state === 'stale' && app.newest === null ? `no snapshot since ${app.firstSeenAt}` : '';
  return [
    app.app,
    app.state.toUpperCase(),
    app.newest?.id ?? '-',
    age(app.ageMs),
    app.newest ? formatBytes(app.newest.bytes) : '-',
    app.nextRunAt === null ? '-' : app.nextRunAt >= now ? `in ${age(app.nextRunAt - now)}` : `overdue ${age(now - app.nextRunAt)}`,
    [...app.problems, never, failure, warnings, drillNote(app)].filter(Boolean).join('; '),
  ];
}

export async function status(globals: GlobalOptions, options: { json?: boolean }): Promise<number> {
  const config = loadCliConfig(globals);
  const connection = await connectProducer(config.redis.url);
  try {
    const report = await collectStatus(config, connection);
    const healthy = isHealthy(report);
    if (options.json) {
      // Still valid JSON: C0 controls are escaped by JSON.stringify, the C1 and bidi ones by escapeControls.
      console.log(escapeControls(JSON.stringify({ ...report, healthy }, null, 2), { keepLineBreaks: true }));
      return healthy ? EXIT_OK : EXIT_FAILED;
    }
    const now = Date.parse(report.at);
    const rows = [['APP', 'STATE', 'NEWEST', 'AGE', 'SIZE', 'NEXT RUN', 'NOTES'], ...report.apps.map((app) => row(app, now))];
    const widths = rows[0]!.map((_, column) => Math.max(...rows.map((cells) => cells[column]!.length)));
    for (const cells of rows) console.log(cells.map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ').trimEnd());
    console.log(report.scheduler
      ? `scheduler: alive (${report.scheduler.host} pid ${report.scheduler.pid}, heartbeat ${report.scheduler.at})`
      : 'scheduler: NOT RUNNING (no heartbeat in Redis): nothing will be scheduled');
    if (report.apps.length === 0) console.log('no apps configured');
    return healthy ? EXIT_OK : EXIT_FAILED;
  } finally {
    connection.disconnect();
  }
}
