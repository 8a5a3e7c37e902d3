/**
 * Alerts: a JSON POST to `notify.webhook` and an email (`notify.email`,
 * email.ts) when an app fails for good, goes stale, or recovers, once per
 * change of state and per channel (the last alerted state of each app and
 * channel lives in Redis, so several workers and schedulers agree, and one
 * channel failing never holds back or repeats the other); and
 * healthchecks-style pings per app (GET <url> on success, <url>/fail on
 * failure). Deliveries are retried a few times in the background; a failed
 * delivery is logged and never fails or delays a snapshot.
 */
import type { Redis } from 'ioredis';
import type { EmailConfig } from '../config/load.ts';
import type { Logger } from '../log.ts';
import { redisKeys } from '../queue/jobs.ts';
import { BYSU_VERSION } from '../version.ts';
import { DeliveryHealth } from './delivery-health.ts';
import { sendAlertEmail, smtpServer } from './email.ts';

export type AlertState = 'ok' | 'failing' | 'stale';

export interface AlertEvent {
  event: 'failed' | 'stale' | 'recovered' | 'drill-failed' | 'drill-recovered' | 'corrupt' | 'corrupt-cleared';
  app: string;
  node?: string;
  /** ISO time of the event. */
  at: string;
  /** Why it failed (failed), since when nothing new (stale), or which snapshot and file are damaged (corrupt). */
  reason?: string;
  /** The newest complete snapshot, when there is one. */
  lastSnapshot?: { id: string; finishedAt: string } | null;
}

const STATE_FOR_EVENT: Record<AlertEvent['event'], AlertState> = { failed: 'failing', stale: 'stale', recovered: 'ok', 'drill-failed': 'failing', 'drill-recovered': 'ok', corrupt: 'failing', 'corrupt-cleared': 'ok' };
/** Delays between delivery attempts. */
const RETRY_DELAYS_MS = [1000, 3000, 9000];

/**
 * KEYS[1] alert states; ARGV: field, new state, value to write, and the time
 * before which a `sending` mark is stale. Returns the previous value ('' for
 * none) when an alert must be sent (the value is then written), nil when not:
 * the state is unchanged and delivered, or being delivered by someone alive, or
 * a recovery from a state that was never announced.
 */
const REPORT_SCRIPT = `
local old = redis.call('HGET', KEYS[1], ARGV[1])
local oldState, mark, since = nil, nil, nil
if old then oldState, mark, since = string.match(old, '^([^|]+)|?([^|]*)|?(%d*)$') end
if oldState == ARGV[2] then
  if mark ~= 'sending' then return nil end
  if tonumber(since) ~= nil and tonumber(since) > tonumber(ARGV[4]) then return nil end
end
if ARGV[2] == 'ok' and oldState ~= 'failing' and oldState ~= 'stale' then
  redis.call('HSET', KEYS[1], ARGV[1], 'ok')
  return nil
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return old or ''
`;

