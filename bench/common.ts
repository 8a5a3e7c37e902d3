/**
 * What the benchmark's scenarios share: the command-line options, samples and
 * medians, CPU seconds from /proc, BYSU processes started as deployed, the
 * OpenSSH baseline runner, job spans read back from Redis, and the config
 * every scenario writes its own copy of.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Job, Queue } from 'bullmq';
import { stringify } from 'yaml';
import { REPOSITORY_MARKER_FILE } from '../src/repository/layout.ts';
import { BYSU_BIN } from '../test/helpers/cluster.ts';
import { run, spawnTracked, stopProcess } from '../test/helpers/processes.ts';
import type { TestRedis } from '../test/helpers/redis.ts';
import type { ClientKeys, TestNode } from '../test/helpers/sshd.ts';

export const MiB = 1024 * 1024;

/** Every scenario, in the order they run; `--only` picks some. */
export const ALL_SCENARIOS = ['a', 'a2', 'b', 'b2', 'c', 'r', 'd', 'n', 'u', 'f', 'v', 'm'];
/** App counts of the fleet scenario (f) unless `--fleet` names others. */
export const DEFAULT_FLEET = [100, 1000, 10_000];

export interface BenchOptions {
  smoke: boolean;
  /** Timed rounds of (a)–(c), after one warm-up round. */
  rounds: number;
  /** Snapshot worker processes for (a)–(c) and (r). */
  workers: number;
  plainNode: boolean;
  only: string[];
  /** App counts of the fleet scenario. */
  fleet: number[];
}

/** Given argv, return the options (see run.ts's header for what each does). */
export function parseOptions(argv: string[]): BenchOptions {
  const value = (name: string) => {
    const index = argv.indexOf(name);
    return index > 0 ? argv[index + 1] : undefined;
  };
  const smoke = argv.includes('--smoke');
  const fleet = value('--fleet')?.split(',').map(Number) ?? (smoke ? [20] : DEFAULT_FLEET);
  if (fleet.some((count) => !Number.isInteger(count) || count < 1)) throw new Error(`--fleet takes app counts such as 100,1000,10000 (got ${value('--fleet')})`);
  const only = value('--only')?.split(',') ?? ALL_SCENARIOS;
  const unknown = only.filter((key) => !ALL_SCENARIOS.includes(key));
  if (unknown.length > 0) throw new Error(`--only: unknown scenario(s) ${unknown.join(', ')} (available: ${ALL_SCENARIOS.join(', ')})`);
  return {
    smoke,
    rounds: smoke ? 1 : Number(value('--rounds') ?? 5),
    workers: Number(value('--workers') ?? 2),
    plainNode: argv.includes('--plain-node'),
    only,
    fleet,
  };
}

export interface Sample {
  seconds: number;
  /** CPU seconds of the client side (BYSU worker, or the ssh clients). */
  cpuSeconds: number;
  /** Of which in the kernel (writes, fsync, page cache), where known. */
  systemSeconds?: number;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Given a list and a round, return the list rotated by the round: each side goes first in turn. */
export function rotate<T>(items: T[], round: number): T[] {
  const shift = round % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ: 100 on Linux). */
const USER_HZ = 100;

/** [user, system] CPU seconds of a process so far, its threads included, from /proc. */
export async function cpuSplitOf(pid: number): Promise<[number, number]> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return [Number(fields[11]) / USER_HZ, Number(fields[12]) / USER_HZ];
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
export async function cpuSecondsOf(pid: number): Promise<number> {
  return (await cpuSplitOf(pid)).reduce((sum, value) => sum + value, 0);
}

/** CPU seconds so far of a process and every living descendant (`bysu up` and the worker processes it starts). */
export async function treeCpuSecondsOf(pid: number): Promise<number> {
  const parents = new Map<number, number>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => null);
    if (stat !== null) parents.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
  }
  const tree = [pid];
  for (let index = 0; index < tree.length; index += 1) for (const [child, parent] of parents) if (parent === tree[index]) tree.push(child);
  const seconds = await Promise.all(tree.map((member) => cpuSecondsOf(member).catch(() => 0)));
  return seconds.reduce((sum, value) => sum + value, 0);
}

/** A BYSU process started by the bench, with everything it logged so far. */
export type BysuProcess = ChildProcess & { output: () => string };

