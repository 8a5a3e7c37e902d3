/**
 * A computation the dashboard runs once for many requests: requests that
 * arrive while it runs get its result, and the result is kept for a few
 * seconds so the requests right after get it too. A request with another key
 * (a reloaded config is a new object) never gets a result computed for the
 * old one; its computation starts once the running one has settled, so two
 * never run at once and a slow repository is not read by N scrapes in parallel.
 */

/** How long the dashboard keeps what it computed (the apps' states, the metrics) for the requests that follow. */
export const KEEP_RESULTS_MS = 5000;

export interface Computed<T> {
  value: T;
  /** When what `value` says was read (ms since the epoch): it is kept until then + maxAgeMs. */
  at: number;
}

export interface SharedComputationOptions<K> {
  /** How long a result serves later requests for the same key. @defaultValue KEEP_RESULTS_MS */
  maxAgeMs?: number;
  /** Whether two keys ask for the same result. @defaultValue `Object.is` (the same object) */
  sameKey?: (a: K, b: K) => boolean;
  /** The clock. @defaultValue Date.now */
  now?: () => number;
}

export class SharedComputation<K, T> {
  private kept: { key: K; result: Computed<T> } | null = null;
  private readonly running: { key: K; promise: Promise<Computed<T>> }[] = [];
  /** Settles when the last computation started has settled: the next one starts after it. */
  private tail: Promise<unknown> = Promise.resolve();
  private readonly maxAgeMs: number;
  private readonly sameKey: (a: K, b: K) => boolean;
  private readonly now: () => number;

  /** Given the computation (it says when its figures date from) and the options, share it. */
  constructor(private readonly compute: (key: K) => Promise<Computed<T>>, options: SharedComputationOptions<K> = {}) {
    this.maxAgeMs = options.maxAgeMs ?? KEEP_RESULTS_MS;
    this.sameKey = options.sameKey ?? Object.is;
    this.now = options.now ?? Date.now;
  }

  /**
   * Given a key, return a result for it: the kept one while it is younger
   * than maxAgeMs, else the one being computed for that key, else a new
   * computation, started when the running one (for another key) has settled.
   * A computation that throws rejects every caller waiting for it, and is
   * not kept.
   */
  get(key: K): Promise<Computed<T>> {
    if (this.kept && this.sameKey(this.kept.key, key) && this.now() - this.kept.result.at < this.maxAgeMs) return Promise.resolve(this.kept.result);
    const joined = this.running.find((entry) => this.sameKey(entry.key, key));
    if (joined) return joined.promise;
    const entry = { key, promise: this.tail.then(() => this.compute(key)) };
    this.running.push(entry);
    // Registered before any caller's: a caller that awaited the result finds it kept and the entry gone.
    const settled = () => void this.running.splice(this.running.indexOf(entry), 1);
    this.tail = entry.promise.then(
      (result) => {
        settled();
        this.kept = { key, result };
      },
      settled, // the callers have the error; a computation after it still runs
    );
    return entry.promise;
  }

  /** Given a test on keys, return the newest result kept for a key that passes it, however old (null: none). */
  latest(matches: (key: K) => boolean): Computed<T> | null {
    return this.kept && matches(this.kept.key) ? this.kept.result : null;
  }
}
