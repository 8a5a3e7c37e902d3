/**
 * Scenario (f): reads of a fleet-sized repository. One real snapshot, taken by
 * BYSU earlier in the run, is copied into N apps × 14 snapshots (hard links for
 * the part files, a manifest of its own for each copy: app, node, id, times),
 * configured as N apps on 100 nodes (nothing logs in to them: reads only).
 * Timed, each as a user or Prometheus meets it: `bysu status` and `status
 * --json` (the CLI with its start), the dashboard's `/metrics` on its first
 * scrape after a start (until a fresh answer: past its bound it answers at
 * once, marked stale) and on one past its keep time, `/api/apps` (bearer
 * token) likewise; the scheduler's first reconcile (N job schedulers
 * created) and a restart's; and, in the same rounds, the floor of a full
 * scan: `find <repo> -name manifest.json | xargs cat > /dev/null`.
 *
 * The readers keep a per-app summary beside the snapshots: status's "cold"
 * is taken after removing every summary (the first read after an upgrade, or
 * after all were deleted), "warm" once the readers have written them back
 * (the read after the app directories are RACY_MS old). The dashboard's are
 * taken with the summaries present, as the writers keep them. Page cache:
 * warm throughout, both sides.
 */
import { existsSync, linkSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { DIR_MODE, FILE_MODE, LATEST_LINK, MANIFEST_FILE, REPOSITORY_MARKER_FILE, snapshotIdFor, INCOMING_DIR, COMMITS_DIR, SUMMARY_DIR, SUMMARY_FILE } from '../src/repository/layout.ts';
import { renderManifest, type Manifest } from '../src/repository/manifest.ts';
import { BYSU_BIN } from '../test/helpers/cluster.ts';
import { run, stopProcess } from '../test/helpers/processes.ts';
import { withRedis } from '../test/helpers/redis.ts';
import { KEEP_RESULTS_MS } from '../src/dashboard/shared-computation.ts';
import { RACY_MS } from '../src/repository/summary.ts';
import { median, startBysu, writeBenchConfig, type BenchSetup } from './common.ts';

/** The app whose one real snapshot the fleet is made of (configured in run.ts's main config). */
export const FLEET_SOURCE_APP = 'f-source';
/** Nodes the fleet's apps are spread over. */
const FLEET_NODES = 100;
const API_TOKEN = 'bench-fleet-token';
/** A round longer than this is the last one: at 10,000 apps one round of the readers as they are takes a quarter of an hour. */
const LONG_ROUND_MS = 150_000;
const DAY_MS = 86_400_000;

/** The parts of the source app: a small SQL dump and a tar, so that each manifest is a realistic one (two parts, tar entries). */
export function fleetSourceParts(): { file: string; run: string }[] {
  return [
    { file: 'db.sql', run: "seq 1 5000 | sed 's/.*/INSERT INTO items VALUES (&);/'" },
    { file: 'files.tar', run: 'tar -C "$NODE_DIR" -cf - c.sql' },
  ];
}

/** Figures of one reader: its first call with no cache in the tree, and the call after. */
interface ColdWarm {
  cold: number;
  warm: number;
  samples: { cold: number; warm: number }[];
}

interface FleetResult {
  apps: number;
  snapshots: number;
  nodes: number;
  rounds: number;
  buildSeconds: number;
  /** Start of `bysu scheduler` → "job schedulers reconciled": first (creates them), then a restart (all unchanged). */
  reconcileSeconds: { first: number; restart: number };
  /** `find | xargs cat` of every manifest, twice per round (before and after the readers). */
  floorSeconds: number;
  floorSamples: number[];
  status: ColdWarm;
  statusJson: ColdWarm;
  metrics: ColdWarm;
  apiApps: ColdWarm;
  /** Start of `bysu dashboard` → "dashboard started". */
  dashboardStartSeconds: number;
  /** Entries the readers had added to the tree (a cache), removed before each cold call; 0 when they keep none. */
  cacheEntriesRemoved: number;
}

/**
 * Given the run's setup and the directory of one real snapshot, measure the
 * readers at each app count of `--fleet`; record the figures and return the
 * fleet table.
 */
export async function fleetScenario(setup: BenchSetup, source: string): Promise<string> {
  const results: FleetResult[] = [];
  for (const apps of setup.options.fleet) {
    // A Redis of its own per size: the job schedulers of one size do not weigh on the next.
    results.push(await withRedis((redis) => measureFleet({ ...setup, redis }, source, apps)));
  }
  setup.scenarios.f = { label: '(f) fleet reads: status, /metrics, /api/apps against a find | xargs cat floor', sizes: results };
  const rows = [['apps', 'snapshots', 'floor', 'status cold/warm', 'status --json cold/warm', '/metrics cold/warm', '/api/apps cold/warm', 'dashboard start', 'reconcile first/restart', 'rounds']];
  const pair = (value: ColdWarm) => `${value.cold.toFixed(2)} / ${value.warm.toFixed(2)} s`;
  for (const result of results) {
    rows.push([
      String(result.apps), String(result.snapshots), `${result.floorSeconds.toFixed(2)} s`, pair(result.status), pair(result.statusJson), pair(result.metrics), pair(result.apiApps),
      `${result.dashboardStartSeconds.toFixed(2)} s`, `${result.reconcileSeconds.first.toFixed(2)} / ${result.reconcileSeconds.restart.toFixed(2)} s`, String(result.rounds),
    ]);
    setup.table.push([`(f) ${result.apps} apps × ${result.snapshots / result.apps}: status warm, against the scan`, `${result.status.warm.toFixed(2)} s`, `${result.floorSeconds.toFixed(2)} s find|xargs cat`, `${(result.status.warm / result.floorSeconds).toFixed(1)}×`, '-', '-']);
  }
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return ['(f) fleet reads, medians (cold: no cache in the tree; warm: the next call)', ...rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd())].join('\n');
}

