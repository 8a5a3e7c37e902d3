/**
 * A whole test cluster in one call: a temporary directory, a private
 * redis-server, real sshd nodes, a client key and known_hosts, a bysu.yaml
 * written from the test's apps, a repository made by `bysu init`'s own code,
 * and ways to run the real `bysu` CLI and worker processes against it. Everything is stopped and removed afterwards.
 */
import type { ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { SNAPSHOT_QUEUE } from '../../src/queue/jobs.ts';
import { initRepository } from '../../src/repository/marker.ts';
import { freePort, run, spawnTracked, stopProcess, withTempDir } from './processes.ts';
import { withRedis, type TestRedis } from './redis.ts';
import { withSshNodes, type ClientKeys, type TestNode } from './sshd.ts';

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The bysu executable; run directly (not `node BYSU_BIN`) so that its #! line's V8 flags apply, as deployed. */
export const BYSU_BIN = path.join(PROJECT_ROOT, 'bin/bysu.js');

export interface TestCluster {
  dir: string;
  redis: TestRedis;
  nodes: TestNode[];
  keys: ClientKeys;
  repository: string;
  configFile: string;
  /** A unique BullMQ prefix per cluster. */
  prefix: string;
  /** Write bysu.yaml from these apps (and optional top-level overrides). */
  writeConfig(apps: unknown[], overrides?: Record<string, unknown>): Promise<void>;
  /** Run `bysu <args>` against this cluster's config; resolves with its output and exit code. */
  bysu(args: string[], options?: { env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** Start `bysu worker snapshot` as a child process. */
  startWorker(env?: NodeJS.ProcessEnv): ChildProcess & { output: () => string };
  /** Start any long-running `bysu <args>` (scheduler, worker retention) as a child process. */
  startProcess(args: string[], env?: NodeJS.ProcessEnv): ChildProcess & { output: () => string };
}

/** Given node names, build a cluster, run fn with it, and tear everything down. */
export async function withCluster<T>(nodeNames: string[], fn: (cluster: TestCluster) => Promise<T>, options: { appendonly?: boolean } = {}): Promise<T> {
  return withTempDir((dir) => withRedis((redis) => withSshNodes(dir, nodeNames, async (nodes, keys) => {
    const repository = path.join(dir, 'repo');
    // As an operator does once with `bysu init`: workers and commands refuse a root without its marker.
    await initRepository(repository);
    const configFile = path.join(dir, 'bysu.yaml');
    const prefix = `t${process.pid}`;
    // Never the default 3000: an operator's BYSU, or the compose test running beside, may listen there.
    const dashboardPort = await freePort();
    const workers: ChildProcess[] = [];
    const baseEnv = { ...process.env, BYSU_CONFIG: configFile, BYSU_LOG_FORMAT: 'json', BYSU_LOG_LEVEL: 'info' };
    const cluster: TestCluster = {
      dir,
      redis,
      nodes,
      keys,
      repository,
      configFile,
      prefix,
      async writeConfig(apps, overrides = {}) {
        const config = {
          redis: { url: redis.url, prefix },
          repository,
          ssh: { user: nodes[0]?.user ?? 'root', identityFile: keys.identityFile, knownHosts: keys.knownHostsFile, connectTimeout: '10s' },
          nodes: nodes.map((node) => ({ name: node.name, host: node.host, port: node.port })),
          apps,
          dashboard: { host: '127.0.0.1', port: dashboardPort },
          ...overrides,
        };
        await writeFile(configFile, stringify(config));
      },
      bysu(args, runOptions = {}) {
        return run(BYSU_BIN, args, { env: { ...baseEnv, ...runOptions.env }, cwd: dir, timeout: runOptions.timeoutMs ?? 120_000 });
      },
      startWorker(env = {}) {
        return cluster.startProcess(['worker', 'snapshot'], env);
      },
      startProcess(args, env = {}) {
        const child = spawnTracked(BYSU_BIN, args, { env: { ...baseEnv, ...env }, cwd: dir }) as ChildProcess & { output: () => string };
        let output = '';
        child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
        child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
        child.output = () => output;
        workers.push(child);
        return child;
      },
    };
    try {
      return await fn(cluster);
    } finally {
      await Promise.all(workers.map((worker) => stopProcess(worker, 15_000)));
    }
  }), options));
}

/** Wait until the worker's log says it started (so jobs enqueued now are taken). */
export async function waitForLog(child: { output: () => string }, text: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!child.output().includes(text)) {
    if (Date.now() > deadline) throw new Error(`no "${text}" in the log after ${timeoutMs} ms:\n${child.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Given node names, build a cluster that outlives one callback (for a
 * describe block's before/after): returns it and a close() that tears it down.
 */
export async function openCluster(nodeNames: string[]): Promise<{ cluster: TestCluster; close: () => Promise<void> }> {
  let ready!: (cluster: TestCluster) => void;
  let release!: () => void;
  const started = new Promise<TestCluster>((resolve) => (ready = resolve));
  const finished = withCluster(nodeNames, async (cluster) => {
    ready(cluster);
    await new Promise<void>((resolve) => (release = resolve));
  });
  const cluster = await Promise.race([started, finished.then(() => {
    throw new Error('the cluster stopped before it started');
  })]);
  return {
    cluster,
    async close() {
      release();
      await finished;
    },
  };
}

/** Given a cluster, run fn with a BullMQ Queue on its snapshot queue (for reading job states), then close it. */
export async function withSnapshotQueue<T>(cluster: TestCluster, fn: (queue: Queue) => Promise<T>): Promise<T> {
  const connection = new Redis(cluster.redis.url, { maxRetriesPerRequest: null });
  const queue = new Queue(SNAPSHOT_QUEUE, { connection, prefix: cluster.prefix });
  try {
    return await fn(queue);
  } finally {
    await queue.close();
    connection.disconnect();
  }
}