/** KEYS[1] alert states; ARGV: field, the value this delivery wrote, the value to settle on ('' deletes). */
const SETTLE_SCRIPT = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
end
return 0
`;

export interface NotifySettings {
  webhook: string;
  /** Email alerts; absent: none. */
  email?: EmailConfig;
  timeoutMs: number;
  retryDelaysMs?: number[];
}

/** One way an alert goes out, with its own alert state in Redis. */
interface AlertChannel {
  /** The field of the alert-state hash that holds this channel's state of the app. */
  field: string;
  /** The alert, in log lines: `webhook for shop`. */
  what: string;
  /** One try at delivering the alert (throws when it did not arrive); null when the channel is off. */
  send: (() => Promise<void>) | null;
  /** Where its failures are counted (once per outage) instead of logged one by one. */
  health?: { tracker: DeliveryHealth; server: string };
}

/** What a delivery does once it ends, and where its failures go. */
interface DeliveryHooks {
  delivered?: () => Promise<void>;
  undelivered?: () => Promise<void>;
  health?: AlertChannel['health'];
}

export class Notifier {
  private readonly pending = new Set<Promise<void>>();
  private readonly settings: () => NotifySettings;
  private readonly emailHealth: DeliveryHealth;

  /**
   * `settings` may be a function: each report and ping reads it when it
   * starts, so a process whose config is reloaded alerts where the config says
   * now (a webhook added by SIGHUP receives the next failure).
   */
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    settings: NotifySettings | (() => NotifySettings),
    private readonly logger: Logger,
  ) {
    this.settings = typeof settings === 'function' ? settings : () => settings;
    this.emailHealth = new DeliveryHealth(logger, 'email');
  }

  /**
   * Given an event, record the app's new state and, when it changed, send the
   * event through each channel: a POST to the webhook, an email. Each channel
   * keeps its own state of the app (the webhook's field is the app's name,
   * the email's `email:<app>`), so each sends once per change and one that
   * fails is sent again without repeating the other. A recovery is only
   * announced after failing or stale. The state is kept in two phases:
   * `<state>|sending|<ms>` while a delivery is under way, `<state>` once it
   * was delivered. So an alert whose sender died (kill -9, a power cut) or
   * gave up is not taken as sent: the same event reported again (the
   * scheduler re-reports every failing and stale app on each check) sends
   * it, once its sending is older than the delivery bound. Returns whether
   * an alert was sent (queued for delivery) through any channel.
   */
  async report(event: AlertEvent): Promise<boolean> {
    const options = this.settings();
    // Drills and verifications have states of their own: a failed drill, a damaged snapshot and a failed backup are separate news.
    const field = event.event.startsWith('drill') ? `drill:${event.app}` : event.event.startsWith('corrupt') ? `verify:${event.app}` : event.app;
    const channels: AlertChannel[] = [{
      field,
      what: `webhook for ${event.app}`,
      send: options.webhook === '' ? null : () => this.post(options.webhook, options.timeoutMs, JSON.stringify({ source: 'bysu', ...event })),
    }];
    const { email } = options;
    if (email !== undefined) {
      const what = `email for ${event.app}`;
      channels.push({
        field: `email:${field}`,
        what,
        send: async () => {
          const { rejected } = await sendAlertEmail(email, event, options.timeoutMs);
          if (rejected.length > 0) this.logger.warn({ rejected }, `${what}: delivered, but the server refused ${rejected.join(', ')}`);
        },
        health: { tracker: this.emailHealth, server: smtpServer(email) },
      });
    }
    let sent = false;
    for (const channel of channels) {
      if (await this.reportTo(channel, STATE_FOR_EVENT[event.event], options)) sent = true;
    }
    return sent;
  }

  /** Given a channel and the app's new state, record it in the channel's field and deliver when it changed; returns whether it sends. */
  private async reportTo(channel: AlertChannel, state: AlertState, options: NotifySettings): Promise<boolean> {
    const key = redisKeys.alertState(this.prefix);
    const now = Date.now();
    const sending = channel.send === null ? state : `${state}|sending|${now}`;
    // One script: read the previous value and decide and write, so that two reporters never both send.
    const previous = (await this.redis.eval(REPORT_SCRIPT, 1, key, channel.field, state, sending, String(now - deliveryBoundMs(options)))) as string | null;
    if (previous === null || channel.send === null) return false;
    this.deliver(options, channel.what, channel.send, {
      // Delivered: the state is settled (unless it moved on meanwhile).
      delivered: async () => {
        await this.redis.eval(SETTLE_SCRIPT, 1, key, channel.field, sending, state);
      },
      // Undelivered: put the old state back (unless it moved on meanwhile) so that the next report alerts again.
      undelivered: async () => {
        await this.redis.eval(SETTLE_SCRIPT, 1, key, channel.field, sending, previous);
      },
      health: channel.health,
    });
    return true;
  }

  /** Given an app's ping URL, GET it (success) or `<url>/fail` (failure), in the background. */
  ping(app: string, url: string | undefined, success: boolean): void {
    if (!url) return;
    const target = new URL(url);
    if (!success) target.pathname = `${target.pathname.replace(/\/+$/, '')}/fail`;
    const options = this.settings();
    this.deliver(options, `ping for ${app}`, () => this.get(target, options.timeoutMs));
  }

  /** Wait for deliveries in flight (bounded by timeoutMs per try), e.g. before exit. */
  async flush(): Promise<void> {
    await Promise.allSettled([...this.pending]);
  }

  /**
   * Before exit: wait for deliveries in flight, but no longer than every try
   * of one delivery can take (an undelivered alert resets its state in Redis,
   * which waits forever while Redis is unreachable). Returns how many were
   * left undelivered, each logged.
   */
  async flushBeforeExit(): Promise<number> {
    const boundMs = deliveryBoundMs(this.settings());
    const pending = [...this.pending];
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled(pending), new Promise((resolve) => (timer = setTimeout(resolve, boundMs)))]);
    clearTimeout(timer);
    const left = this.pending.size;
    if (left > 0) this.logger.warn({ left, waitedMs: boundMs }, `${left} alert(s) still undelivered at exit: given up`);
    return left;
  }

  /** POST a JSON body; throws unless the answer is 2xx. */
  private async post(url: string, timeoutMs: number, body: string): Promise<void> {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': `bysu/${BYSU_VERSION}` },
      body,
      signal: AbortSignal.timeout(timeoutMs),
    });
    await answered(response);
  }

  /** GET a URL; throws unless the answer is 2xx. */
  private async get(url: URL, timeoutMs: number): Promise<void> {
    await answered(await fetch(url, { headers: { 'user-agent': `bysu/${BYSU_VERSION}` }, signal: AbortSignal.timeout(timeoutMs) }));
  }

  /**
   * Given one try at a delivery, run it in the background, retried after each
   * of the retry delays, then given up. A channel with a health tracker has
   * its failures counted there (logged once per outage); the others log each.
   */
  private deliver(options: NotifySettings, what: string, send: () => Promise<void>, hooks: DeliveryHooks = {}): void {
    const { delivered, undelivered, health } = hooks;
    const task = (async () => {
      for (let attempt = 0; ; attempt += 1) {
        try {
          await send();
          health?.tracker.delivered(health.server);
          await delivered?.().catch((failure: unknown) => this.logger.error({ err: (failure as Error).message }, `${what}: delivered, but cannot record it (it may be sent again)`));
          return;
        } catch (error) {
          const delay = (options.retryDelaysMs ?? RETRY_DELAYS_MS)[attempt];
          // URLs may carry tokens: never log them.
          const reason = redactUrls((error as Error).message);
          if (health) health.tracker.failed(health.server, what, reason, delay);
          else if (delay === undefined) this.logger.error({ err: reason, attempts: attempt + 1 }, `${what}: delivery failed`);
          else this.logger.warn({ err: reason, retryInMs: delay }, `${what}: delivery failed, retrying`);
          if (delay === undefined) {
            await undelivered?.().catch((failure: unknown) => this.logger.error({ err: (failure as Error).message }, `${what}: cannot reset the alert state`));
            return;
          }
          await new Promise((resolve) => setTimeout(resolve, delay));
        }
      }
    })();
    this.pending.add(task);
    void task.finally(() => this.pending.delete(task));
  }
}

/** Given an HTTP answer, discard its body; throw unless it is 2xx. */
async function answered(response: Response): Promise<void> {
  await response.body?.cancel();
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
}

/** The longest one delivery can take, every try included. */
function deliveryBoundMs(options: NotifySettings): number {
  const delays = options.retryDelaysMs ?? RETRY_DELAYS_MS;
  return options.timeoutMs * (delays.length + 1) + delays.reduce((sum, delay) => sum + delay, 0) + 1000;
}

function redactUrls(text: string): string {
  return text.replace(/https?:\/\/\S+/g, '<url>');
}
