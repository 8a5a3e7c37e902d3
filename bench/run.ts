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
 * BYSU runs two snapshot workers for (a)–(c), as compose.yaml deploys it;
 * CPU is the sum of both workers against the sum of the ssh clients.
 *
 *   npm run bench               the full run (a few minutes)
 *   npm run bench -- --smoke    tiny sizes, one round: keeps the benchmark working (CI)
 *   npm run bench -- --rounds 9   (default 5, after one warm-up round that is not counted)
 *   npm run bench -- --only a,b --workers 1   (some scenarios; snapshot worker processes, default 2)
 *   npm run bench -- --plain-node   workers as `node bin/bysu.js`, without its #! line's V8 flags
 * Writes bench/results.json; prints a table.
 */
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Job, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { loadConfig } from '../src/config/load.ts';
import { enqueueManualSnapshot } from '../src/queue/enqueue.ts';
import { SNAPSHOT_QUEUE } from '../src/queue/jobs.ts';
import { REPOSITORY_MARKER_FILE } from '../src/repository/layout.ts';
import { initRepository } from '../src/repository/marker.ts';
import { BYSU_BIN } from '../test/helpers/cluster.ts';
import { run, spawnTracked, stopProcess, withTempDir } from '../test/helpers/processes.ts';
import { withRedis } from '../test/helpers/redis.ts';
import { peakRss } from '../test/helpers/signals.ts';
import { withSshNodes, type ClientKeys, type TestNode } from '../test/helpers/sshd.ts';

const smoke = process.argv.includes('--smoke');
const roundsArgument = process.argv.indexOf('--rounds');
const ROUNDS = smoke ? 1 : roundsArgument > 0 ? Number(process.argv[roundsArgument + 1]) : 5;
const workersArgument = process.argv.indexOf('--workers');
const WORKERS = workersArgument > 0 ? Number(process.argv[workersArgument + 1]) : 2;
const PLAIN_NODE = process.argv.includes('--plain-node');
const onlyArgument = process.argv.indexOf('--only');
const ALL_SCENARIOS = ['a', 'a2', 'b', 'b2', 'c', 'd'];
const ONLY = onlyArgument > 0 ? process.argv[onlyArgument + 1]!.split(',') : ALL_SCENARIOS;
const MiB = 1024 * 1024;
/** Fresh workers per memory case; the median is reported. */
const MEMORY_ROUNDS = smoke ? 1 : 3;
const SIZES = smoke
  ? { a: 4 * MiB, b: 1 * MiB, bNodes: 2, cNodes: 4, dParallel: 1 * MiB, dLarge: 8 * MiB }
  : { a: 1024 * MiB, b: 64 * MiB, bNodes: 8, cNodes: 40, dParallel: 64 * MiB, dLarge: 2048 * MiB };

interface Sample {
  seconds: number;
  /** CPU seconds of the client side (BYSU worker, or the ssh clients). */
  cpuSeconds: number;
  /** Of which in the kernel (writes, fsync, page cache), where known. */
  systemSeconds?: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ: 100 on Linux). */
const USER_HZ = 100;

/** CPU seconds (user + system) a process has used so far, from /proc. */
async function cpuSecondsOf(pid: number): Promise<number> {
  return (await cpuSplitOf(pid)).reduce((sum, value) => sum + value, 0);
}

/** [user, system] CPU seconds of a process so far, from /proc. */
async function cpuSplitOf(pid: number): Promise<[number, number]> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return [Number(fields[11]) / USER_HZ, Number(fields[12]) / USER_HZ];
}

