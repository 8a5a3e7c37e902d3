/**
 * Alerts by email: what an alert event says as a message (a short subject, a
 * plain-text body), its delivery over SMTP, and what a process that sends
 * alerts checks before it starts. The only importer of nodemailer. STARTTLS
 * is required when it is asked for, the server's certificate is always
 * verified, and the password is read from the environment variable that the
 * config names, at each delivery (never from the file, never logged).
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { createTransport } from 'nodemailer';
import type { EmailConfig } from '../config/load.ts';
import { cutToBytes, escapeControls } from '../printable.ts';
import { BYSU_VERSION } from '../version.ts';
import type { AlertEvent } from './notifier.ts';

/** The port of each kind of security when the config names none. */
export const DEFAULT_SMTP_PORTS: Record<EmailConfig['security'], number> = { starttls: 587, tls: 465, none: 25 };

/** Lines of the reason an email quotes, and the bytes of each: enough for a command's error, not a whole stderr. */
const REASON_LINES = 12;
const REASON_LINE_BYTES = 300;
/** Longest subject: a few words, whole in a mail client's list. */
const SUBJECT_CHARACTERS = 100;

/** Given the email settings, return the server as messages name it: `smtp.example.com:587`. */
export function smtpServer(settings: EmailConfig): string {
  return `${settings.host}:${settings.port ?? DEFAULT_SMTP_PORTS[settings.security]}`;
}

/**
 * Given the email settings (none: no email) and an environment, return what
 * would keep an alert from being sent, one line each: the password's
 * variable unset or empty, the CA file unreadable or holding no certificate.
 * Processes that send alerts refuse to start (and to reload) with any of
 * these; `bysu config check` reports them.
 */