async function measureFleet(setup: BenchSetup, source: string, apps: number): Promise<FleetResult> {
  const { smoke } = setup.options;
  const perApp = smoke ? 3 : 14;
  const root = path.join(setup.dir, `fleet-${apps}`);
  await mkdir(root);
  try {
    const repository = path.join(root, 'repository');
    const configFile = path.join(root, 'bysu.yaml');
    const nodes = Array.from({ length: FLEET_NODES }, (_, index) => ({ name: `n${String(index).padStart(3, '0')}`, host: '127.0.0.1', port: 20_000 + index }));
    const appNames = Array.from({ length: apps }, (_, index) => `app-${String(index).padStart(5, '0')}`);
    await writeBenchConfig(setup, configFile, {
      prefix: 'fleet',
      repository,
      nodes,
      apps: appNames.map((name, index) => ({ name, node: nodes[index % FLEET_NODES]!.name, parts: fleetSourceParts(), keep: perApp })),
      extra: { dashboard: { host: '127.0.0.1', port: 0, apiToken: API_TOKEN } },
    });
    const init = await run(BYSU_BIN, ['--config', configFile, 'init']);
    if (init.code !== 0) throw new Error(`bysu init: ${init.stdout}${init.stderr}`);

    console.error(`bench: (f) building ${apps} apps × ${perApp} snapshots`);
    const buildStarted = Date.now();
    buildTree(source, root, repository, appNames, nodes, perApp);
    const buildSeconds = (Date.now() - buildStarted) / 1000;
    console.error(`bench: (f) built in ${buildSeconds.toFixed(1)} s`);
    const synthetic = new Set([LATEST_LINK, INCOMING_DIR, COMMITS_DIR]);

    const reconcile = async () => {
      const started = Date.now();
      const scheduler = await startBysu(configFile, ['scheduler'], 'job schedulers reconciled', { timeoutMs: 1_800_000 });
      const seconds = (Date.now() - started) / 1000;
      await stopProcess(scheduler, 30_000);
      return seconds;
    };
    // A restart finds every scheduler in place (not in smoke: the first start covers the code).
    const reconcileSeconds = { first: await reconcile(), restart: smoke ? 0 : await reconcile() };
    console.error(`bench: (f) ${apps} apps: scheduler reconcile ${reconcileSeconds.first.toFixed(2)} s, restart ${reconcileSeconds.restart.toFixed(2)} s`);

    let cacheEntriesRemoved = 0;
    /** Remove whatever a reader added to the tree (its cache): the next call is a cold one. */
    const removeCache = async () => {
      for (const name of await readdir(repository)) {
        if (name.startsWith('.') && name !== REPOSITORY_MARKER_FILE) {
          await rm(path.join(repository, name), { recursive: true, force: true });
          cacheEntriesRemoved += 1;
        }
      }
      for (const app of appNames) {
        for (const name of await readdir(path.join(repository, app))) {
          if (name.startsWith('.') && !synthetic.has(name)) {
            await rm(path.join(repository, app, name), { recursive: true, force: true });
            cacheEntriesRemoved += 1;
          }
        }
      }
    };
    const timed = async <T>(fn: () => Promise<T>): Promise<[number, T]> => {
      const started = Date.now();
      const value = await fn();
      return [(Date.now() - started) / 1000, value];
    };
    const floor = async () => {
      const [seconds, result] = await timed(() => run('bash', ['-c', `find ${repository} -name ${MANIFEST_FILE} | xargs cat > /dev/null`]));
      if (result.code !== 0) throw new Error(`find | xargs cat: ${result.stderr}`);
      return seconds;
    };
    let shownStatus = false;
    const status = async (json: boolean) => {
      const [seconds, result] = await timed(() => run(BYSU_BIN, ['--config', configFile, 'status', ...(json ? ['--json'] : [])], { timeout: 1_800_000 }));
      // Exit 1 is a verdict (no scheduler runs now), not a failure of the read.
      if (result.code !== 0 && result.code !== 1) throw new Error(`bysu status exited ${result.code}: ${result.stderr.slice(-2000)}`);
      const listed = json ? (JSON.parse(result.stdout) as { apps: unknown[] }).apps.length : result.stdout.split('\n').filter((line) => line.startsWith('app-')).length;
      if (listed !== apps) throw new Error(`bysu status${json ? ' --json' : ''} listed ${listed} apps, not ${apps}`);
      if (!json && !shownStatus) {
        shownStatus = true;
        console.error(`bench: (f) bysu status says:\n${result.stdout.split('\n').slice(0, 3).join('\n')}\n…`);
      }
      return seconds;
    };
    const withDashboard = async <T>(fn: (url: string) => Promise<T>): Promise<[number, T]> => {
      const started = Date.now();
      const dashboard = await startBysu(configFile, ['dashboard'], 'dashboard started', { timeoutMs: 600_000 });
      const startSeconds = (Date.now() - started) / 1000;
      try {
        const url = /"url":"([^"]+)"/.exec(dashboard.output())![1]!;
        return [startSeconds, await fn(url)];
      } finally {
        await stopProcess(dashboard, 30_000);
      }
    };
    // Until a fresh answer: past its bound /metrics answers at once with bysu_metrics_stale 1 (and no figures the
    // first time); the time counted is until the figures are there, so a bound hit cannot flatter the figure.
    const metrics = async (url: string) => {
      const started = performance.now();
      for (;;) {
        const response = await httpGet(`${url}metrics`);
        if (response.status !== 200) throw new Error(`/metrics answered ${response.status}: ${response.body.slice(0, 500)}`);
        if (/^bysu_metrics_stale 0$/m.test(response.body)) {
          if (!response.body.includes(`bysu_app_state{app="${appNames.at(-1)}"`)) throw new Error(`/metrics answered without the apps: ${response.body.slice(0, 500)}`);
          return (performance.now() - started) / 1000;
        }
      }
    };
    /** Past the dashboard's keep time: a scrape 15 s after the last one (Prometheus' default interval) computes again. */
    const pastKeepTime = () => new Promise((resolve) => setTimeout(resolve, KEEP_RESULTS_MS + 500));
    const apiApps = async (url: string) => {
      const [seconds, response] = await timed(() => httpGet(`${url}api/apps`, { authorization: `Bearer ${API_TOKEN}` }));
      const listed = response.status === 200 ? (JSON.parse(response.body) as { apps: unknown[] }).apps.length : 0;
      if (listed !== apps) throw new Error(`/api/apps answered ${response.status} with ${listed} apps, not ${apps}: ${response.body.slice(0, 500)}`);
      return seconds;
    };

    const samples = { status: [] as ColdWarm['samples'], statusJson: [] as ColdWarm['samples'], metrics: [] as ColdWarm['samples'], apiApps: [] as ColdWarm['samples'] };
    const floorSamples: number[] = [];
    const dashboardStarts: number[] = [];
    const maxRounds = smoke ? 1 : 3;
    let rounds = 0;
    for (let longRound = false; rounds < maxRounds && !longRound; rounds += 1) {
      const roundStarted = Date.now();
      floorSamples.push(await floor());
      await removeCache();
      // Warm is the steady state: a reader writes a rebuilt summary back only when the app directory has not
      // changed for RACY_MS, and the first reader after a removal changes it (it creates `.summary`), so the
      // cache fills on a read RACY_MS after that one. Checked: a warm figure must not time a rebuild.
      const fill = async () => {
        await status(false);
        await new Promise((resolve) => setTimeout(resolve, RACY_MS + 500));
        await status(false);
        const missing = appNames.filter((app) => !existsSync(path.join(repository, app, SUMMARY_DIR, SUMMARY_FILE)));
        if (missing.length > 0) throw new Error(`${missing.length} apps have no summary after two reads RACY_MS apart (${missing.slice(0, 3).join(', ')}, …)`);
      };
      const cold = await status(false);
      await fill();
      samples.status.push({ cold, warm: await status(false) });
      await removeCache();
      const coldJson = await status(true);
      await fill();
      samples.statusJson.push({ cold: coldJson, warm: await status(true) });
      await removeCache();
      // The dashboard's cold and warm: its first scrape after it started (summaries as the writers keep them),
      // then one past its keep time; the summaries' own cold start (none at all) is status's cold above.
      await fill();
      const [metricsStart, metricsPair] = await withDashboard(async (url) => {
        const cold = await metrics(url);
        await pastKeepTime();
        return { cold, warm: await metrics(url) };
      });
      samples.metrics.push(metricsPair);
      const [apiStart, apiPair] = await withDashboard(async (url) => {
        const cold = await apiApps(url);
        await pastKeepTime();
        return { cold, warm: await apiApps(url) };
      });
      samples.apiApps.push(apiPair);
      dashboardStarts.push(metricsStart, apiStart);
      floorSamples.push(await floor());
      const last = (name: keyof typeof samples) => `${samples[name].at(-1)!.cold.toFixed(2)}/${samples[name].at(-1)!.warm.toFixed(2)}`;
      console.error(`bench: (f) ${apps} apps round ${rounds + 1}: floor ${floorSamples.at(-2)!.toFixed(2)}/${floorSamples.at(-1)!.toFixed(2)} s, status ${last('status')} s, --json ${last('statusJson')} s, /metrics ${last('metrics')} s, /api/apps ${last('apiApps')} s, dashboard start ${metricsStart.toFixed(2)}/${apiStart.toFixed(2)} s`);
      longRound = Date.now() - roundStarted > LONG_ROUND_MS;
    }
    const coldWarm = (values: ColdWarm['samples']): ColdWarm => ({ cold: median(values.map((value) => value.cold)), warm: median(values.map((value) => value.warm)), samples: values });
    return {
      apps,
      snapshots: apps * perApp,
      nodes: FLEET_NODES,
      rounds,
      buildSeconds,
      reconcileSeconds,
      floorSeconds: median(floorSamples),
      floorSamples,
      status: coldWarm(samples.status),
      statusJson: coldWarm(samples.statusJson),
      metrics: coldWarm(samples.metrics),
      apiApps: coldWarm(samples.apiApps),
      dashboardStartSeconds: median(dashboardStarts),
      cacheEntriesRemoved,
    };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/**
 * Given the real snapshot and the names, write the synthetic repository:
 * per app `perApp` nightly snapshots (03:00 UTC, the newest last night), each
 * with the source's files hard-linked and a manifest of its own, and `latest`.
 * Synchronous calls: 140,000 small directories are made faster without a
 * threadpool round trip per call.
 */