async function main(): Promise<void> {
  const results: Record<string, unknown> = { machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, memoryGiB: Math.round(os.totalmem() / 1024 ** 3), node: process.version, kernel: os.release() }, smoke, rounds: ROUNDS, scenarios: {} };
  const nodeCount = Math.max(SIZES.bNodes, SIZES.cNodes);
  await withTempDir((dir) => withRedis((redis) => withSshNodes(dir, Array.from({ length: nodeCount }, (_, index) => `b${String(index).padStart(2, '0')}`), async (nodes, keys) => {
    console.error(`bench: ${nodes.length} sshd nodes, redis ${redis.url}, ${ROUNDS} round(s)${smoke ? ', smoke sizes' : ''}`);
    console.error('bench: generating data');
    // Source files on the nodes, read through the page cache by `cat` on both sides.
    await writeFile(path.join(nodes[0]!.dir, 'a.bin'), '');
    await run('bash', ['-c', `head -c ${SIZES.a} /dev/urandom > ${nodes[0]!.dir}/a.bin`]);
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
    ];
    await writeFile(configFile, stringify({
      redis: { url: redis.url, prefix: 'bench' },
      repository,
      ssh: { user: nodes[0]!.user, identityFile: keys.identityFile, knownHosts: keys.knownHostsFile },
      concurrency: { global: 16, perNode: 1, perWorker: 16, busyNodeDelay: '200ms' },
      log: { level: 'warn' },
      nodes: nodes.map((node) => ({ name: node.name, host: node.host, port: node.port })),
      apps: apps.map((app) => ({ ...app, keep: 1, maxBytes: '10GiB' })),
    }));
    const config = loadConfig(configFile);
    await initRepository(repository);
    // Which cipher each side uses: the OpenSSH client's default order starts with chacha20-poly1305; ssh2's, on a CPU with AES-NI, with aes128-gcm.
    const verbose = await run('ssh', ['-v', '-T', '-i', keys.identityFile, '-o', `UserKnownHostsFile=${keys.knownHostsFile}`, '-o', 'BatchMode=yes', '-p', String(nodes[0]!.port), `${nodes[0]!.user}@127.0.0.1`, 'true']);
    (results.machine as Record<string, unknown>).opensshCipher = /server->client cipher: (\S+)/.exec(verbose.stderr)?.[1] ?? 'unknown';
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    const queue = new Queue(SNAPSHOT_QUEUE, { connection, prefix: 'bench' });

    const startWorker = async () => {
      // As deployed: the script itself, so that its #! line's V8 flags apply (--plain-node: without them).
      const [command, args] = PLAIN_NODE ? [process.execPath, [BYSU_BIN, 'worker', 'snapshot']] : [BYSU_BIN, ['worker', 'snapshot']];
      const child = spawnTracked(command, args, { env: { ...process.env, BYSU_CONFIG: configFile, BYSU_LOG_FORMAT: 'json', BYSU_LOG_LEVEL: 'info' } });
      let output = '';
      child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      while (!output.includes('worker started')) {
        if (child.exitCode !== null) throw new Error(`worker exited: ${output}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return child;
    };

    /**
     * Before each timed run, either side: write back what the previous run left
     * dirty (the baseline does not fsync, so without this its gigabyte would be
     * written out during BYSU's next run, and BYSU's fsync would wait behind it).
     */
    const settle = async () => {
      await run('sync', []);
    };

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
      for (const name of await readdir(repository)) if (name !== REPOSITORY_MARKER_FILE) await rm(path.join(repository, name), { recursive: true, force: true });
      return sample;
    };

    /**
     * The same transfers with the OpenSSH client, `parallel` at a time; client CPU from bash's `times`.
     * `sink` is the shell that takes ssh's output: `> file` by default, or one that also hashes and fsyncs.
     */
    const openssh = async (targets: { node: TestNode; command: string }[], parallel: number, keysUsed: ClientKeys, sink = (file: string) => `> ${file}`): Promise<Sample> => {
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
          const script = `set -o pipefail; ssh -T -i ${keysUsed.identityFile} -o UserKnownHostsFile=${keysUsed.knownHostsFile} -o BatchMode=yes -p ${node.port} ${node.user}@127.0.0.1 '${command}' ${sink(`${out}/${index}.out`)}; times`;
          const result = await run('bash', ['-c', script]);
          if (result.code !== 0) throw new Error(`ssh failed: ${result.stderr}`);
          const child = result.stdout.trim().split('\n')[1]!.split(/\s+/).map((value) => {
            const match = /(\d+)m([\d.]+)s/.exec(value)!;
            return Number(match[1]) * 60 + Number(match[2]);
          });
          cpuSeconds += child[0]! + child[1]!;
        }
      };
      await Promise.all(Array.from({ length: parallel }, lane));
      const sample = { seconds: (Date.now() - started) / 1000, cpuSeconds };
      await rm(out, { recursive: true, force: true });
      return sample;
    };

    // (a2), (b2): the baseline with BYSU's guarantees added the way an operator would: a sha256 (OpenSSL's, with SHA-NI) and an fsync.
    const hashAndSync = (file: string) => `| tee ${file} | openssl dgst -sha256 > ${file}.sha256 && sync -d ${file}`;
    type Scenario = { key: string; label: string; bytes: number; names: string[]; targets: { node: TestNode; command: string }[]; parallel: number; higherIsBetter: boolean; sink?: (file: string) => string };
    const a: Scenario = { key: 'a', label: `(a) 1 node, one ${SIZES.a / MiB} MiB part`, bytes: SIZES.a, names: ['a'], targets: [{ node: nodes[0]!, command: `cat ${nodes[0]!.dir}/a.bin` }], parallel: 1, higherIsBetter: true };
    const b: Scenario = { key: 'b', label: `(b) ${SIZES.bNodes} nodes × ${SIZES.b / MiB} MiB in parallel`, bytes: SIZES.b * SIZES.bNodes, names: nodes.slice(0, SIZES.bNodes).map((node) => `b-${node.name}`), targets: nodes.slice(0, SIZES.bNodes).map((node) => ({ node, command: `cat ${node.dir}/b.bin` })), parallel: SIZES.bNodes, higherIsBetter: true };
    const scenarios: Scenario[] = [
      a,
      { ...a, key: 'a2', label: '(a2) as (a), the baseline also hashing and fsyncing', sink: hashAndSync },
      b,
      { ...b, key: 'b2', label: '(b2) as (b), the baseline also hashing and fsyncing', sink: hashAndSync },
      { key: 'c', label: `(c) ${SIZES.cNodes} nodes, tiny parts, 16 at once`, bytes: 10 * SIZES.cNodes, names: nodes.slice(0, SIZES.cNodes).map((node) => `c-${node.name}`), targets: nodes.slice(0, SIZES.cNodes).map((node) => ({ node, command: `cat ${node.dir}/c.sql` })), parallel: 16, higherIsBetter: false },
    ];
    // Two snapshot workers by default, as compose.yaml deploys them.
    const workers = [];
    for (let index = 0; index < WORKERS; index += 1) workers.push(await startWorker());
    console.error(`bench: ${WORKERS} worker(s) started`);
    const table: string[][] = [['scenario', 'BYSU', 'OpenSSH', 'ratio', 'CPU s/GiB BYSU', 'CPU s/GiB ssh']];
    try {
      for (const scenario of scenarios.filter((candidate) => ONLY.includes(candidate.key))) {
        // A warm-up round per scenario, not counted: the workers' JIT, and the memory both sides'
        // page cache will use (the first gigabyte written into a fresh VM's memory costs 2–10× more).
        await bysu(scenario.names, workers);
        await openssh(scenario.targets, scenario.parallel, keys, scenario.sink);
        const ours: Sample[] = [];
        const theirs: Sample[] = [];
        for (let round = 0; round < ROUNDS; round += 1) {
          // Alternate which goes first, so neither always gets the warmer machine.
          if (round % 2 === 0) {
            ours.push(await bysu(scenario.names, workers));
            theirs.push(await openssh(scenario.targets, scenario.parallel, keys, scenario.sink));
          } else {
            theirs.push(await openssh(scenario.targets, scenario.parallel, keys, scenario.sink));
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
        (results.scenarios as Record<string, unknown>)[scenario.key] = { label: scenario.label, ...entry, ratio, samples: { bysu: ours, openssh: theirs }, cpuSecondsPerGiB: scenario.higherIsBetter ? cpu : null };
        table.push([
          scenario.label,
          `${entry.bysu.toFixed(scenario.higherIsBetter ? 0 : 2)} ${scenario.higherIsBetter ? 'MiB/s' : 's'}`,
          `${entry.openssh.toFixed(scenario.higherIsBetter ? 0 : 2)} ${scenario.higherIsBetter ? 'MiB/s' : 's'}`,
          `${ratio.toFixed(2)}×`,
          scenario.higherIsBetter ? cpu.bysu.toFixed(2) : '-',
          scenario.higherIsBetter ? cpu.openssh.toFixed(2) : '-',
        ]);
      }
    } finally {
      await Promise.all(workers.map((worker) => stopProcess(worker)));
    }

    // (d) memory: a fresh worker for each case and round, its peak RSS (VmHWM) read at the end; medians.
    // One part of the parallel size alone as well: against the large part, it shows whether memory grows with size.
    const memoryCases = [
      { key: 'parallel', label: `${SIZES.bNodes} × ${SIZES.dParallel / MiB} MiB at once`, names: nodes.slice(0, SIZES.bNodes).map((node) => `d-${node.name}`) },
      { key: 'small', label: `one ${SIZES.dParallel / MiB} MiB part`, names: [`d-${nodes[0]!.name}`] },
      { key: 'large', label: `one ${SIZES.dLarge / MiB} MiB part`, names: ['d-large'] },
    ];
    const memory: Record<string, { peakMiB: number; idleMiB: number; samples: { peakMiB: number; idleMiB: number }[] }> = {};
    for (const memoryCase of ONLY.includes('d') ? memoryCases : []) {
      const samples = [];
      for (let round = 0; round < MEMORY_ROUNDS; round += 1) {
        const fresh = await startWorker();
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
      (results.scenarios as Record<string, unknown>).d = { label: dLabel, cases: memoryCases.map(({ key, label }) => ({ key, label, ...memory[key] })), largeOverParallel: large.peakMiB / parallel.peakMiB, largeOverSmall: large.peakMiB / small.peakMiB };
      table.push([dLabel, `${parallel.peakMiB.toFixed(0)} / ${small.peakMiB.toFixed(0)} / ${large.peakMiB.toFixed(0)} MiB`, '-', `large/parallel ${(large.peakMiB / parallel.peakMiB).toFixed(2)}×, large/small ${(large.peakMiB / small.peakMiB).toFixed(2)}×`, '-', '-']);
    }

    await queue.close();
    connection.disconnect();
    const widths = table[0]!.map((_, column) => Math.max(...table.map((row) => row[column]!.length)));
    console.log(table.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ')).join('\n'));
    const partial = ONLY.length < ALL_SCENARIOS.length || WORKERS !== 2 || PLAIN_NODE;
    const output = path.join(path.dirname(new URL(import.meta.url).pathname), smoke ? 'results-smoke.json' : partial ? 'results-partial.json' : 'results.json');
    await writeFile(output, `${JSON.stringify(results, null, 2)}\n`);
    console.error(`bench: wrote ${output}`);
  })));
}

await main();
