/**
 * One voice per notifier for an alert channel whose server fails (email):
 * while it is down every try of every alert fails, and the scheduler sends
 * each failing app's alert again at each check, so logged one by one a
 * night's outage would be thousands of lines. The rule is Redis's
 * (queue/redis-health.ts): the first failure is logged, then at most one
 * line per interval with how many tries failed, then one line when a
 * delivery gets through again.
 */
import { formatDuration } from '../config/formats.ts';
import type { Logger } from '../log.ts';

/** Least time between two "still failing" lines of one channel. */
export const DELIVERY_LOG_INTERVAL_MS = 60_000;
/** Alerts named in a line at most; the count says the rest. */
const NAMED_ALERTS = 10;
/** Alerts remembered per outage. */
const MAX_REMEMBERED = 1000;

interface Outage {
  since: number;
  lastLineAt: number;
  /** Tries failed since the last line, and over the whole outage. */
  failedSinceLine: number;
  failedTotal: number;
  /** Alerts whose every try failed during the outage. */
  givenUp: string[];
}

export class DeliveryHealth {
  private outage: Outage | null = null;

  /** Given where to log, the channel's name in messages (`email`) and the least time between two repeats. */
  constructor(private readonly logger: Logger, private readonly channel: string, private readonly intervalMs = DELIVERY_LOG_INTERVAL_MS) {
    if (!(intervalMs > 0)) throw new Error(`DeliveryHealth intervalMs must be greater than 0, got ${intervalMs}`);
  }

  /** Whether the last try through this channel failed. */
  get failing(): boolean {
    return this.outage !== null;
  }

  /**
   * Given the server, the alert (`email for shop`), why the try failed and
   * when the next try is (undefined: none, the alert is given up), log it if
   * it starts an outage, else count it and log at most once per interval.
   */
  failed(server: string, alert: string, reason: string, retryInMs: number | undefined): void {
    const now = Date.now();
    if (this.outage === null) {
      this.outage = { since: now, lastLineAt: now, failedSinceLine: 0, failedTotal: 1, givenUp: [] };
      this.logger.error({ channel: this.channel, server, alert, err: reason, retryInMs },
        `${this.channel} via ${server} failed: ${reason}; each alert is retried with backoff (a failed or stale one also at each scheduler check), ` +
        'and further failures are counted, not logged, until one gets through');
    } else {
      this.outage.failedSinceLine += 1;
      this.outage.failedTotal += 1;
    }
    // Bounded: a fleet's worth of names, not one per try.
    if (retryInMs === undefined && this.outage.givenUp.length < MAX_REMEMBERED && !this.outage.givenUp.includes(alert)) this.outage.givenUp.push(alert);
    if (now - this.outage.lastLineAt >= this.intervalMs) {
      const { failedSinceLine, givenUp } = this.outage;
      this.logger.warn({ channel: this.channel, server, err: reason, failedTries: failedSinceLine, downForMs: now - this.outage.since, undelivered: givenUp.slice(0, NAMED_ALERTS) },
        `${this.channel} via ${server} still failing: ${failedSinceLine} tries failed since the last line; undelivered: ${this.describeGivenUp()}`);
      this.outage.lastLineAt = now;
      this.outage.failedSinceLine = 0;
    }
  }

  /** A delivery through `server` got through: end the outage, if any, with one line. */
  delivered(server: string): void {
    if (this.outage === null) return;
    const downMs = Date.now() - this.outage.since;
    this.logger.info({ channel: this.channel, server, downMs, failedTries: this.outage.failedTotal, undelivered: this.outage.givenUp.slice(0, NAMED_ALERTS) },
      `${this.channel} via ${server} delivers again after ${formatDuration(Math.max(1000, Math.round(downMs / 1000) * 1000))}; ` +
      `${this.outage.failedTotal} tries had failed; undelivered meanwhile: ${this.describeGivenUp()}`);
    this.outage = null;
  }

  private describeGivenUp(): string {
    const givenUp = this.outage?.givenUp ?? [];
    if (givenUp.length === 0) return 'none yet';
    const named = givenUp.slice(0, NAMED_ALERTS).join(', ') + (givenUp.length > NAMED_ALERTS ? `, … (${givenUp.length} in all)` : '');
    return `${named} (failed and stale alerts are sent again at the scheduler's next check)`;
  }
}
