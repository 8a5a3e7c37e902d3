/**
 * Alerts: a JSON POST to `notify.webhook` when an app fails for good, goes
 * stale, or recovers, once per change of state (the last alerted state of
 * each app lives in Redis, so several workers and schedulers agree); and
 * healthchecks-style pings per app (GET <url> on success, <url>/fail on
 * failure). Deliveries are retried a few times in the background; a failed
 * delivery is logged and never fails a snapshot.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../log.ts';
import { redisKeys } from '../queue/jobs.ts';
import { BYSU_VERSION } from '../version.ts';

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
  timeoutMs: number;
  retryDelaysMs?: number[];
}

export class Notifier {
  private readonly pending = new Set<Promise<void>>();
  private readonly settings: () => NotifySettings;

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
  }

  /**
   * Given an event, record the app's new state and, when it changed, POST the
   * event to the webhook. A recovery is only announced after failing or stale.
   * The state is kept in two phases: `<state>|sending|<ms>` while a delivery is
   * under way, `<state>` once it was delivered. So an alert whose sender died
   * (kill -9, a power cut) or gave up is not taken as sent: the same event
   * reported again (the scheduler re-reports every failing and stale app on
   * each check) sends it, once its sending is older than the delivery bound.
   * Returns whether an alert was sent (queued for delivery).
   */
  async report(event: AlertEvent): Promise<boolean> {
    const state = STATE_FOR_EVENT[event.event];
    const key = redisKeys.alertState(this.prefix);
    // Drills and verifications have states of their own: a failed drill, a damaged snapshot and a failed backup are separate news.
    const field = event.event.startsWith('drill') ? `drill:${event.app}` : event.event.startsWith('corrupt') ? `verify:${event.app}` : event.app;
    const now = Date.now();
    const options = this.settings();
    const sending = options.webhook === '' ? state : `${state}|sending|${now}`;
    // One script: read the previous value and decide and write, so that two reporters never both send.
    const previous = (await this.redis.eval(REPORT_SCRIPT, 1, key, field, state, sending, String(now - deliveryBoundMs(options)))) as string | null;
    if (previous === null) return false;
    if (options.webhook === '') return false;
    this.deliver(options, `webhook for ${event.app}`, () => fetch(options.webhook, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': `bysu/${BYSU_VERSION}` },
      body: JSON.stringify({ source: 'bysu', ...event }),
      signal: AbortSignal.timeout(options.timeoutMs),
    }), async () => {
      // Delivered: the state is settled (unless it moved on meanwhile).
      await this.redis.eval(SETTLE_SCRIPT, 1, key, field, sending, state);
    }, async () => {
      // Undelivered: put the old state back (unless it moved on meanwhile) so that the next report alerts again.
      await this.redis.eval(SETTLE_SCRIPT, 1, key, field, sending, previous);
    });
    return true;
  }

  /** Given an app's ping URL, GET it (success) or `<url>/fail` (failure), in the background. */
  ping(app: string, url: string | undefined, success: boolean): void {
    if (!url) return;
    const target = new URL(url);
    if (!success) target.pathname = `${target.pathname.replace(/\/+$/, '')}/fail`;
    const options = this.settings();
    this.deliver(options, `ping for ${app}`, () => fetch(target, { headers: { 'user-agent': `bysu/${BYSU_VERSION}` }, signal: AbortSignal.timeout(options.timeoutMs) }));
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

  private deliver(options: NotifySettings, what: string, send: () => Promise<Response>, delivered?: () => Promise<void>, undelivered?: () => Promise<void>): void {
    const task = (async () => {
      for (let attempt = 0; ; attempt += 1) {
        try {
          const response = await send();
          await response.body?.cancel();
          if (response.ok) {
            await delivered?.().catch((failure: unknown) => this.logger.error({ err: (failure as Error).message }, `${what}: delivered, but cannot record it (it may be sent again)`));
            return;
          }
          throw new Error(`HTTP ${response.status}`);
        } catch (error) {
          const delay = (options.retryDelaysMs ?? RETRY_DELAYS_MS)[attempt];
          // URLs may carry tokens: never log them.
          const reason = redactUrls((error as Error).message);
          if (delay === undefined) {
            this.logger.error({ err: reason, attempts: attempt + 1 }, `${what}: delivery failed`);
            await undelivered?.().catch((failure: unknown) => this.logger.error({ err: (failure as Error).message }, `${what}: cannot reset the alert state`));
            return;
          }
          this.logger.warn({ err: reason, retryInMs: delay }, `${what}: delivery failed, retrying`);
          await new Promise((resolve) => setTimeout(resolve, delay));
        }
      }
    })();
    this.pending.add(task);
    void task.finally(() => this.pending.delete(task));
  }
}

/** The longest one delivery can take, every try included. */
function deliveryBoundMs(options: NotifySettings): number {
  const delays = options.retryDelaysMs ?? RETRY_DELAYS_MS;
  return options.timeoutMs * (delays.length + 1) + delays.reduce((sum, delay) => sum + delay, 0) + 1000;
}

function redactUrls(text: string): string {
  return text.replace(/https?:\/\/\S+/g, '<url>');
}
