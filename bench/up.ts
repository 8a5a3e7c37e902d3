/**
 * Scenario (u): the (b) round (8 nodes × 64 MiB) with `bysu up` as the
 * deployment, the README's choice on a single small server, side by side with
 * two `bysu worker snapshot` processes as compose runs them. Each side is its
 * own deployment (its own Redis prefix, config and repository), all running
 * at once and idle but for the side being measured; each round runs every
 * side once, in turn, with `bysu snapshot <apps> --wait` as a user would.
 * Reported per side: the command's wall time, its jobs' span (first created
 * → last finished), the CLI's own overhead (the difference), and the CPU of
 * the deployment's processes.
 *
 * `up.snapshotWorkers` (0: one snapshot worker process per core, N: N of
 * them) is measured at 1 and at its default when this checkout's config
 * schema has the key (bysu.schema.json); without it, `bysu up` runs its one
 * in-process snapshot worker, and that is the side measured.
 */
import { snapshotWorkerCount } from '../src/cli/worker-processes.ts';
import { mkdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { SNAPSHOT_QUEUE } from '../src/queue/jobs.ts';
import { initRepository } from '../src/repository/marker.ts';
import { PROJECT_ROOT } from '../test/helpers/cluster.ts';
import { stopProcess } from '../test/helpers/processes.ts';
import type { TestNode } from '../test/helpers/sshd.ts';
import {
  clearRepository, cpuSecondsOf, median, MiB, rotate, settle, snapshotWithCli, startBysu, startSnapshotWorker, treeCpuSecondsOf, writeBenchConfig,
  type BenchSetup, type BysuProcess, type CliSnapshot,
} from './common.ts';

/** Whether this checkout's config has `up.snapshotWorkers` (convict refuses a key it does not know). */
export async function upHasSnapshotWorkers(): Promise<boolean> {
  const schema = JSON.parse(await readFile(path.join(PROJECT_ROOT, 'bysu.schema.json'), 'utf8')) as { properties?: { up?: { properties?: Record<string, unknown> } } };
  return schema.properties?.up?.properties?.snapshotWorkers !== undefined;
}

interface Side {
  key: string;
  label: string;
  /** `up` settings, or null for two worker processes. */
  up: Record<string, unknown> | null;
  /** Snapshot workers to wait for before measuring. */
  workers: number;
}

interface Deployment {
  side: Side;
  configFile: string;
  repository: string;
  queue: Queue;
  connection: Redis;
  processes: BysuProcess[];
  cpu(): Promise<number>;
}

/** Given the run's setup and the (b) round's nodes, measure `bysu up` against two worker processes and record the figures. */
/** Concurrency of every (u) side: the defaults of bysu.example.yaml. */
const UP_CONCURRENCY = { global: 16, perWorker: 4 };

export async function upScenario(setup: BenchSetup, round: { nodes: TestNode[]; bytesPerNode: number }): Promise<void> {
  const supported = await upHasSnapshotWorkers();
  const cores = os.cpus().length;
  // The product's own perWorker (4), not the bench's 16: with 16 one process could fill global alone, and the
  // automatic count (ceil(global / perWorker), at most one per core) would be 1.
  const defaultWorkers = snapshotWorkerCount({ up: { snapshotWorkers: 0 }, concurrency: UP_CONCURRENCY }, cores);
  const sides: Side[] = supported
    ? [
      { key: 'upDefault', label: `bysu up, up.snapshotWorkers default (one per core, at most global/perWorker: ${defaultWorkers})`, up: {}, workers: defaultWorkers },
      { key: 'upOne', label: 'bysu up, up.snapshotWorkers: 1', up: { snapshotWorkers: 1 }, workers: 1 },
      { key: 'workers', label: 'two `bysu worker snapshot` processes (compose)', up: null, workers: 2 },
    ]
    : [
      { key: 'upDefault', label: 'bysu up (one in-process snapshot worker: no up.snapshotWorkers here)', up: {}, workers: 1 },
      { key: 'workers', label: 'two `bysu worker snapshot` processes (compose)', up: null, workers: 2 },
    ];
  if (!supported) console.error('bench: (u) this checkout has no up.snapshotWorkers: measuring `bysu up` as it is (one snapshot worker in its process)');
  const names = round.nodes.map((node) => `b-${node.name}`);
  const deployments: Deployment[] = [];
  try {
    for (const side of sides) deployments.push(await deploy(setup, side, round.nodes));
    const measure = async (deployment: Deployment) => {
      await settle();
      const cpuBefore = await deployment.cpu();
      const result = await snapshotWithCli(deployment.configFile, deployment.queue, names);
      const cpuSeconds = (await deployment.cpu()) - cpuBefore;
      await clearRepository(deployment.repository);
      return { ...result, cpuSeconds };
    };
    // Warm-up, not counted: each deployment's first jobs (JIT, connections); not in smoke.
    if (!setup.options.smoke) for (const deployment of deployments) await measure(deployment);
    const rounds = setup.options.smoke ? 1 : 3;
    const samples: Record<string, (CliSnapshot & { cpuSeconds: number })[]> = Object.fromEntries(sides.map((side) => [side.key, []]));
    for (let index = 0; index < rounds; index += 1) {
      for (const deployment of rotate(deployments, index)) samples[deployment.side.key]!.push(await measure(deployment));
      console.error(`bench: (u) round ${index + 1}: ${sides.map((side) => `${side.key} --wait ${samples[side.key]!.at(-1)!.wallSeconds.toFixed(2)} s (span ${samples[side.key]!.at(-1)!.spanSeconds.toFixed(2)})`).join(', ')}`);
    }
    const gib = (round.bytesPerNode * round.nodes.length) / 1024 ** 3;
    const figures = Object.fromEntries(sides.map((side) => {
      const list = samples[side.key]!;
      return [side.key, {
        label: side.label,
        wallSeconds: median(list.map((sample) => sample.wallSeconds)),
        bestWallSeconds: Math.min(...list.map((sample) => sample.wallSeconds)),
        spanSeconds: median(list.map((sample) => sample.spanSeconds)),
        bestSpanSeconds: Math.min(...list.map((sample) => sample.spanSeconds)),
        cliOverheadSeconds: median(list.map((sample) => sample.wallSeconds - sample.spanSeconds)),
        cliStartSeconds: median(list.map((sample) => sample.startSeconds)),
        cliEndSeconds: median(list.map((sample) => sample.endSeconds)),
        cpuSecondsPerGiB: median(list.map((sample) => sample.cpuSeconds)) / gib,
        samples: list,
      }];
    }));
    const workers = figures.workers!;
    setup.scenarios.u = { label: `(u) ${round.nodes.length} nodes × ${round.bytesPerNode / MiB} MiB with bysu up, against two worker processes`, snapshotWorkersSupported: supported, bysu: figures.upDefault!.wallSeconds, openssh: workers.wallSeconds, sides: figures };
    for (const side of sides.filter((candidate) => candidate.up !== null)) {
      const figure = figures[side.key]!;
      setup.table.push([
        `(u) ${side.label}: snapshot --wait / job span (CLI overhead ${figure.cliOverheadSeconds.toFixed(2)} s: start ${figure.cliStartSeconds.toFixed(2)}, end ${figure.cliEndSeconds.toFixed(2)})`,
        `${figure.wallSeconds.toFixed(2)} / ${figure.spanSeconds.toFixed(2)} s`,
        `${workers.wallSeconds.toFixed(2)} / ${workers.spanSeconds.toFixed(2)} s two workers`,
        `${(figure.wallSeconds / workers.wallSeconds).toFixed(2)}×`,
        `${figure.cpuSecondsPerGiB.toFixed(2)} s/GiB`,
        `${workers.cpuSecondsPerGiB.toFixed(2)} s/GiB`,
      ]);
    }
  } finally {
    for (const deployment of deployments) {
      await Promise.all(deployment.processes.map((child) => stopProcess(child, 30_000)));
      await deployment.queue.close();
      deployment.connection.disconnect();
    }
  }
}

/** Given a side, write its config, mark its repository, start its processes and wait until its snapshot workers listen. */
async function deploy(setup: BenchSetup, side: Side, nodes: TestNode[]): Promise<Deployment> {
  const root = path.join(setup.dir, `u-${side.key}`);
  const repository = path.join(root, 'repository');
  const configFile = path.join(setup.dir, `u-${side.key}.yaml`);
  const prefix = `u-${side.key}`;
  await writeBenchConfig(setup, configFile, {
    prefix,
    repository,
    apps: nodes.map((node) => ({ name: `b-${node.name}`, node: node.name, parts: [{ file: 'b.bin', run: 'cat "$NODE_DIR/b.bin"' }], keep: 1, maxBytes: '10GiB' })),
    extra: {
      // `bysu up` runs a scheduler: no scheduled run may fall into the bench (once a year, at New Year).
      defaults: { schedule: '0 0 1 1 *' },
      dashboard: { host: '127.0.0.1', port: 0 },
      concurrency: { ...UP_CONCURRENCY, perNode: 1, busyNodeDelay: '200ms' },
      ...(side.up && Object.keys(side.up).length > 0 ? { up: side.up } : {}),
    },
  });
  await mkdir(root, { recursive: true });
  await initRepository(repository);
  const connection = new Redis(setup.redis.url, { maxRetriesPerRequest: null });
  const queue = new Queue(SNAPSHOT_QUEUE, { connection, prefix });
  const processes: BysuProcess[] = [];
  if (side.up !== null) {
    processes.push(await startBysu(configFile, ['up'], 'bysu up: scheduler, workers and dashboard running', { plainNode: setup.options.plainNode }));
  } else {
    for (let index = 0; index < side.workers; index += 1) processes.push(await startSnapshotWorker(configFile, setup.options.plainNode));
  }
  // Worker processes that `bysu up` starts may still be connecting when it says it runs.
  const deadline = Date.now() + 60_000;
  while ((await queue.getWorkersCount()) < side.workers) {
    if (Date.now() > deadline) throw new Error(`(u) ${side.label}: ${await queue.getWorkersCount()} snapshot worker(s) listening after 60 s, not ${side.workers}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const cpu = side.up !== null
    ? () => treeCpuSecondsOf(processes[0]!.pid!)
    : async () => (await Promise.all(processes.map((child) => cpuSecondsOf(child.pid!)))).reduce((sum, value) => sum + value, 0);
  return { side, configFile, repository, queue, connection, processes, cpu };
}
