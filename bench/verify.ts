/**
 * Scenario (v): what the scheduled verification costs, and what it costs the
 * night. A verification of a large snapshot (1 GiB; read cold, its pages
 * dropped from the page cache first, as a weekly run finds them) alone, in
 * MiB/s and CPU seconds per GiB; a snapshot of the same size alone; then each
 * beside the other running back to back for the whole of the measured job:
 * how much each slows the other, with the verification unbounded
 * (verify.maxBytesPerSecond 0) and at the default bound (50MiB). Both run as
 * deployed: `bysu worker snapshot` and `bysu worker verify` processes, jobs
 * enqueued on their queues. The sshd node runs on the same machine, so the
 * snapshot's CPU (ssh on both ends) competes with the verification's more
 * than it would against a remote node.
 */
import { readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { loadConfig } from '../src/config/load.ts';
import { buildVerifyJob, enqueueManualSnapshot, VERIFY_JOB_OPTIONS } from '../src/queue/enqueue.ts';
import { SNAPSHOT_QUEUE, VERIFY_JOB, VERIFY_QUEUE, type SnapshotResult, type VerifyJobResult } from '../src/queue/jobs.ts';
import { initRepository } from '../src/repository/marker.ts';
import { run, stopProcess } from '../test/helpers/processes.ts';
import { cpuSecondsOf, median, MiB, settle, startBysu, startSnapshotWorker, waitForJob, writeBenchConfig, type BenchSetup, type BysuProcess } from './common.ts';

/** The default bound of verify.maxBytesPerSecond, as bysu.example.yaml has it. */
const DEFAULT_BOUND = '50MiB';

interface Run {
  seconds: number;
  mibPerSecond: number;
  cpuSeconds?: number;
}

/** Run `once` back to back until stopped; stop() waits for the run under way. */
function backToBack(once: () => Promise<unknown>): { stop(): Promise<void> } {
  let stopping = false;
  const loop = (async () => {
    while (!stopping) await once();
  })();
  return {
    async stop() {
      stopping = true;
      await loop;
    },
  };
}

export async function verifyScenario(setup: BenchSetup): Promise<void> {
  const { dir, nodes, options, scenarios, table } = setup;
  const loadAtStart = os.loadavg();
  const bytes = options.smoke ? 16 * MiB : 1024 * MiB;
  const node = nodes[0]!;
  await run('bash', ['-c', `head -c ${bytes} /dev/urandom > ${node.dir}/v.bin`]);
  const repository = path.join(dir, 'repository-verify');
  await initRepository(repository);
  const configFile = path.join(dir, 'bysu-verify.yaml');
  const part = [{ file: 'v.bin', run: 'cat "$NODE_DIR/v.bin"' }];
  const apps = [
    // The snapshot verified, taken once.
    { name: 'v-data', node: node.name, keep: 1, maxBytes: '10GiB', parts: part },
    // The night's snapshot, taken again and again (and deleted after each: no retention worker runs).
    { name: 'v-load', node: node.name, keep: 1, maxBytes: '10GiB', parts: part },
  ];
  const writeConfig = (bound: string | number) => writeBenchConfig(setup, configFile, { prefix: 'benchv', repository, apps, extra: { verify: { schedule: '0 0 1 1 *', maxBytesPerSecond: bound } } });
  await writeConfig(0);
  const config = loadConfig(configFile);
  const connection = new Redis(setup.redis.url, { maxRetriesPerRequest: null });
  const snapshotQueue = new Queue(SNAPSHOT_QUEUE, { connection, prefix: 'benchv' });
  const verifyQueue = new Queue(VERIFY_QUEUE, { connection, prefix: 'benchv' });
  const snapshotWorker = await startSnapshotWorker(configFile, options.plainNode);
  let verifier: BysuProcess | null = null;
  const startVerifier = async (bound: string | number) => {
    if (verifier) await stopProcess(verifier);
    await writeConfig(bound);
    verifier = await startBysu(configFile, ['worker', 'verify'], 'verify worker started', { plainNode: options.plainNode });
  };

  const snapshotOf = async (name: string): Promise<Run & { path: string }> => {
    const job = await waitForJob(snapshotQueue, await enqueueManualSnapshot(snapshotQueue, config, config.apps.find((app) => app.name === name)!));
    const result = job.returnvalue as SnapshotResult;
    const seconds = (job.finishedOn! - job.processedOn!) / 1000;
    return { seconds, mibPerSecond: result.bytes / MiB / seconds, path: result.path };
  };
  /** One snapshot of v-load, then its directory removed (the disk would fill otherwise). */
  const loadSnapshot = async (): Promise<Run> => {
    const taken = await snapshotOf('v-load');
    await rm(taken.path, { recursive: true, force: true });
    return taken;
  };
  /** One verification of v-data, read cold: its files (clean since they were written) dropped from the page cache first. */
  const verification = async (): Promise<Run> => {
    const appDir = path.join(repository, 'v-data');
    for (const id of (await readdir(appDir)).filter((name) => /^\d{8}T\d{6}Z/.test(name))) {
      for (const file of await readdir(path.join(appDir, id))) await run('dd', [`if=${path.join(appDir, id, file)}`, 'iflag=nocache', 'count=0', 'status=none']);
    }
    const cpuBefore = await cpuSecondsOf(verifier!.pid!);
    const job = await verifyQueue.add(VERIFY_JOB, buildVerifyJob({ name: 'v-data' }, 'manual'), VERIFY_JOB_OPTIONS);
    const result = (await waitForJob(verifyQueue, job.id!)).returnvalue as VerifyJobResult;
    return { seconds: result.ms / 1000, mibPerSecond: result.bytes / MiB / (result.ms / 1000), cpuSeconds: (await cpuSecondsOf(verifier!.pid!)) - cpuBefore };
  };
  /** `measured` alone, after what the previous runs left dirty is written back (not during a load: sync would slow the snapshot). */
  const alone = async (measured: () => Promise<Run>): Promise<Run> => {
    await settle();
    return measured();
  };
  /** `measured` while `load` runs back to back from before it starts until it ends. */
  const beside = async (measured: () => Promise<Run>, load: () => Promise<Run>): Promise<Run> => {
    await settle();
    const loop = backToBack(load);
    await new Promise((resolve) => setTimeout(resolve, 500)); // the load is under way
    try {
      return await measured();
    } finally {
      await loop.stop();
    }
  };

  // Each half measures the snapshot alone too: on a machine others use, each is compared with what the machine gave at its time.
  const samples: Record<string, Run[]> = {
    verifyAlone: [], snapshotAlone: [], snapshotBesideVerify: [], verifyBesideSnapshot: [],
    boundVerifyAlone: [], boundSnapshotAlone: [], boundSnapshotBesideVerify: [], boundVerifyBesideSnapshot: [],
  };
  const log = (key: string) => console.error(`bench: (v) ${key} round ${samples[key]!.length}: ${samples[key]!.at(-1)!.mibPerSecond.toFixed(0)} MiB/s (${samples[key]!.at(-1)!.seconds.toFixed(2)} s)`);
  try {
    await snapshotOf('v-data');
    await settle();
    await startVerifier(0);
    // A warm-up of each, not counted.
    await verification();
    await loadSnapshot();
    for (let round = 0; round < options.rounds; round += 1) {
      samples.verifyAlone!.push(await alone(verification)); log('verifyAlone');
      samples.snapshotAlone!.push(await alone(loadSnapshot)); log('snapshotAlone');
      samples.snapshotBesideVerify!.push(await beside(loadSnapshot, verification)); log('snapshotBesideVerify');
      samples.verifyBesideSnapshot!.push(await beside(verification, loadSnapshot)); log('verifyBesideSnapshot');
    }
    await startVerifier(DEFAULT_BOUND);
    for (let round = 0; round < options.rounds; round += 1) {
      samples.boundSnapshotAlone!.push(await alone(loadSnapshot)); log('boundSnapshotAlone');
      samples.boundVerifyAlone!.push(await alone(verification)); log('boundVerifyAlone');
      samples.boundSnapshotBesideVerify!.push(await beside(loadSnapshot, verification)); log('boundSnapshotBesideVerify');
      samples.boundVerifyBesideSnapshot!.push(await beside(verification, loadSnapshot)); log('boundVerifyBesideSnapshot');
    }
  } finally {
    if (verifier) await stopProcess(verifier);
    await stopProcess(snapshotWorker);
    await snapshotQueue.close();
    await verifyQueue.close();
    connection.disconnect();
  }

  const rate = (key: string) => median(samples[key]!.map((sample) => sample.mibPerSecond));
  const range = (key: string) => {
    const rates = samples[key]!.map((sample) => sample.mibPerSecond);
    return [Math.min(...rates), Math.max(...rates)];
  };
  const gib = bytes / 1024 ** 3;
  const cpuPerGiB = (key: string) => median(samples[key]!.map((sample) => sample.cpuSeconds!)) / gib;
  const label = `(v) verification of one ${bytes / MiB} MiB snapshot, read cold`;
  scenarios.v = {
    label,
    bytes,
    defaultBound: DEFAULT_BOUND,
    mibPerSecond: Object.fromEntries(Object.keys(samples).map((key) => [key, rate(key)])),
    /** The slowest and fastest run of each: on a machine others use too, the spread says how far to trust a median. */
    mibPerSecondRange: Object.fromEntries(Object.keys(samples).map((key) => [key, range(key)])),
    loadAverage: { start: loadAtStart, end: os.loadavg() },
    verifyCpuSecondsPerGiB: { unbounded: cpuPerGiB('verifyAlone'), bound: cpuPerGiB('boundVerifyAlone') },
    // Above 1: the snapshot (or verification) is that many times slower beside the other.
    slowdown: {
      snapshotByVerify: rate('snapshotAlone') / rate('snapshotBesideVerify'),
      verifyBySnapshot: rate('verifyAlone') / rate('verifyBesideSnapshot'),
      snapshotByBoundVerify: rate('boundSnapshotAlone') / rate('boundSnapshotBesideVerify'),
      boundVerifyBySnapshot: rate('boundVerifyAlone') / rate('boundVerifyBesideSnapshot'),
    },
    samples,
  };
  const mib = (value: number) => `${value.toFixed(0)} MiB/s`;
  table.push(
    [`${label}, unbounded: alone`, mib(rate('verifyAlone')), '-', '-', `${cpuPerGiB('verifyAlone').toFixed(2)} s/GiB`, '-'],
    ['(v) a snapshot beside an unbounded verification', mib(rate('snapshotBesideVerify')), `${mib(rate('snapshotAlone'))} alone`, `${(rate('snapshotBesideVerify') / rate('snapshotAlone')).toFixed(2)}×`, '-', '-'],
    ['(v) an unbounded verification beside a snapshot', mib(rate('verifyBesideSnapshot')), `${mib(rate('verifyAlone'))} alone`, `${(rate('verifyBesideSnapshot') / rate('verifyAlone')).toFixed(2)}×`, '-', '-'],
    [`(v) a snapshot beside a verification at ${DEFAULT_BOUND}/s`, mib(rate('boundSnapshotBesideVerify')), `${mib(rate('boundSnapshotAlone'))} alone`, `${(rate('boundSnapshotBesideVerify') / rate('boundSnapshotAlone')).toFixed(2)}×`, '-', '-'],
    [`(v) a verification at ${DEFAULT_BOUND}/s: alone / beside a snapshot`, `${mib(rate('boundVerifyAlone'))} / ${mib(rate('boundVerifyBesideSnapshot'))}`, `bound ${DEFAULT_BOUND}/s`, '-', `${cpuPerGiB('boundVerifyAlone').toFixed(2)} s/GiB`, '-'],
  );
}
