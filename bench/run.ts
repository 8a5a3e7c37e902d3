/**
 * `npm run bench`: BYSU end to end (enqueue → worker → committed, fsynced,
 * hashed, validated snapshot) against plain OpenSSH client pipes
 * (`ssh -T node 'cat file' > file`) at the same parallelism, in the same run,
 * alternating rounds, median reported. It starts its own redis-server and
 * sshd nodes on loopback with generated data.
 *
 * Scenarios: (a) one node, one 1 GiB part; (b) 8 nodes × 64 MiB in parallel;
 * (a2), (b2) the same against a baseline that also hashes (openssl sha256) and
 * fsyncs, as BYSU does; (c) 40 nodes with tiny parts (control-plane overhead);
 * (d) worker peak RSS with 8 concurrent 64 MiB parts, one 64 MiB part and one
 * 2 GiB part (a fresh worker each, 3 rounds, medians). Before every timed run
 * `sync` writes back what the previous one left dirty; each scenario has a
 * warm-up round that is not counted.
 * BYSU runs two snapshot workers for (a)–(c), as compose.yaml deploys them;
 * CPU is the sum of both workers against the sum of the ssh clients.
 * Further scenarios, each in its own module: (r) rsnapshot as the baseline of
 * (b), a fresh copy and a night with 1 % changed (rsnapshot.ts); (n) a nightly
 * round of 1,000 tiny apps on 100 nodes (nightly.ts); (u) the (b) round with
 * `bysu up` as the deployment (up.ts); (f) reads of a fleet-sized repository:
 * status, /metrics, /api/apps against a `find | xargs cat` floor (fleet.ts);
 * (v) the scheduled verification of a 1 GiB snapshot alone and beside a
 * running snapshot, unbounded and at its default bound (verify.ts); (m) a
 * mirror's copy of a 1 GiB snapshot against curl of the same files from the
 * same API, and what a resume after the source died receives (mirror.ts).
 *
 *   npm run bench               the full run (about 40 minutes, most of it (f) at 10,000 apps)
 *   npm run bench -- --smoke    tiny sizes, one round: keeps the benchmark working (CI)
 *   npm run bench -- --rounds 9   (default 5, after one warm-up round that is not counted)
 *   npm run bench -- --only a,b --workers 1   (some scenarios; snapshot worker processes, default 2)
 *   npm run bench -- --only v   (the verification alone: a few minutes)
 *   npm run bench -- --only f --fleet 100,1000   (the fleet's app counts; default 100,1000,10000)
 *   npm run bench -- --plain-node   workers as `node bin/bysu.js`, without its #! line's V8 flags
 * Writes bench/results.json; prints a table.
 */
