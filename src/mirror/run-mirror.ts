/**
 * One run of a mirror: ask the source for its apps and their snapshots, copy
 * the ones this repository lacks (newest first, `concurrency` at once, every
 * byte paced by `maxRate`), record what was seen in each app's
 * `.mirror.json`, then apply this side's own retention.
 *
 * What this side keeps is its own: `mirrors[].keep`, else the largest `keep`
 * the source has ever said for the app (a source that lowers its keep, or
 * that was taken over and set it to 1, does not shrink the copies here).
 * Retention counts the copies here only, so snapshots that vanished on the
 * source are never deleted here because of that, and it also keeps the
 * newest copy of each of the last `keep` arrival days and the first to
 * arrive of each of the last `keep` snapshot days, so a flood of new
 * snapshots cannot push the good ones out (keep.ts). Only the `keep` newest of
 * what the source lists and what is here are copied: an older one would be
 * deleted at once.
 */
import type { Config, MirrorConfig } from '../config/load.ts';
import { ConfigError, isRetryable, RepositoryUnavailableError, StorageError, toError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { compareSnapshotIds, snapshotIdTime } from '../repository/layout.ts';
import { listSnapshots } from '../repository/read.ts';
import type { ReadThrottle } from '../repository/read-throttle.ts';
import { applyRetention } from '../retention/apply.ts';
import { copySnapshot, removeUnwantedPartials, type CopyResult } from './copy.ts';
import { arrivedAt, protectedCopies } from './keep.ts';
import { MIRROR_RECORD_FORMAT, readMirrorRecord, recordMirrorContact, writeMirrorRecord, type MirrorRecord } from './record.ts';
import { MirrorSource, MirrorSourceError, type SourceApp, type SourceSnapshot } from './source.ts';

/** How far in the future a source's snapshot may be dated (clocks differ a little) before it is refused. */
export const FUTURE_SKEW_MS = 10 * 60_000;

/** Given the mirror and the environment, return its source; throw ConfigError when the token's variable is not set. */
export function mirrorSource(mirror: MirrorConfig, env: NodeJS.ProcessEnv = process.env): MirrorSource {
  const token = env[mirror.tokenEnv];
  if (!token) throw new ConfigError([`mirrors[${mirror.name}].tokenEnv: ${mirror.tokenEnv} is not set in this process's environment; set it to the source's dashboard.apiToken`]);
  return new MirrorSource(mirror.name, mirror.url, token);
}

export interface MirrorRunOptions {
  signal?: AbortSignal;
  throttle?: ReadThrottle;
  /** Throws when this worker no longer owns the job. */
  fence: () => Promise<void>;
  /**
   * Whether the config was reloaded and its file not yet read again
   * (LiveConfig.reloadUnverified): it may have been cut short (`keep: 12`
   * read as `keep: 1`), so the run deletes no copies and records no keep
   * read from it; the next run applies the keep.
   */
  reloadUnverified?: boolean;
  /** Runs fn holding the app's lock (commits and retention). */
  lockApp: <T>(app: string, fn: (lease?: { confirm(): Promise<void> }) => Promise<T>) => Promise<T>;
  logger: Logger;
  env?: NodeJS.ProcessEnv;
  now?: () => Date;
}

export interface MirrorAppResult {
  app: string;
  copied: string[];
  /** Bytes received from the source, and bytes kept from an interrupted earlier run. */
  received: number;
  resumed: number;
  deleted: string[];
  /** Snapshots listed by the source that are still not here (failed, or beyond keep). */
  behind: number;
  error?: string;
  /** Whether another attempt may mend the error (false: a damaged file on the source, a name clash). */
  retryable?: boolean;
  /** The failure is this side's (a full disk, the repository unavailable): waiting for the source will not mend it. */
  local?: boolean;
}

/** Given an error, whether it is this side's (the repository), not the source's or the link's. */
const isLocal = (error: unknown) => error instanceof StorageError || error instanceof RepositoryUnavailableError;

export interface MirrorRunResult {
  mirror: string;
  apps: MirrorAppResult[];
  /** The failures of the run, one line per app; empty when all went well. */
  failures: string[];
  /** Whether any failure may be mended by another attempt soon. */
  retryable: boolean;
}

/**
 * Given the config, the mirror's name and the run's options, run the mirror
 * once; return what it did. Never throws for one app's failure (it is in
 * the result and the app's record); throws when the source cannot be asked
 * at all (MirrorSourceError, ConfigError) or the repository is unavailable.
 */
export async function runMirror(config: Config, name: string, options: MirrorRunOptions): Promise<MirrorRunResult> {
  const mirror = config.mirrors.find((candidate) => candidate.name === name);
  if (!mirror) throw new ConfigError([`no mirror named "${name}" (configured: ${config.mirrors.map((each) => each.name).join(', ') || 'none'})`]);
  const source = mirrorSource(mirror, options.env);
  const now = options.now ?? (() => new Date());
  let listedApps: Awaited<ReturnType<MirrorSource['apps']>>;
  try {
    listedApps = await source.apps(options.signal);
  } catch (error) {
    if (!options.signal?.aborted) await recordMirrorContact(config.repository, name, { at: now().toISOString(), error: toError(error).message }).catch(() => undefined);
    throw error;
  }
  const result: MirrorRunResult = { mirror: name, apps: [], failures: [], retryable: false };
  // Not fatal: on a full disk the run goes on, removing downloads no longer wanted, which may be what frees
  // it; the record is tried again at the end.
  const answeredAt = now().toISOString();
  const contactRecorded = await recordMirrorContact(config.repository, name, { at: answeredAt }).then(() => true, () => false);
  const local = new Set(config.apps.map((app) => app.name));
  // An entry no BYSU source lists (a name that is not an app name) is named, not passed over in silence.
  for (const entry of listedApps.filter((candidate) => candidate.refused !== undefined && (mirror.apps === 'all' || mirror.apps.includes(candidate.app)))) {
    options.logger.error({ mirror: name }, entry.refused!);
    result.failures.push(entry.refused!);
  }
  const listed = listedApps.filter((entry) => entry.refused === undefined);
  const wanted = mirror.apps === 'all' ? listed.map((entry) => entry.app) : mirror.apps;
  for (const app of wanted) {
    const log = options.logger.child({ app, mirror: name });
    if (local.has(app)) {
      const reason = `${app} is an app of this BYSU (apps[${app}]): not copied from mirror source ${name}`;
      log.error(reason);
      result.apps.push({ app, copied: [], received: 0, resumed: 0, deleted: [], behind: 0, error: reason, retryable: false });
      result.failures.push(reason);
      continue;
    }
    const outcome = await mirrorApp(config, mirror, source, app, listed, options, log, now);
    result.apps.push(outcome);
    if (outcome.error) result.failures.push(`${app}: ${outcome.error}`);
    if (outcome.error && outcome.retryable !== false) result.retryable = true;
  }
  if (!contactRecorded) {
    await recordMirrorContact(config.repository, name, { at: answeredAt }).catch((error: unknown) => {
      options.logger.error({ mirror: name, err: toError(error).message }, 'cannot record that the source answered');
      result.failures.push(toError(error).message);
      result.retryable = true;
    });
  }
  return result;
}

async function mirrorApp(
  config: Config, mirror: MirrorConfig, source: MirrorSource, app: string, listedApps: readonly SourceApp[], options: MirrorRunOptions, log: Logger, now: () => Date,
): Promise<MirrorAppResult> {
  const entry = listedApps.find((candidate) => candidate.app === app);
  const saidKeep = entry?.keep ?? null;
  const repository = config.repository;
  const outcome: MirrorAppResult = { app, copied: [], received: 0, resumed: 0, deleted: [], behind: 0 };
  const previous = await readMirrorRecord(repository, app);
  const heldElsewhere = (holder: string): MirrorAppResult => {
    outcome.error = `${app} here holds copies from mirror source ${holder}, not ${mirror.name}: not copied (one app's snapshots come from one place)`;
    outcome.retryable = false;
    log.error(outcome.error);
    return outcome;
  };
  if (previous !== null && previous.source !== mirror.name) return heldElsewhere(previous.source);
  if (previous !== null && previous.url !== mirror.url) {
    log.warn({ was: previous.url, now: mirror.url }, `mirror source ${mirror.name} has a new url: copies of ${app} from ${mirror.url} join those from ${previous.url} (one app, one mirror name); if that is not the same source, give it another mirror name`);
  }
  let listed: SourceSnapshot[];
  const refused: string[] = [];
  try {
    // A snapshot dated in the future (by its id or its finishedAt) would rank above every real one for good:
    // retention would keep it over the good copies, and the lag would read 0 from then on. Refused, by name.
    const horizon = now().getTime() + FUTURE_SKEW_MS;
    // Named here but not listed there (a typo, or renamed or removed on the source): a failure, not "0 copied",
    // and the record is not refreshed, so that the app goes STALE after maxLag.
    if (entry === undefined) {
      throw new MirrorSourceError(`${app} is not among the apps mirror source ${mirror.name} lists (${listedApps.map((candidate) => candidate.app).join(', ') || 'none'}): nothing copied; is mirrors[${mirror.name}].apps right, or was the app renamed or removed on the source?`, { retryable: false });
    }
    listed = (await source.snapshots(app, options.signal)).filter((snapshot) => {
      // `!(… <= horizon)`: a time that does not parse is refused too.
      const future = !(snapshotIdTime(snapshot.id).getTime() <= horizon) || !(Date.parse(snapshot.finishedAt) <= horizon);
      if (future) refused.push(`${app}/${snapshot.id} on mirror source ${mirror.name} is dated in the future (finished ${snapshot.finishedAt}; now ${now().toISOString()}): not copied (is the source's clock wrong, or the source not to be trusted?)`);
      return !future;
    });
  } catch (error) {
    outcome.error = toError(error).message;
    outcome.retryable = isRetryable(error);
    log.error({ err: outcome.error }, 'cannot list the source\'s snapshots');
    if (previous !== null) await writeMirrorRecord(repository, app, { ...previous, lastError: { at: now().toISOString(), reason: outcome.error } }).catch(() => undefined);
    return outcome;
  }
  // Without mirrors[].keep: the largest keep the source said, never less than the keep applied here before (a
  // source that lowers its keep, or says none, does not shrink the copies), and at most twice the first keep
  // applied here (a source taken over that says keep 1000000000 does not make this side hold all it sends).
  const sourceKeep = Math.max(saidKeep ?? 0, previous?.sourceKeep ?? 0) || null;
  // A record from before keepFirst and keepUsed: the keep that release applied (mirrors[].keep, else what the
  // source said, else defaults.keep) counts as both.
  const keptBefore = previous === null ? null : previous.keepUsed ?? mirror.keep ?? previous.sourceKeep ?? config.defaults.keep;
  const keepFirst = previous?.keepFirst ?? keptBefore ?? mirror.keep ?? saidKeep ?? config.defaults.keep;
  const wanted = Math.max(sourceKeep ?? config.defaults.keep, keptBefore ?? 0);
  if (mirror.keep === undefined && wanted > 2 * keepFirst) {
    log.warn({ said: sourceKeep, followed: 2 * keepFirst }, `the source says keep ${sourceKeep} for ${app}; followed only up to ${2 * keepFirst}, twice the first keep here: set mirrors[${mirror.name}].keep to keep more`);
  }
  const keep = mirror.keep ?? Math.min(wanted, 2 * keepFirst);
  // A file cut short must neither prune the copies nor become the keep a later run counts from.
  const unverified = options.reloadUnverified === true;
  const record: MirrorRecord = {
    format: MIRROR_RECORD_FORMAT,
    source: mirror.name,
    url: mirror.url,
    checkedAt: now().toISOString(),
    sourceSnapshots: listed.map(({ id, finishedAt }) => ({ id, finishedAt })),
    sourceKeep,
    keepFirst: unverified ? previous?.keepFirst ?? null : keepFirst,
    keepUsed: unverified ? previous?.keepUsed ?? null : keep,
    lastCopy: previous?.lastCopy ?? null,
    lastError: null,
  };
  const here = new Set((await listSnapshots(repository, app)).filter((snapshot) => snapshot.manifest !== null).map((snapshot) => snapshot.id));
  // The keep newest of what is here and what the source lists: copying an older one would only see it deleted.
  const newest = new Set([...new Set([...here, ...listed.map((snapshot) => snapshot.id)])].sort(compareSnapshotIds).reverse().slice(0, keep));
  const toCopy = listed.filter((snapshot) => newest.has(snapshot.id) && !here.has(snapshot.id));
  // Claimed under the app's lock: two mirrors with `apps: all` whose sources both list this app, running at
  // once, would both read "no record" above and mix their copies here. The second now finds the first's.
  // Downloads no longer wanted go first, before anything is written: on a full disk they may be what fills it.
  let holder: string | null;
  try {
    holder = await options.lockApp(app, async () => {
      const current = await readMirrorRecord(repository, app);
      if (current !== null && current.source !== mirror.name) return current.source;
      const removed = await removeUnwantedPartials(repository, app, new Set(toCopy.map((snapshot) => snapshot.id)));
      if (removed.length > 0) log.info({ removed }, 'downloads of snapshots no longer wanted removed');
      await writeMirrorRecord(repository, app, record);
      return null;
    });
  } catch (error) {
    if (options.signal?.aborted) throw error;
    outcome.error = toError(error).message;
    outcome.retryable = isRetryable(error);
    if (isLocal(error)) outcome.local = true;
    log.error({ err: outcome.error }, 'cannot record the source\'s listing');
    return outcome;
  }
  if (holder !== null) return heldElsewhere(holder);
  const errors: string[] = [...refused];
  let retryable = false;
  let next = 0;
  // A run that lost its job (frozen past its lock, Redis lost and the job taken over) stops at its first failure,
  // and stops its other downloads: the run that took over copies the rest.
  const lost = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, lost.signal]) : lost.signal;
  const copyNext = async (): Promise<void> => {
    while (next < toCopy.length) {
      const snapshot = toCopy[next++]!;
      const started = Date.now();
      try {
        const copied: CopyResult = await copySnapshot(repository, source, app, snapshot, {
          signal,
          ...(options.throttle ? { throttle: options.throttle } : {}),
          stallTimeoutMs: mirror.stallTimeoutMs,
          fence: options.fence,
          lockApp: (fn) => options.lockApp(app, fn),
        });
        outcome.received += copied.received;
        outcome.resumed += copied.resumed;
        if (!copied.alreadyHere) {
          outcome.copied.push(copied.id);
          record.lastCopy = { id: copied.id, at: now().toISOString() };
          const ms = Date.now() - started;
          log.info({ id: copied.id, bytes: copied.bytes, received: copied.received, resumed: copied.resumed, ms, mibPerSecond: ms > 0 ? Math.round((copied.received / 1048576 / (ms / 1000)) * 10) / 10 : null }, 'snapshot copied');
        }
      } catch (error) {
        if (signal.aborted) throw error;
        // A failure may be the job lost (the fence after a part): is this run still the job's?
        await options.fence().catch((fenceError: unknown) => {
          lost.abort(fenceError);
          throw fenceError;
        });
        const message = toError(error).message;
        errors.push(message);
        if (isRetryable(error)) retryable = true;
        if (isLocal(error)) outcome.local = true;
        log.error({ id: snapshot.id, err: message }, 'snapshot not copied');
      }
    }
  };
  const settled = await Promise.allSettled(Array.from({ length: Math.min(mirror.concurrency, Math.max(1, toCopy.length)) }, () => copyNext()));
  if (lost.signal.aborted) throw lost.signal.reason;
  const thrown = settled.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
  if (thrown) throw thrown.reason;
  outcome.behind = toCopy.filter((snapshot) => !outcome.copied.includes(snapshot.id)).length;
  if (errors.length > 0) {
    outcome.error = errors.join('; ');
    outcome.retryable = retryable;
    record.lastError = { at: now().toISOString(), reason: outcome.error, ...(outcome.local ? { local: true } : {}) };
  }
  // A run that lost its job (frozen past its lock) writes nothing more: the run that took over has the say.
  await options.fence();
  await writeMirrorRecord(repository, app, record).catch((error: unknown) => {
    log.error({ err: toError(error).message }, 'cannot record the run');
    outcome.error = [outcome.error, toError(error).message].filter(Boolean).join('; ');
    outcome.retryable = true;
    if (isLocal(error)) outcome.local = true;
  });

  if (unverified) {
    log.warn({ keep }, `the config was reloaded and its file not yet read again (it may have been cut short): this run deletes no copies; keep ${keep} applies from the next run once the reload is verified`);
    return outcome;
  }
  // The newest copy of each of the last `keep` arrival days and the first to arrive of each of the last `keep`
  // snapshot days stay too, so a flood cannot push the good copies out (keep.ts).
  const held = (await listSnapshots(repository, app)).flatMap((snapshot) => (snapshot.manifest === null ? [] : [{ id: snapshot.id, arrivedAt: arrivedAt(snapshot.manifest) }]));
  const protect = protectedCopies(held, keep);
  const retention = await applyRetention(repository, { app, keep, incomingMaxAgeMs: mirror.stallTimeoutMs * 2 + config.retention.incomingMarginMs }, new Set(), {
    logger: log,
    lock: (fn) => options.lockApp(app, () => fn()),
    protect,
  });
  outcome.deleted = retention.deleted;
  if (retention.deleted.length > 0 || retention.plan.keep.length > keep) {
    log.info({ keep, held: retention.plan.keep.length, deleted: retention.deleted }, retention.plan.keep.length > keep
      ? 'retention applied to the copies; more than keep stay, kept by the days they arrived on or were taken on'
      : 'retention applied to the copies');
  }
  return outcome;
}
