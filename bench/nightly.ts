/**
 * Scenario (n): a nightly round of many tiny apps, ten per node on 100 nodes
 * (1,000 apps; smoke: 20 on 4), with concurrency.perNode 1 and global 16 and
 * two snapshot worker processes, as compose deploys them. BYSU: from the first
 * job created to the last finished, and the workers' CPU seconds per job (from
 * /proc/<pid>/stat); against as many plain `ssh node 'cat file' > file` runs,
 * 16 at once, in the same run, alternating. The apps are ordered so that
 * neighbours in the queue are on different nodes, as for the baseline.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { loadConfig } from '../src/config/load.ts';
import { enqueueManualSnapshot } from '../src/queue/enqueue.ts';
import { SNAPSHOT_QUEUE } from '../src/queue/jobs.ts';
import { initRepository } from '../src/repository/marker.ts';
import { stopProcess } from '../test/helpers/processes.ts';
import { clearRepository, cpuSecondsOf, jobSpan, median, opensshRuns, settle, startSnapshotWorker, writeBenchConfig, type BenchSetup, type BysuProcess, type Sample } from './common.ts';

/** The round's size: apps and the nodes they are spread over. */
export function NIGHTLY_SIZES(smoke: boolean): { apps: number; nodes: number } {
  return smoke ? { apps: 20, nodes: 4 } : { apps: 1000, nodes: 100 };
}
/** Snapshot jobs at once, all workers together, and the baseline's parallelism. */
const PARALLEL = 16;
const WORKERS = 2;