import { cp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Job, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { loadConfig } from '../src/config/load.ts';
import { enqueueManualSnapshot } from '../src/queue/enqueue.ts';
import { SNAPSHOT_QUEUE } from '../src/queue/jobs.ts';
import { initRepository } from '../src/repository/marker.ts';
import { run, stopProcess, withTempDir } from '../test/helpers/processes.ts';
import { withRedis } from '../test/helpers/redis.ts';
import { peakRss } from '../test/helpers/signals.ts';
import { withSshNodes, type TestNode } from '../test/helpers/sshd.ts';
import {
  ALL_SCENARIOS, clearRepository, cpuSecondsOf, cpuSplitOf, DEFAULT_FLEET, median, MiB, opensshRuns, parseOptions, settle, startSnapshotWorker, waitForJob, writeBenchConfig,
  type BenchSetup, type BysuProcess, type Sample,
} from './common.ts';
import { FLEET_SOURCE_APP, fleetScenario, fleetSourceParts } from './fleet.ts';
import { NIGHTLY_SIZES, nightlyScenario } from './nightly.ts';
import { rsnapshotScenario } from './rsnapshot.ts';
import { upScenario } from './up.ts';
import { verifyScenario } from './verify.ts';
import { mirrorScenario } from './mirror.ts';

const OPTIONS = parseOptions(process.argv);
const { smoke, rounds: ROUNDS, workers: WORKERS, plainNode: PLAIN_NODE, only: ONLY } = OPTIONS;
/** Fresh workers per memory case; the median is reported. */
const MEMORY_ROUNDS = smoke ? 1 : 3;
const SIZES = smoke
  ? { a: 4 * MiB, b: 1 * MiB, bNodes: 2, cNodes: 4, dParallel: 1 * MiB, dLarge: 8 * MiB }
  : { a: 1024 * MiB, b: 64 * MiB, bNodes: 8, cNodes: 40, dParallel: 64 * MiB, dLarge: 2048 * MiB };

async function main(): Promise<void> {
  const results: Record<string, unknown> = { machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, memoryGiB: Math.round(os.totalmem() / 1024 ** 3), node: process.version, kernel: os.release() }, smoke, rounds: ROUNDS, scenarios: {} };
  const scenarioResults = results.scenarios as Record<string, unknown>;
  const nightly = NIGHTLY_SIZES(smoke);
  const nodeCount = Math.max(SIZES.bNodes, SIZES.cNodes, ONLY.includes('n') ? nightly.nodes : 0);
  const table: string[][] = [['scenario', 'BYSU', 'baseline', 'ratio', 'CPU BYSU', 'CPU baseline']];
  const extraTables: string[] = [];
  await withTempDir((dir) => withRedis((redis) => withSshNodes(dir, Array.from({ length: nodeCount }, (_, index) => `b${String(index).padStart(2, '0')}`), async (nodes, keys) => {
    console.error(`bench: ${nodes.length} sshd nodes, redis ${redis.url}, ${ROUNDS} round(s)${smoke ? ', smoke sizes' : ''}`);
    const setup: BenchSetup = { dir, redis, nodes, keys, options: OPTIONS, scenarios: scenarioResults, table };
    console.error('bench: generating data');
    // Source files on the nodes, read through the page cache by `cat` on both sides.
    if (ONLY.some((key) => key === 'a' || key === 'a2')) await run('bash', ['-c', `head -c ${SIZES.a} /dev/urandom > ${nodes[0]!.dir}/a.bin`]);
    for (const node of nodes.slice(0, SIZES.bNodes)) await run('bash', ['-c', `head -c ${SIZES.b} /dev/urandom > ${node.dir}/b.bin`]);
    for (const node of nodes) await writeFile(path.join(node.dir, 'c.sql'), 'SELECT 1;\n');

    const repository = path.join(dir, 'repository');
    const configFile = path.join(dir, 'bysu.yaml');
    const apps = [
      { name: 'a', node: nodes[0]!.name, parts: [{ file: 'a.bin', run: 'cat "$NODE_DIR/a.bin"' }] },
      ...nodes.slice(0, SIZES.bNodes).map((node) => ({ name: `b-${node.name}`, node: node.name, parts: [{ file: 'b.bin', run: 'cat "$NODE_DIR/b.bin"' }] })),
      ...nodes.slice(0, SIZES.cNodes).map((node) => ({ name: `c-${node.name}`, node: node.name, parts: [{ file: 'c.sql', run: 'cat "$NODE_DIR/c.sql"' }] })),
      { name: 'd-large', node: nodes[0]!.name, parts: [{ file: 'd.bin', run: `head -c ${SIZES.dLarge} /dev/zero` }] },
      ...nodes.slice(0, SIZES.bNodes).map((node) => ({ name: `d-${node.name}`, node: node.name, parts: [{ file: 'd.bin', run: `head -c ${SIZES.dParallel} /dev/zero` }] })),
      // The one real snapshot the fleet scenario (f) copies into a fleet-sized repository.
      { name: FLEET_SOURCE_APP, node: nodes[0]!.name, parts: fleetSourceParts() },
    ];
    await writeBenchConfig(setup, configFile, { prefix: 'bench', repository, apps: apps.map((app) => ({ ...app, keep: 1, maxBytes: '10GiB' })) });
    const config = loadConfig(configFile);
    await initRepository(repository);
    // Which cipher each side uses: the OpenSSH client's default order starts with chacha20-poly1305; ssh2's, on a CPU with AES-NI, with aes128-gcm.
    const verbose = await run('ssh', ['-v', '-T', '-i', keys.identityFile, '-o', `UserKnownHostsFile=${keys.knownHostsFile}`, '-o', 'BatchMode=yes', '-p', String(nodes[0]!.port), `${nodes[0]!.user}@127.0.0.1`, 'true']);
    (results.machine as Record<string, unknown>).opensshCipher = /server->client cipher: (\S+)/.exec(verbose.stderr)?.[1] ?? 'unknown';
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    const queue = new Queue(SNAPSHOT_QUEUE, { connection, prefix: 'bench' });

    /** Snapshot `names` at once through BYSU; seconds from enqueue to the last commit, and the worker's CPU. */
    const bysu = async (names: string[], workers: { pid?: number }[]): Promise<Sample> => {
      const cpuOf = async () => (await Promise.all(workers.map((worker) => cpuSecondsOf(worker.pid!)))).reduce((sum, value) => sum + value, 0);
      const sysOf = async () => (await Promise.all(workers.map(async (worker) => (await cpuSplitOf(worker.pid!))[1]))).reduce((sum, value) => sum + value, 0);
      await settle();
      const cpuBefore = await cpuOf();
      const sysBefore = await sysOf();
      const started = Date.now();
      const ids = [];
      for (const name of names) ids.push(await enqueueManualSnapshot(queue, config, config.apps.find((app) => app.name === name)!));
      let finishedAt = 0;
      for (const id of ids) {
        for (;;) {
          const state = await queue.getJobState(id);
          const job = await Job.fromId(queue, id);
          if (state === 'completed') {
            finishedAt = Math.max(finishedAt, job!.finishedOn ?? Date.now());
            break;
          }
          if (state === 'failed') throw new Error(`${id} failed: ${job!.failedReason}`);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
      const sample = { seconds: (finishedAt - started) / 1000, cpuSeconds: (await cpuOf()) - cpuBefore, systemSeconds: (await sysOf()) - sysBefore };
      // Keep the disk and the page cache small; the marker stays, or the worker would refuse the repository.
      await clearRepository(repository);
      return sample;
    };
    const openssh = (targets: { node: TestNode; command: string }[], parallel: number, sink?: (file: string) => string) => opensshRuns(dir, targets, parallel, keys, sink);

    // (a2), (b2): the baseline with BYSU's guarantees added the way an operator would: a sha256 (OpenSSL's, with SHA-NI) and an fsync.
    const hashAndSync = (file: string) => `| tee ${file} | openssl dgst -sha256 > ${file}.sha256 && sync -d ${file}`;
    type Scenario = { key: string; label: string; bytes: number; names: string[]; targets: { node: TestNode; command: string }[]; parallel: number; higherIsBetter: boolean; sink?: (file: string) => string };
    const a: Scenario = { key: 'a', label: `(a) 1 node, one ${SIZES.a / MiB} MiB part`, bytes: SIZES.a, names: ['a'], targets: [{ node: nodes[0]!, command: `cat ${nodes[0]!.dir}/a.bin` }], parallel: 1, higherIsBetter: true };
    const bNodes = nodes.slice(0, SIZES.bNodes);
    const b: Scenario = { key: 'b', label: `(b) ${SIZES.bNodes} nodes × ${SIZES.b / MiB} MiB in parallel`, bytes: SIZES.b * SIZES.bNodes, names: bNodes.map((node) => `b-${node.name}`), targets: bNodes.map((node) => ({ node, command: `cat ${node.dir}/b.bin` })), parallel: SIZES.bNodes, higherIsBetter: true };
    const scenarios: Scenario[] = [
      a,
      { ...a, key: 'a2', label: '(a2) as (a), the baseline also hashing and fsyncing', sink: hashAndSync },
      b,
      { ...b, key: 'b2', label: '(b2) as (b), the baseline also hashing and fsyncing', sink: hashAndSync },
      { key: 'c', label: `(c) ${SIZES.cNodes} nodes, tiny parts, 16 at once`, bytes: 10 * SIZES.cNodes, names: nodes.slice(0, SIZES.cNodes).map((node) => `c-${node.name}`), targets: nodes.slice(0, SIZES.cNodes).map((node) => ({ node, command: `cat ${node.dir}/c.sql` })), parallel: 16, higherIsBetter: false },
    ];
    // Two snapshot workers by default, as compose.yaml deploys them.
    const workers: BysuProcess[] = [];
    for (let index = 0; index < WORKERS; index += 1) workers.push(await startSnapshotWorker(configFile, PLAIN_NODE));
    console.error(`bench: ${WORKERS} worker(s) started`);
    let fleetSource: string | null = null;
    try {
      for (const scenario of scenarios.filter((candidate) => ONLY.includes(candidate.key))) {
        // A warm-up round per scenario, not counted: the workers' JIT, and the memory both sides'
        // page cache will use (the first gigabyte written into a fresh VM's memory costs 2–10× more).
        await bysu(scenario.names, workers);
        await openssh(scenario.targets, scenario.parallel, scenario.sink);
        const ours: Sample[] = [];
        const theirs: Sample[] = [];
        for (let round = 0; round < ROUNDS; round += 1) {
          // Alternate which goes first, so neither always gets the warmer machine.
          if (round % 2 === 0) {
            ours.push(await bysu(scenario.names, workers));
            theirs.push(await openssh(scenario.targets, scenario.parallel, scenario.sink));
          } else {
            theirs.push(await openssh(scenario.targets, scenario.parallel, scenario.sink));
            ours.push(await bysu(scenario.names, workers));
          }
          console.error(`bench: ${scenario.label} round ${round + 1}: BYSU ${ours.at(-1)!.seconds.toFixed(2)} s, OpenSSH ${theirs.at(-1)!.seconds.toFixed(2)} s`);
        }
        const oursSeconds = median(ours.map((sample) => sample.seconds));
        const theirsSeconds = median(theirs.map((sample) => sample.seconds));
        const gib = scenario.bytes / 1024 ** 3;
        const entry = scenario.higherIsBetter
          ? { metric: 'throughput MiB/s', bysu: scenario.bytes / MiB / oursSeconds, openssh: scenario.bytes / MiB / theirsSeconds }
          : { metric: 'wall seconds', bysu: oursSeconds, openssh: theirsSeconds };
        const ratio = entry.bysu / entry.openssh;
        const cpu = { bysu: median(ours.map((sample) => sample.cpuSeconds)) / gib, openssh: median(theirs.map((sample) => sample.cpuSeconds)) / gib };
        scenarioResults[scenario.key] = { label: scenario.label, ...entry, ratio, samples: { bysu: ours, openssh: theirs }, cpuSecondsPerGiB: scenario.higherIsBetter ? cpu : null };
        table.push([
          scenario.label,
          `${entry.bysu.toFixed(scenario.higherIsBetter ? 0 : 2)} ${scenario.higherIsBetter ? 'MiB/s' : 's'}`,
          `${entry.openssh.toFixed(scenario.higherIsBetter ? 0 : 2)} ${scenario.higherIsBetter ? 'MiB/s' : 's'} OpenSSH`,
          `${ratio.toFixed(2)}×`,
          scenario.higherIsBetter ? `${cpu.bysu.toFixed(2)} s/GiB` : '-',
          scenario.higherIsBetter ? `${cpu.openssh.toFixed(2)} s/GiB` : '-',
        ]);
      }
      // (r): the (b) round against rsnapshot, with these workers and this config.
      if (ONLY.includes('r')) await rsnapshotScenario(setup, { nodes: bNodes, bytesPerNode: SIZES.b, configFile, repository, queue, snapshot: (names) => bysu(names, workers), names: b.names });
      if (ONLY.includes('f')) {
        // The one real snapshot the fleet is made of, kept outside the repository (which the rounds empty).
        const jobId = await enqueueManualSnapshot(queue, config, config.apps.find((app) => app.name === FLEET_SOURCE_APP)!);
        const job = await waitForJob(queue, jobId);
        fleetSource = path.join(dir, 'fleet-source');
        await cp((job.returnvalue as { path: string }).path, fleetSource, { recursive: true });
        await clearRepository(repository);
      }
    } finally {
      await Promise.all(workers.map((worker) => stopProcess(worker)));
    }

    // (d) memory: a fresh worker for each case and round, its peak RSS (VmHWM) read at the end; medians.
    // One part of the parallel size alone as well: against the large part, it shows whether memory grows with size.
    const memoryCases = [
      { key: 'parallel', label: `${SIZES.bNodes} × ${SIZES.dParallel / MiB} MiB at once`, names: bNodes.map((node) => `d-${node.name}`) },
      { key: 'small', label: `one ${SIZES.dParallel / MiB} MiB part`, names: [`d-${nodes[0]!.name}`] },
      { key: 'large', label: `one ${SIZES.dLarge / MiB} MiB part`, names: ['d-large'] },
    ];
    const memory: Record<string, { peakMiB: number; idleMiB: number; samples: { peakMiB: number; idleMiB: number }[] }> = {};
    for (const memoryCase of ONLY.includes('d') ? memoryCases : []) {
      const samples = [];
      for (let round = 0; round < MEMORY_ROUNDS; round += 1) {
        const fresh = await startSnapshotWorker(configFile, PLAIN_NODE);
        try {
          const idleMiB = (peakRss(fresh.pid!) ?? 0) / MiB;
          await bysu(memoryCase.names, [fresh]);
          samples.push({ peakMiB: (peakRss(fresh.pid!) ?? 0) / MiB, idleMiB });
        } finally {
          await stopProcess(fresh);
        }
      }
      memory[memoryCase.key] = { peakMiB: median(samples.map((sample) => sample.peakMiB)), idleMiB: median(samples.map((sample) => sample.idleMiB)), samples };
      console.error(`bench: (d) ${memoryCase.label}: peak RSS ${samples.map((sample) => sample.peakMiB.toFixed(0)).join(', ')} MiB (idle ${samples.map((sample) => sample.idleMiB.toFixed(0)).join(', ')})`);
    }
    if (ONLY.includes('d')) {
      const { parallel, small, large } = memory as Record<'parallel' | 'small' | 'large', { peakMiB: number; idleMiB: number }>;
      const dLabel = `(d) worker peak RSS: ${memoryCases.map((memoryCase) => memoryCase.label).join(' / ')}`;
      scenarioResults.d = { label: dLabel, cases: memoryCases.map(({ key, label }) => ({ key, label, ...memory[key] })), largeOverParallel: large.peakMiB / parallel.peakMiB, largeOverSmall: large.peakMiB / small.peakMiB };
      table.push([dLabel, `${parallel.peakMiB.toFixed(0)} / ${small.peakMiB.toFixed(0)} / ${large.peakMiB.toFixed(0)} MiB`, '-', `large/parallel ${(large.peakMiB / parallel.peakMiB).toFixed(2)}×, large/small ${(large.peakMiB / small.peakMiB).toFixed(2)}×`, '-', '-']);
    }
    await queue.close();
    connection.disconnect();

    if (ONLY.includes('n')) await nightlyScenario(setup);
    if (ONLY.includes('u')) await upScenario(setup, { nodes: bNodes, bytesPerNode: SIZES.b });
    if (ONLY.includes('f')) extraTables.push(await fleetScenario(setup, fleetSource!));
    if (ONLY.includes('v')) await verifyScenario(setup);
    if (ONLY.includes('m')) await mirrorScenario(setup);
  })));

  const widths = table[0]!.map((_, column) => Math.max(...table.map((row) => row[column]!.length)));
  console.log(table.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd()).join('\n'));
  for (const extra of extraTables) console.log(`\n${extra}`);
  const partial = ONLY.length < ALL_SCENARIOS.length || WORKERS !== 2 || PLAIN_NODE || OPTIONS.fleet.join() !== DEFAULT_FLEET.join();
  const output = path.join(path.dirname(new URL(import.meta.url).pathname), smoke ? 'results-smoke.json' : partial ? 'results-partial.json' : 'results.json');
  await writeFile(output, `${JSON.stringify(results, null, 2)}\n`);
  console.error(`bench: wrote ${output}`);
}

await main();