export function emailProblems(settings: EmailConfig | undefined, env: NodeJS.ProcessEnv = process.env): string[] {
  if (settings === undefined) return [];
  const problems: string[] = [];
  if (settings.user !== undefined && settings.passwordEnv !== undefined && !env[settings.passwordEnv]) {
    const name = settings.passwordEnv;
    problems.push(`notify.email.passwordEnv: the environment variable ${name} is ${env[name] === undefined ? 'not set' : 'empty'}; it must hold the SMTP password of ` +
      `${JSON.stringify(settings.user)}: set it where the scheduler and the workers run (systemd: a line ${name}=… in /etc/bysu/bysu.env, ` +
      'the units\' EnvironmentFile; compose: the services\' environment), and run bysu config check with it');
  }
  if (settings.caFile !== undefined) {
    let text: string | undefined;
    try {
      text = readFileSync(settings.caFile, 'utf8');
    } catch (error) {
      problems.push(`notify.email.caFile: cannot read ${settings.caFile} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
    if (text !== undefined && !text.includes('-----BEGIN CERTIFICATE-----')) {
      problems.push(`notify.email.caFile: ${settings.caFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
    }
  }
  return problems;
}

/** What an event's email says: its state in the subject, the sentence that opens the body, and what to run next. */
const WORDING: Record<AlertEvent['event'], { state: string; opening: (app: string) => string; next: (app: string) => [string, string][] }> = {
  failed: {
    state: 'FAILING',
    opening: (app) => `${app} is FAILING: its snapshot failed for good, every attempt used. The snapshots taken before are untouched.`,
    next: (app) => [
      [`bysu status ${app}`, 'its state, its newest snapshot and the last error'],
      [`bysu snapshot ${app} --wait`, 'once the cause is fixed: take a snapshot now and watch it'],
    ],
  },
  stale: {
    state: 'STALE',
    opening: (app) => `${app} is STALE: it has no snapshot as recent as its schedule promises.`,
    next: (app) => [
      [`bysu status ${app}`, 'its newest snapshot, its next run, and whether a scheduler is running'],
      [`bysu snapshot ${app} --wait`, 'take a snapshot now and watch it'],
    ],
  },
  recovered: {
    state: 'OK again',
    opening: (app) => `${app} is OK again: a snapshot was committed after the trouble reported before.`,
    next: (app) => [[`bysu list ${app}`, 'nothing to do; this lists the snapshots kept']],
  },
  'drill-failed': {
    state: 'restore drill FAILING',
    opening: (app) => `The restore drill of ${app} FAILED: its newest snapshot was not shown to restore.`,
    next: (app) => [
      [`bysu status ${app}`, 'the last drill, and what it found'],
      [`bysu drill ${app} --wait`, 'once the cause is fixed: run the drill now and watch it'],
    ],
  },
  'drill-recovered': {
    state: 'restore drill OK again',
    opening: (app) => `The restore drill of ${app} passed again.`,
    next: (app) => [[`bysu status ${app}`, 'nothing to do; this shows the last drill']],
  },
  corrupt: {
    state: 'CORRUPT',
    opening: (app) => `${app} is CORRUPT: a kept snapshot no longer matches its SHA256SUMS (bit rot, a disk error, or a change by hand). Restore from another snapshot until it is repaired.`,
    next: (app) => [
      [`bysu status ${app}`, 'which snapshot and which file'],
      [`bysu verify ${app}`, 'read every kept snapshot again now'],
      [`bysu restore ${app} --snapshot <an intact id>`, 'restore from a snapshot that verified'],
    ],
  },
  'corrupt-cleared': {
    state: 'no damaged snapshot any more',
    opening: (app) => `${app} keeps no damaged snapshot any more: retention deleted it, or a later verification found it whole.`,
    next: (app) => [[`bysu status ${app}`, 'nothing to do; this shows the last verification']],
  },
};

/** Given an ISO time, return it as `2026-11-26 02:19:44 UTC` (or as given, when it is not a time). */
function utc(iso: string): string {
  const time = Date.parse(iso);
  return Number.isNaN(time) ? iso : `${new Date(time).toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** Given text a node may have written (stderr in a reason), return it safe to quote: controls escaped, lines bounded. */
function quotedLines(text: string): string[] {
  const lines = escapeControls(text, { keepLineBreaks: true }).replaceAll('\t', '  ').split(/\r?\n/).map((line) => line.trimEnd()).filter((line) => line !== '');
  const shown = lines.slice(0, REASON_LINES).map((line) => cutToBytes(line, REASON_LINE_BYTES));
  if (lines.length > REASON_LINES) shown.push(`… (${lines.length - REASON_LINES} more lines: bysu status, or the job in the dashboard)`);
  return shown;
}

/** Given the dashboard's URL as its users reach it (perhaps under a path of a proxy) and an app, return the app's page. */
function appPage(dashboardUrl: string, app: string): string {
  return new URL(`apps/${encodeURIComponent(app)}`, dashboardUrl.endsWith('/') ? dashboardUrl : `${dashboardUrl}/`).href;
}

export interface AlertEmail {
  subject: string;
  text: string;
  headers: Record<string, string>;
}

/**
 * Given an alert event, the email settings and the name of the host that
 * sends it, return the message: the subject names the app, its state and
 * its node in a few words (`[BYSU] shop FAILING on db1: part shop.sql:
 * command exited with code 1`); the plain-text body says what happened,
 * when (UTC), the reason in a few lines, and what to run next.
 */
export function composeAlertEmail(event: AlertEvent, settings: Pick<EmailConfig, 'dashboardUrl'>, sender = os.hostname()): AlertEmail {
  const wording = WORDING[event.event];
  const reason = event.reason === undefined ? [] : quotedLines(event.reason);
  const where = event.node ? ` on ${event.node}` : '';
  let subject = `[BYSU] ${event.app} ${wording.state}${where}${reason[0] ? `: ${reason[0]}` : ''}`;
  if (subject.length > SUBJECT_CHARACTERS) subject = `${subject.slice(0, SUBJECT_CHARACTERS - 1).trimEnd()}…`;

  const next = wording.next(event.app);
  const width = Math.max(...next.map(([command]) => command.length));
  const lines = [
    wording.opening(event.app),
    '',
    `When:   ${utc(event.at)}`,
    `App:    ${event.app}${event.node ? `, on node ${event.node}` : ''}`,
    ...(event.lastSnapshot ? [`Newest snapshot: ${event.lastSnapshot.id} (finished ${utc(event.lastSnapshot.finishedAt)})`] : []),
    ...(event.lastSnapshot === null && event.event === 'stale' ? ['Newest snapshot: none yet'] : []),
    ...(reason.length > 0 ? ['', 'Reason:', ...reason.map((line) => `  ${line}`)] : []),
    '',
    'What to do next:',
    ...next.map(([command, why]) => `  ${command.padEnd(width)}   ${why}`),
    ...(settings.dashboardUrl ? [`  Dashboard: ${appPage(settings.dashboardUrl, event.app)}   (its snapshots, and its recent jobs with their errors)`] : []),
    '',
    '-- ',
    `Sent by BYSU ${BYSU_VERSION} on ${sender}, once per change of state: the next email about ${event.app} comes when its state changes again.`,
  ];
  return {
    subject,
    text: `${lines.join('\n')}\n`,
    // Auto-Submitted keeps vacation responders quiet (RFC 3834); the X-BYSU headers are for mail filters.
    headers: { 'Auto-Submitted': 'auto-generated', 'X-BYSU-Event': event.event, 'X-BYSU-App': event.app },
  };
}

/**
 * Given the email settings, an alert event, the time allowed and the
 * environment holding the password, send the alert's email once. Resolves
 * with the recipients the server refused (the others got it); throws when
 * nothing was delivered: the server unreachable or silent past timeoutMs,
 * STARTTLS not offered when required, a certificate that does not verify,
 * the login or every recipient refused. The message names no password.
 */
export async function sendAlertEmail(settings: EmailConfig, event: AlertEvent, timeoutMs: number, env: NodeJS.ProcessEnv = process.env): Promise<{ rejected: string[] }> {
  const password = settings.passwordEnv === undefined ? undefined : env[settings.passwordEnv];
  if (settings.user !== undefined && !password) throw new Error(`the environment variable ${settings.passwordEnv} that holds the SMTP password is not set`);
  const transport = createTransport({
    host: settings.host,
    port: settings.port ?? DEFAULT_SMTP_PORTS[settings.security],
    secure: settings.security === 'tls',
    // starttls: refuse a server that does not offer it, rather than go on in clear; none: never try.
    requireTLS: settings.security === 'starttls',
    ignoreTLS: settings.security === 'none',
    ...(settings.user !== undefined ? { auth: { user: settings.user, pass: password! } } : {}),
    tls: { rejectUnauthorized: true, ...(settings.caFile !== undefined ? { ca: readFileSync(settings.caFile) } : {}) },
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
  });
  const message = composeAlertEmail(event, settings);
  let timer: NodeJS.Timeout | undefined;
  try {
    const sent = transport.sendMail({ from: settings.from, to: settings.to, ...message, disableFileAccess: true, disableUrlAccess: true });
    // Each step has its own timeout above; this bounds the whole, like a webhook's request.
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no delivery within ${timeoutMs} ms (notify.timeout)`)), timeoutMs);
    });
    const info = await Promise.race([sent, deadline]);
    return { rejected: info.rejected.map(String) };
  } catch (error) {
    const message = (error as Error).message;
    // Node's words for a certificate it cannot trust ("unable to verify the first certificate", "self-signed certificate"…).
    if (/certificate|altnames/i.test(message) && !/notify\.email\.caFile/.test(message)) {
      throw new Error(`${message} (the server's certificate does not verify${settings.caFile === undefined ? ': give the CA that signs it in notify.email.caFile' : ` against ${settings.caFile}`})`, { cause: error });
    }
    throw error;
  } finally {
    clearTimeout(timer);
    transport.close();
  }
}