/**
 * Given a config file and `bysu` arguments, start the process as deployed (the
 * script itself, so its #! line's V8 flags apply; `plainNode`: without them)
 * and wait until its log says `ready`. JSON logs at info level.
 */
export async function startBysu(configFile: string, args: string[], ready: string, options: { plainNode?: boolean; timeoutMs?: number } = {}): Promise<BysuProcess> {
  const [command, commandArgs] = options.plainNode ? [process.execPath, [BYSU_BIN, ...args]] : [BYSU_BIN, args];
  const child = spawnTracked(command, commandArgs, { env: { ...process.env, BYSU_CONFIG: configFile, BYSU_LOG_FORMAT: 'json', BYSU_LOG_LEVEL: 'info' } }) as BysuProcess;
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.output = () => output;
  const deadline = Date.now() + (options.timeoutMs ?? 120_000);
  while (!output.includes(ready)) {
    if (child.exitCode !== null) throw new Error(`bysu ${args.join(' ')} exited (${child.exitCode}): ${output.slice(-2000)}`);
    if (Date.now() > deadline) {
      await stopProcess(child);
      throw new Error(`bysu ${args.join(' ')} did not log "${ready}": ${output.slice(-2000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return child;
}

/** Start one snapshot worker (as compose deploys them: `bysu worker snapshot`). */
export function startSnapshotWorker(configFile: string, plainNode = false): Promise<BysuProcess> {
  return startBysu(configFile, ['worker', 'snapshot'], 'worker started', { plainNode });
}

/** Empty a repository but for its marker (the workers refuse a root without it). */
export async function clearRepository(repository: string): Promise<void> {
  for (const name of await readdir(repository)) if (name !== REPOSITORY_MARKER_FILE) await rm(path.join(repository, name), { recursive: true, force: true });
}

/**
 * Before each timed run, either side: write back what the previous run left
 * dirty (a baseline that does not fsync would otherwise have its data written
 * out during BYSU's next run, and BYSU's fsync would wait behind it).
 */
export async function settle(): Promise<void> {
  await run('sync', []);
}

/** What every scenario's config holds: this run's Redis, nodes and keys. */
export interface BenchSetup {
  dir: string;
  redis: TestRedis;
  nodes: TestNode[];
  keys: ClientKeys;
  options: BenchOptions;
  /** bench/results*.json's scenarios, by key. */
  scenarios: Record<string, unknown>;
  /** The printed table: scenario, BYSU, baseline, ratio, two CPU columns. */
  table: string[][];
}

/**
 * Given the setup, a file, a Redis prefix, a repository and apps, write a
 * bysu.yaml with every node of the run (`extra` merged over the top level).
 */
export async function writeBenchConfig(setup: BenchSetup, file: string, fields: { prefix: string; repository: string; apps: unknown[]; nodes?: unknown[]; extra?: Record<string, unknown> }): Promise<void> {
  const { nodes, keys, redis } = setup;
  await writeFile(file, stringify({
    redis: { url: redis.url, prefix: fields.prefix },
    repository: fields.repository,
    ssh: { user: nodes[0]!.user, identityFile: keys.identityFile, knownHosts: keys.knownHostsFile },
    concurrency: { global: 16, perNode: 1, perWorker: 16, busyNodeDelay: '200ms' },
    log: { level: 'warn' },
    nodes: fields.nodes ?? nodes.map((node) => ({ name: node.name, host: node.host, port: node.port })),
    apps: fields.apps,
    ...fields.extra,
  }));
}

/**
 * The baseline: the same transfers with the OpenSSH client, `parallel` at a
 * time, one `ssh -T node 'command' > file` each; client CPU from bash's `times`.
 * `sink` is the shell that takes ssh's output: `> file` by default, or one
 * that also hashes and fsyncs.
 */
export async function opensshRuns(dir: string, targets: { node: TestNode; command: string }[], parallel: number, keys: ClientKeys, sink = (file: string) => `> ${file}`): Promise<Sample> {
  const out = path.join(dir, 'openssh');
  await mkdir(out, { recursive: true });
  await settle();
  const started = Date.now();
  let cpuSeconds = 0;
  let next = 0;
  const lane = async () => {
    while (next < targets.length) {
      const { node, command } = targets[next]!;
      const index = next++;
      const script = `set -o pipefail; ssh -T -i ${keys.identityFile} -o UserKnownHostsFile=${keys.knownHostsFile} -o BatchMode=yes -p ${node.port} ${node.user}@127.0.0.1 '${command}' ${sink(`${out}/${index}.out`)}; times`;
      const result = await run('bash', ['-c', script]);
      if (result.code !== 0) throw new Error(`ssh failed: ${result.stderr}`);
      cpuSeconds += childTimes(result.stdout);
    }
  };
  await Promise.all(Array.from({ length: parallel }, lane));
  const sample = { seconds: (Date.now() - started) / 1000, cpuSeconds };
  await rm(out, { recursive: true, force: true });
  return sample;
}

/** Given the output of bash's `times` (at its end), return the CPU seconds of the shell's children. */
export function childTimes(output: string): number {
  const lines = output.trim().split('\n');
  const child = lines.at(-1)!.split(/\s+/).map((value) => {
    const match = /(\d+)m([\d.]+)s/.exec(value)!;
    return Number(match[1]) * 60 + Number(match[2]);
  });
  return child[0]! + child[1]!;
}

export interface JobSpan {
  /** When the first job was created (ms since epoch). */
  createdAt: number;
  /** When the last one finished. */
  finishedAt: number;
  seconds: number;
}

/** Given a queue and job ids that have all finished, return their span (first created → last finished); throw if one failed. */
export async function jobSpan(queue: Queue, ids: string[]): Promise<JobSpan> {
  let createdAt = Infinity;
  let finishedAt = 0;
  for (const id of ids) {
    const job = await Job.fromId(queue, id);
    if (!job) throw new Error(`job ${id} is not in the queue`);
    if (!job.finishedOn) throw new Error(`job ${id} has not finished`);
    if (!job.returnvalue) throw new Error(`job ${id} failed: ${job.failedReason}`);
    createdAt = Math.min(createdAt, job.timestamp);
    finishedAt = Math.max(finishedAt, job.finishedOn);
  }
  return { createdAt, finishedAt, seconds: (finishedAt - createdAt) / 1000 };
}

/** What `bysu snapshot <apps> --wait` cost, as a user runs it. */
export interface CliSnapshot {
  /** The command's wall time, start to exit. */
  wallSeconds: number;
  /** Its jobs' span: first created → last finished. */
  spanSeconds: number;
  /** From the command's start to its first job's creation. */
  startSeconds: number;
  /** From the last job's end to the command's exit. */
  endSeconds: number;
}

/**
 * Given a config file, a queue on its Redis and prefix, and app names, run
 * `bysu snapshot <names> --wait` as a user would, and return its wall time
 * and its jobs' span (the difference is the CLI's own overhead).
 */
export async function snapshotWithCli(configFile: string, queue: Queue, names: string[]): Promise<CliSnapshot> {
  const started = Date.now();
  const result = await run(BYSU_BIN, ['snapshot', ...names, '--wait'], { env: { ...process.env, BYSU_CONFIG: configFile }, timeout: 600_000 });
  const exitedAt = Date.now();
  if (result.code !== 0) throw new Error(`bysu snapshot --wait exited ${result.code}: ${result.stdout.slice(-1000)}${result.stderr.slice(-1000)}`);
  const ids = [...result.stdout.matchAll(/: enqueued \(job (\S+)\)$/gm)].map((match) => match[1]!);
  if (ids.length !== names.length) throw new Error(`bysu snapshot printed ${ids.length} job ids for ${names.length} apps: ${result.stdout}`);
  const span = await jobSpan(queue, ids);
  return { wallSeconds: (exitedAt - started) / 1000, spanSeconds: span.seconds, startSeconds: (span.createdAt - started) / 1000, endSeconds: (exitedAt - span.finishedAt) / 1000 };
}

/** Given seconds, return them for the table: `1.23 s`. */
export function seconds(value: number, digits = 2): string {
  return `${value.toFixed(digits)} s`;
}

/** Given a queue and a job id, wait until the job completed and return it; throw if it failed. */
export async function waitForJob(queue: Queue, id: string): Promise<Job> {
  for (;;) {
    const state = await queue.getJobState(id);
    const job = await Job.fromId(queue, id);
    if (state === 'completed') return job!;
    if (state === 'failed') throw new Error(`${id} failed: ${job!.failedReason}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
