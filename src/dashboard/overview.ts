/**
 * The overview pages, the first thing an operator opens: `/` has one row per
 * app (state, newest snapshot, age, size with the kept snapshots' sizes drawn
 * beside it, next run, last error, last drill and verification) and one row
 * per node (its apps, the last successful contact, what is failing);
 * `/apps/<app>` has the app's snapshots with their files and its recent
 * attempts with their reasons. Server-rendered HTML: no JavaScript, UTC times
 * with relative ages, a refresh every REFRESH_SECONDS, readable at 375 px.
 * Everything a node or a reason carries is escaped (html.ts).
 */
import { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { formatAge, formatBytes } from '../config/formats.ts';
import type { Config } from '../config/load.ts';
import { escapeControls } from '../printable.ts';
import { SNAPSHOT_QUEUE, snapshotSchedulerId, type SnapshotJobData, type SnapshotResult } from '../queue/jobs.ts';
import type { TypedQueue } from '../queue/open-queue.ts';
import type { SnapshotEntry } from '../repository/read.ts';
import type { AppStatus, StatusReport } from '../status/app-status.ts';
import { Html, html } from './html.ts';

/** How often the pages reload themselves. */
export const REFRESH_SECONDS = 60;
/** Attempts shown on an app's page, newest first. */
export const RECENT_ATTEMPTS = 20;
/** The most characters of a reason shown in a table cell (the app's page shows it whole). */
const CELL_REASON_CHARS = 160;

const STYLE = `
:root{color-scheme:light dark;--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--dim:#6e7781;--line:#d0d7de}
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;padding:12px;max-width:1400px}
header{display:flex;flex-wrap:wrap;gap:4px 16px;align-items:baseline;margin-bottom:8px}
h1{font-size:20px;margin:0}h2{font-size:16px;margin:20px 0 6px}
a{color:inherit}.dim{color:var(--dim)}h1,td{overflow-wrap:anywhere}code,.mono{font-family:ui-monospace,monospace;font-size:12px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;white-space:nowrap}td.num{text-align:right;white-space:nowrap}
.state{display:inline-block;padding:1px 6px;border-radius:4px;font-weight:700;font-size:12px;color:#fff;background:var(--dim)}
.state-ok{background:var(--ok)}.state-failing,.state-corrupt{background:var(--bad)}.state-stale{background:var(--warn)}
.counts span{margin-right:12px}.problem{color:var(--bad)}.reason{white-space:pre-wrap;word-break:break-word}
svg.sizes{vertical-align:middle;margin-left:6px}svg.sizes rect{fill:var(--dim)}svg.sizes rect.newest{fill:var(--ok)}
.banner{border:2px solid var(--bad);padding:8px;margin:8px 0;font-weight:600}
.sha{word-break:break-all}
@media (max-width:700px){
  table,tbody,tr,td{display:block;width:auto}thead{display:none}
  tr{border:1px solid var(--line);border-radius:6px;margin:8px 0;padding:4px}
  td{border:0;padding:2px 4px}td.num{text-align:left}
  td[data-label]::before{content:attr(data-label) ": ";font-weight:600;color:var(--dim)}
}`;

/** Given an ISO time, return it as `2026-12-02 16:40 UTC` in a <time> element whose title is the whole ISO time. */
function utc(iso: string | null): Html {
  if (iso === null || Number.isNaN(Date.parse(iso))) return html`<span class="dim">-</span>`;
  const text = new Date(iso).toISOString();
  return html`<time datetime="${text}" title="${text}">${text.slice(0, 16).replace('T', ' ')} UTC</time>`;
}

/** Given a time and now, return `3h ago` or `in 5h`. */
function relative(at: number, now: number): string {
  return at <= now ? `${formatAge(now - at)} ago` : `in ${formatAge(at - now)}`;
}

/** A UTC time with its relative age beside it. */
function when(iso: string | null, now: number): Html {
  if (iso === null || Number.isNaN(Date.parse(iso))) return html`<span class="dim">-</span>`;
  return html`${utc(iso)} <span class="dim">(${relative(Date.parse(iso), now)})</span>`;
}

/**
 * Given a reason or warning from a node, return it on one line (its lines
 * joined with ` / `: the first says what failed, the next the node's stderr),
 * escaped of control characters and cut for a table cell.
 */
function oneLine(text: string, limit = CELL_REASON_CHARS): string {
  const line = escapeControls(text.split('\n').map((part) => part.trim()).filter(Boolean).join(' / '));
  return line.length > limit ? `${line.slice(0, limit - 1)}…` : line;
}

function stateBadge(state: string): Html {
  return html`<span class="state state-${state}">${state.toUpperCase()}</span>`;
}

/**
 * Given the kept snapshots' sizes, newest first, return a small bar chart,
 * oldest on the left: a shrink or a jump shows at a glance.
 */
export function sizeBars(keptBytes: readonly number[]): Html | null {
  if (keptBytes.length < 2) return null;
  const sizes = [...keptBytes].reverse();
  const largest = Math.max(...sizes, 1);
  const height = 16;
  const bars = sizes.map((bytes, index) => {
    const barHeight = Math.max(1, Math.round((bytes / largest) * height));
    return html`<rect x="${index * 4}" y="${height - barHeight}" width="3" height="${barHeight}"${index === sizes.length - 1 ? html` class="newest"` : ''}/>`;
  });
  const title = `kept snapshots, oldest first: ${sizes.map(formatBytes).join(', ')}`;
  return html`<svg class="sizes" role="img" aria-label="${title}" width="${sizes.length * 4}" height="${height}" viewBox="0 0 ${sizes.length * 4} ${height}"><title>${title}</title>${bars}</svg>`;
}

/** Given the title, the body, now and the way back to `/` from this page (`` or `../`), return the whole page. */
function page(title: string, body: Html, now: number, root: string): string {
  return `<!doctype html>\n${html`<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="refresh" content="${REFRESH_SECONDS}">
<title>${title}</title><style>${new Html(STYLE)}</style></head>
<body>${body}<p class="dim">Rendered ${utc(new Date(now).toISOString())}; reloads every ${REFRESH_SECONDS} s. Jobs and queues: <a href="${root}board/">Bull Board</a>.</p></body></html>`.text}\n`;
}

/** What one node's row says: its apps, the last time anything succeeded there, and what is failing. */
export interface NodeRow {
  node: string;
  apps: string[];
  /** The newest finish of a snapshot taken on it, or of a drill passed on it (ISO). */
  lastContact: string | null;
  failing: string[];
}

/** Given the config and the report, return one row per configured node (and per node only the repository still names). */
export function nodeRows(config: Config, report: StatusReport): NodeRow[] {
  const rows = new Map<string, NodeRow>(config.nodes.map((node) => [node.name, { node: node.name, apps: [], lastContact: null, failing: [] }]));
  const rowOf = (name: string) => rows.get(name) ?? rows.set(name, { node: name, apps: [], lastContact: null, failing: [] }).get(name)!;
  const contact = (row: NodeRow, at: string) => {
    if (row.lastContact === null || Date.parse(at) > Date.parse(row.lastContact)) row.lastContact = at;
  };
  for (const app of report.apps) {
    if (app.node !== null) {
      const row = rowOf(app.node);
      row.apps.push(app.app);
      if (app.newest) contact(row, app.newest.finishedAt);
      if (app.state !== 'ok' && app.state !== 'never') row.failing.push(`${app.app} ${app.state.toUpperCase()}`);
    }
    if (app.lastDrill) {
      const row = rowOf(app.lastDrill.node);
      if (app.lastDrill.passed) contact(row, app.lastDrill.at);
      else row.failing.push(`${app.app} drill FAILED`);
    }
  }
  return [...rows.values()];
}

/** For an app copied from another BYSU: where from, and how far behind. */
function mirrorNote(app: AppStatus): Html | string {
  if (app.mirror === null) return '';
  const behind = app.mirror.behind > 0 ? `, ${app.mirror.behind} behind (the oldest waiting ${formatAge(app.mirror.lagMs)})` : '';
  return html` <span class="dim">copy of ${app.mirror.source}${behind}</span>`;
}

function appRow(app: AppStatus, now: number): Html {
  const error = app.state === 'failing' && app.lastFailure ? app.lastFailure.reason : app.problems[0] ?? null;
  const drill = app.lastDrill
    ? html`${app.lastDrill.passed ? 'passed' : html`<span class="problem">FAILED</span>`} ${when(app.lastDrill.at, now)}`
    : html`<span class="dim">-</span>`;
  const verify = app.lastVerify
    ? html`${app.lastVerify.failed.length > 0 ? html`<span class="problem">${app.lastVerify.failed.length} damaged</span>` : 'ok'} ${when(app.lastVerify.at, now)}`
    : html`<span class="dim">-</span>`;
  return html`<tr>
<td data-label="App"><a href="apps/${encodeURIComponent(app.app)}">${app.app}</a>${mirrorNote(app)}</td>
<td data-label="State">${stateBadge(app.state)}</td>
<td data-label="Newest" class="mono">${app.newest?.id ?? '-'}</td>
<td data-label="Age" class="num">${app.ageMs === null ? '-' : formatAge(app.ageMs)}</td>
<td data-label="Size" class="num">${app.newest ? formatBytes(app.newest.bytes) : '-'}${sizeBars(app.keptBytes)}</td>
<td data-label="Next run">${app.nextRunAt === null ? html`<span class="dim">-</span>` : html`${utc(new Date(app.nextRunAt).toISOString())} <span class="dim">(${relative(app.nextRunAt, now)})</span>`}</td>
<td data-label="Last error" class="reason">${error === null ? '' : html`<span class="problem">${oneLine(error)}</span>`}</td>
<td data-label="Last drill">${drill}</td>
<td data-label="Last verify">${verify}</td>
</tr>`;
}

/** Given the config, the apps' states (or why they could not be read) and now, return the overview page. */
export function renderOverview(config: Config, report: StatusReport | Error, now: number): string {
  if (report instanceof Error) {
    return page('BYSU backups', html`<header><h1>BYSU backups</h1></header><div class="banner">The apps' states cannot be read: ${oneLine(report.message, 1000)}</div>`, now, '');
  }
  const counts = new Map<string, number>();
  for (const app of report.apps) counts.set(app.state, (counts.get(app.state) ?? 0) + 1);
  const order = ['corrupt', 'failing', 'stale', 'never', 'orphaned', 'ok'];
  const apps = [...report.apps].sort((a, b) => order.indexOf(a.state) - order.indexOf(b.state) || a.app.localeCompare(b.app));
  const nodes = nodeRows(config, report);
  const body = html`<header><h1>BYSU backups</h1>
<span class="counts">${[...counts].sort((a, b) => order.indexOf(a[0]) - order.indexOf(b[0])).map(([state, count]) => html`<span>${stateBadge(state)} ${count}</span>`)}</span>
<span class="dim">scheduler: ${!report.redis.reachable ? 'unknown' : report.scheduler ? html`alive, ${when(report.scheduler.at, now)}` : html`<span class="problem">no heartbeat: is the scheduler running?</span>`}</span></header>
${report.redis.reachable ? '' : html`<div class="banner">${oneLine(report.redis.error, 1000)}: failures, next runs and the scheduler are unknown; the rest is what the repository knows.</div>`}
<h2>Apps</h2>
<table><thead><tr><th>App</th><th>State</th><th>Newest</th><th>Age</th><th>Size</th><th>Next run</th><th>Last error</th><th>Last drill</th><th>Last verify</th></tr></thead>
<tbody>${apps.map((app) => appRow(app, now))}</tbody></table>
<h2>Nodes</h2>
<table><thead><tr><th>Node</th><th>Apps</th><th>Last successful contact</th><th>Failing</th></tr></thead>
<tbody>${nodes.map((node) => html`<tr><td data-label="Node">${node.node}</td><td data-label="Apps">${node.apps.join(', ') || '-'}</td>
<td data-label="Last successful contact">${when(node.lastContact, now)}</td><td data-label="Failing" class="problem">${node.failing.join(', ')}</td></tr>`)}</tbody></table>`;
  return page('BYSU backups', body, now, '');
}

/** One attempt of a snapshot job as the app's page shows it. */
export interface AttemptRow {
  jobId: string;
  trigger: string;
  state: string;
  attemptsMade: number;
  attempts: number;
  startedAt: number | null;
  finishedAt: number | null;
  reason: string | null;
  snapshotId: string | null;
}

/**
 * Given Redis, the prefix, the snapshot queue and an app, return its newest
 * snapshot jobs (at most `limit`), newest first: the running and waiting
 * ones, then the finished ones found by their ids in the completed and failed
 * sets (scheduled ids are `repeat:app-<app>:<ms>`, manual ones
 * `manual-<app>-<ms>`): a ZSCAN each, however many other apps there are.
 */
export async function recentAttempts(redis: Redis, prefix: string, queue: TypedQueue<typeof SNAPSHOT_QUEUE>, app: string, limit = RECENT_ATTEMPTS): Promise<AttemptRow[]> {
  const ours = new RegExp(`^(repeat:${snapshotSchedulerId(app).replace(/[.]/g, '\\.')}:\\d+|manual-${app.replace(/[.]/g, '\\.')}-\\d+)$`);
  const finished: { id: string; state: string; score: number }[] = [];
  for (const state of ['completed', 'failed']) {
    for (const pattern of [`repeat:${snapshotSchedulerId(app)}:*`, `manual-${app}-*`]) {
      let cursor = '0';
      do {
        const [next, entries] = await redis.zscan(`${prefix}:${SNAPSHOT_QUEUE}:${state}`, cursor, 'MATCH', pattern, 'COUNT', 1000);
        cursor = next;
        for (let index = 0; index < entries.length; index += 2) {
          if (ours.test(entries[index]!)) finished.push({ id: entries[index]!, state, score: Number(entries[index + 1]) });
        }
      } while (cursor !== '0');
    }
  }
  const pending = (await queue.getJobs(['active', 'waiting', 'delayed', 'prioritized'], 0, 999)).filter((job) => job?.data?.app === app);
  const newestFinished = finished.sort((a, b) => b.score - a.score).slice(0, limit);
  const jobs = await Promise.all(newestFinished.map(async ({ id, state }) => ({ state, job: await Job.fromId<SnapshotJobData, SnapshotResult>(queue, id) })));
  const pendingStates = await Promise.all(pending.map(async (job) => ({ state: await job.getState(), job })));
  return [...pendingStates, ...jobs]
    .filter((entry): entry is { state: string; job: Job<SnapshotJobData, SnapshotResult> } => entry.job !== undefined && entry.job !== null)
    .slice(0, limit)
    .map(({ state, job }) => ({
      jobId: String(job.id),
      trigger: job.data.trigger,
      state,
      attemptsMade: job.attemptsMade,
      attempts: job.opts.attempts ?? 1,
      startedAt: job.processedOn ?? null,
      finishedAt: job.finishedOn ?? null,
      reason: job.failedReason ? job.failedReason : null,
      snapshotId: state === 'completed' ? (job.returnvalue?.id ?? null) : null,
    }));
}

/** Given how long a snapshot took in ms, return `850 ms` under a second, else `12s`, `3m`. */
function took(ms: number): string {
  return Number.isNaN(ms) ? '-' : ms < 1000 ? `${Math.max(0, ms)} ms` : formatAge(ms);
}

function snapshotRows(snapshots: SnapshotEntry[], now: number): Html {
  if (snapshots.length === 0) return html`<tr><td colspan="5" class="dim">No complete snapshot yet.</td></tr>`;
  return html`${snapshots.map(({ id, manifest }) => {
    if (manifest === null) return html`<tr><td data-label="Snapshot" class="mono">${id}</td><td colspan="4" class="problem">manifest.json unreadable</td></tr>`;
    const files = html`<ul>${manifest.parts.map((part) => html`<li><code>${part.file}</code> ${formatBytes(part.bytes)} <code class="sha dim">${part.sha256}</code></li>`)}</ul>`;
    return html`<tr><td data-label="Snapshot" class="mono">${id}</td><td data-label="Finished">${when(manifest.finishedAt, now)}</td>
<td data-label="Size" class="num">${formatBytes(manifest.bytes)}</td><td data-label="Took" class="num">${took(Date.parse(manifest.finishedAt) - Date.parse(manifest.startedAt))}</td>
<td data-label="Files">${files}${manifest.warnings.length > 0 ? html`<div class="problem">${manifest.warnings.length} warning(s): ${manifest.warnings.slice(0, 3).map((warning) => html`<div>${oneLine(warning)}</div>`)}</div>` : ''}</td></tr>`;
  })}`;
}

function attemptRows(attempts: AttemptRow[], now: number): Html {
  return html`${attempts.map((attempt) => html`<tr><td data-label="Job" class="mono">${attempt.jobId}</td><td data-label="Trigger">${attempt.trigger}</td>
<td data-label="State">${attempt.state === 'failed' ? html`<span class="problem">failed</span>` : attempt.state}${attempt.snapshotId ? html` <span class="mono">${attempt.snapshotId}</span>` : ''}</td>
<td data-label="Attempts" class="num">${attempt.attemptsMade} of ${attempt.attempts}</td>
<td data-label="Started">${attempt.startedAt === null ? '-' : when(new Date(attempt.startedAt).toISOString(), now)}</td>
<td data-label="Reason" class="reason">${attempt.reason === null ? '' : escapeControls(attempt.reason, { keepLineBreaks: true })}</td></tr>`)}`;
}

/** Given an app's state, its snapshots (newest first), its recent attempts (or why they could not be read) and now, return its page. */
export function renderAppPage(app: AppStatus, snapshots: SnapshotEntry[], attempts: AttemptRow[] | Error, now: number): string {
  const body = html`<header><h1><a href="../">BYSU backups</a> / ${app.app}</h1> ${stateBadge(app.state)}
<span class="dim">${app.mirror ? `copy of ${app.mirror.source} (${app.mirror.url})` : `node ${app.node ?? '-'}`}; newest ${app.newest?.id ?? 'none'}${app.ageMs === null ? '' : `, ${formatAge(app.ageMs)} old`}</span></header>
${app.problems.map((problem) => html`<div class="problem">${oneLine(problem, 1000)}</div>`)}
${app.state === 'failing' && app.lastFailure ? html`<div class="banner">Last failure ${when(app.lastFailure.at, now)} after ${app.lastFailure.attempts} attempt(s):<div class="reason">${escapeControls(app.lastFailure.reason, { keepLineBreaks: true })}</div></div>` : ''}
<h2>Snapshots (${snapshots.length} kept)</h2>
<table><thead><tr><th>Snapshot</th><th>Finished</th><th>Size</th><th>Took</th><th>Files (sha256)</th></tr></thead><tbody>${snapshotRows(snapshots, now)}</tbody></table>
<h2>Recent attempts</h2>
${attempts instanceof Error
    ? html`<div class="banner">The queue cannot be read: ${oneLine(attempts.message, 1000)}</div>`
    : html`<table><thead><tr><th>Job</th><th>Trigger</th><th>State</th><th>Attempts</th><th>Started</th><th>Reason</th></tr></thead><tbody>${attemptRows(attempts, now)}</tbody></table>`}`;
  return page(`${app.app}: BYSU backups`, body, now, '../');
}