/** Given the run's setup, run the nightly round against its baseline and record the figures. */
export async function nightlyScenario(setup: BenchSetup): Promise<void> {
  const { smoke } = setup.options;
  const size = NIGHTLY_SIZES(smoke);
  const nodes = setup.nodes.slice(0, size.nodes);
  if (nodes.length < size.nodes) throw new Error(`(n) needs ${size.nodes} nodes, the run has ${nodes.length}`);
  for (const node of nodes) await writeFile(path.join(node.dir, 'n.txt'), `-- ${node.name}: a tiny nightly dump\nSELECT 1;\n`);
  const apps = Array.from({ length: size.apps }, (_, index) => ({ name: `n-${String(index).padStart(4, '0')}`, node: nodes[index % nodes.length]! }));
  const repository = path.join(setup.dir, 'nightly-repository');
  const configFile = path.join(setup.dir, 'nightly.yaml');
  await writeBenchConfig(setup, configFile, {
    prefix: 'nightly',
    repository,
    // One attempt: a failure in the bench is a finding, not something to retry past.
    apps: apps.map((app) => ({ name: app.name, node: app.node.name, parts: [{ file: 'n.sql', run: 'cat "$NODE_DIR/n.txt"' }], keep: 1, attempts: 1 })),
    // busyNodeDelay as deployed (5 s); smoke puts 5 apps on each of 4 nodes, where most jobs meet a busy node.
    extra: { concurrency: { global: PARALLEL, perNode: 1, perWorker: PARALLEL, busyNodeDelay: smoke ? '200ms' : '5s' } },
  });
  await initRepository(repository);
  const config = loadConfig(configFile);
  const connection = new Redis(setup.redis.url, { maxRetriesPerRequest: null });
  const queue = new Queue(SNAPSHOT_QUEUE, { connection, prefix: 'nightly' });
  const eventsConnection = new Redis(setup.redis.url, { maxRetriesPerRequest: null });
  const events = new QueueEvents(SNAPSHOT_QUEUE, { connection: eventsConnection, prefix: 'nightly' });
  await events.waitUntilReady();
  const workers: BysuProcess[] = [];
  try {
    for (let index = 0; index < WORKERS; index += 1) workers.push(await startSnapshotWorker(configFile, setup.options.plainNode));
    const cpuOf = async () => (await Promise.all(workers.map((worker) => cpuSecondsOf(worker.pid!)))).reduce((sum, value) => sum + value, 0);

    /** All `count` first apps at once through BYSU: first job created → last finished, and the workers' CPU. */
    const bysu = async (count: number): Promise<Sample> => {
      await settle();
      const ids: string[] = [];
      const finished = new Set<string>();
      const failures: string[] = [];
      let allDone!: () => void;
      const done = new Promise<void>((resolve) => (allDone = resolve));
      const check = () => {
        if (ids.length === count && [...ids].every((id) => finished.has(id))) allDone();
      };
      const onCompleted = ({ jobId }: { jobId: string }) => {
        finished.add(jobId);
        check();
      };
      const onFailed = ({ jobId, failedReason }: { jobId: string; failedReason: string }) => {
        failures.push(`${jobId}: ${failedReason}`);
        finished.add(jobId);
        check();
      };
      events.on('completed', onCompleted);
      events.on('failed', onFailed);
      const cpuBefore = await cpuOf();
      try {
        for (const app of apps.slice(0, count)) ids.push(await enqueueManualSnapshot(queue, config, config.apps.find((candidate) => candidate.name === app.name)!));
        check();
        await done;
      } finally {
        events.off('completed', onCompleted);
        events.off('failed', onFailed);
      }
      const cpuSeconds = (await cpuOf()) - cpuBefore;
      if (failures.length > 0) throw new Error(`(n) ${failures.length} job(s) failed, e.g. ${failures[0]}`);
      const span = await jobSpan(queue, ids);
      await clearRepository(repository);
      return { seconds: span.seconds, cpuSeconds };
    };
    const openssh = (count: number) => opensshRuns(setup.dir, apps.slice(0, count).map((app) => ({ node: app.node, command: `cat ${app.node.dir}/n.txt` })), PARALLEL, setup.keys);

    // Warm-up, not counted: a tenth of the round on each side (not in smoke).
    if (!smoke) {
      await bysu(size.apps / 10);
      await openssh(size.apps / 10);
    }
    const rounds = smoke ? 1 : Math.min(setup.options.rounds, 3);
    const ours: Sample[] = [];
    const theirs: Sample[] = [];
    for (let round = 0; round < rounds; round += 1) {
      if (round % 2 === 0) {
        ours.push(await bysu(size.apps));
        theirs.push(await openssh(size.apps));
      } else {
        theirs.push(await openssh(size.apps));
        ours.push(await bysu(size.apps));
      }
      console.error(`bench: (n) round ${round + 1}: BYSU ${ours.at(-1)!.seconds.toFixed(2)} s (${(ours.at(-1)!.cpuSeconds / size.apps * 1000).toFixed(1)} ms CPU/job), OpenSSH ${theirs.at(-1)!.seconds.toFixed(2)} s (${(theirs.at(-1)!.cpuSeconds / size.apps * 1000).toFixed(1)} ms CPU/run)`);
    }
    const bysuSeconds = median(ours.map((sample) => sample.seconds));
    const opensshSeconds = median(theirs.map((sample) => sample.seconds));
    const cpuMsPerJob = { bysu: median(ours.map((sample) => sample.cpuSeconds)) / size.apps * 1000, openssh: median(theirs.map((sample) => sample.cpuSeconds)) / size.apps * 1000 };
    const label = `(n) nightly: ${size.apps} tiny apps on ${size.nodes} nodes, perNode 1, global ${PARALLEL}, ${WORKERS} workers`;
    setup.scenarios.n = { label, metric: 'wall seconds', apps: size.apps, nodes: size.nodes, bysu: bysuSeconds, openssh: opensshSeconds, ratio: bysuSeconds / opensshSeconds, cpuMsPerJob, samples: { bysu: ours, openssh: theirs } };
    setup.table.push([label, `${bysuSeconds.toFixed(2)} s`, `${opensshSeconds.toFixed(2)} s OpenSSH`, `${(bysuSeconds / opensshSeconds).toFixed(2)}×`, `${cpuMsPerJob.bysu.toFixed(1)} ms/job`, `${cpuMsPerJob.openssh.toFixed(1)} ms/run`]);
  } finally {
    await Promise.all(workers.map((worker) => stopProcess(worker)));
    await events.close();
    eventsConnection.disconnect();
    await queue.close();
    connection.disconnect();
  }
}