export function buildTree(source: string, root: string, repository: string, apps: string[], nodes: { name: string; host: string }[], perApp: number): void {
  const real = JSON.parse(readFileSync(path.join(source, MANIFEST_FILE), 'utf8')) as Manifest;
  const durationMs = Date.parse(real.finishedAt) - Date.parse(real.startedAt);
  const files = readdirSync(source).filter((name) => name !== MANIFEST_FILE);
  // ext4 allows 65,000 links to one inode: a fresh copy of a file when one is full.
  const linkSources = new Map<string, { file: string; links: number; copies: number }>();
  const linkSource = (file: string) => {
    let entry = linkSources.get(file);
    if (!entry || entry.links >= 60_000) {
      const copies = (entry?.copies ?? 0) + 1;
      const copy = path.join(root, `source-${copies}-${file}`);
      copyFileSync(path.join(source, file), copy);
      entry = { file: copy, links: 0, copies };
      linkSources.set(file, entry);
    }
    entry.links += 1;
    return entry.file;
  };
  const now = Date.now();
  const today = Math.floor(now / DAY_MS) * DAY_MS + 3 * 3_600_000 + 5_000;
  const newest = today <= now - durationMs ? today : today - DAY_MS;
  for (const [index, app] of apps.entries()) {
    const node = nodes[index % nodes.length]!;
    const appDir = path.join(repository, app);
    mkdirSync(appDir, { mode: DIR_MODE });
    mkdirSync(path.join(appDir, INCOMING_DIR), { mode: DIR_MODE });
    mkdirSync(path.join(appDir, COMMITS_DIR), { mode: DIR_MODE });
    let latest = '';
    for (let age = perApp - 1; age >= 0; age -= 1) {
      const startedAt = new Date(newest - age * DAY_MS);
      const id = snapshotIdFor(startedAt);
      const snapshotDir = path.join(appDir, id);
      mkdirSync(snapshotDir, { mode: DIR_MODE });
      for (const file of files) linkSync(linkSource(file), path.join(snapshotDir, file));
      const manifest: Manifest = {
        ...real,
        app,
        node: node.name,
        host: node.host,
        id,
        trigger: 'schedule',
        jobId: `repeat:snapshot:${app}:${startedAt.getTime()}`,
        attempt: 1,
        startedAt: startedAt.toISOString(),
        finishedAt: new Date(startedAt.getTime() + durationMs).toISOString(),
      };
      writeFileSync(path.join(snapshotDir, MANIFEST_FILE), renderManifest(manifest), { mode: FILE_MODE });
      latest = id;
    }
    symlinkSync(latest, path.join(appDir, LATEST_LINK));
  }
}

/** GET a URL; resolve with the status and the whole body (no timeout: a slow answer is what is measured). */
function httpGet(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { headers }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      response.on('error', reject);
    });
    request.on('error', reject);
  });
}
