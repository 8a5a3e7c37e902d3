/**
 * Scenario (m): what a mirror's copy costs against `curl` of the same files
 * from the same API, in the same run, alternating rounds. The source is a
 * `bysu dashboard` serving one snapshot of a 1 GiB part (smoke: 16 MiB)
 * taken by a snapshot worker; the mirror is a `bysu worker mirror` of another
 * prefix and repository, timed from enqueue to its job's end (listing,
 * download, hashing, fsync, commit, retention). The baseline is `curl -o` of
 * every file of the snapshot, alone, and followed by `sha256sum -c` and
 * `sync` of them, which is what a copy by hand would add to be as sure. Both read
 * the source's page cache (the file was just written there).
 * Then a resume: the source killed a third of the way through a download
 * (the copy paced by mirrors[].maxRate so that the moment can be hit),
 * started again, and the run repeated: the bytes it received against the
 * bytes it lacked.
 */
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { loadConfig } from '../src/config/load.ts';
import { enqueueManualSnapshot } from '../src/queue/enqueue.ts';
import { MIRROR_JOB, MIRROR_QUEUE, SNAPSHOT_QUEUE, type MirrorJobResult, type SnapshotResult } from '../src/queue/jobs.ts';
import { initRepository } from '../src/repository/marker.ts';
import { freePort, run, stopProcess } from '../test/helpers/processes.ts';
import { cpuSecondsOf, median, MiB, settle, startBysu, startSnapshotWorker, waitForJob, writeBenchConfig, type BenchSetup, type BysuProcess } from './common.ts';

const TOKEN = 'bench-mirror-token-0123456789abcdef';

export async function mirrorScenario(setup: BenchSetup): Promise<void> {
  const { dir, nodes, options, scenarios, table } = setup;
  const bytes = options.smoke ? 16 * MiB : 1024 * MiB;
  const rounds = options.smoke ? 1 : options.rounds;
  const node = nodes[0]!;
  await run('bash', ['-c', `head -c ${bytes} /dev/urandom > ${node.dir}/m.bin`]);
  const source = path.join(dir, 'repository-mirror-source');
  const offsite = path.join(dir, 'repository-mirror-offsite');
  await initRepository(source);
  await initRepository(offsite);
  const port = await freePort();
  const sourceConfig = path.join(dir, 'bysu-mirror-source.yaml');
  await writeBenchConfig(setup, sourceConfig, {
    prefix: 'benchms', repository: source,
    apps: [{ name: 'm-data', node: node.name, keep: 1, maxBytes: '10GiB', parts: [{ file: 'm.bin', run: 'cat "$NODE_DIR/m.bin"' }, { file: 'm.sql', run: "seq 1 1000 | sed 's/.*/INSERT INTO t VALUES (&);/'" }] }],
    extra: { dashboard: { host: '127.0.0.1', port, apiToken: TOKEN } },
  });
  const offsiteConfig = path.join(dir, 'bysu-mirror-offsite.yaml');
  const writeOffsite = (maxRate: number | string) => writeBenchConfig(setup, offsiteConfig, {
    prefix: 'benchmo', repository: offsite, apps: [], nodes: [],
    extra: { mirrors: [{ name: 'home', url: `http://127.0.0.1:${port}`, tokenEnv: 'BYSU_BENCH_TOKEN', schedule: '0 0 1 1 *', keep: 1, attempts: 1, maxRate }] },
  });
  await writeOffsite(0);
  process.env.BYSU_BENCH_TOKEN = TOKEN; // the mirror worker's environment (startBysu passes process.env on)

  const connection = new Redis(setup.redis.url, { maxRetriesPerRequest: null });
  const snapshotQueue = new Queue(SNAPSHOT_QUEUE, { connection, prefix: 'benchms' });
  const mirrorQueue = new Queue(MIRROR_QUEUE, { connection, prefix: 'benchmo' });
  const processes: BysuProcess[] = [];
  const curlDir = path.join(dir, 'mirror-curl');
  try {
    const snapshotWorker = await startSnapshotWorker(sourceConfig, options.plainNode);
    processes.push(snapshotWorker);
    const config = loadConfig(sourceConfig);
    const taken = (await waitForJob(snapshotQueue, await enqueueManualSnapshot(snapshotQueue, config, config.apps[0]!))).returnvalue as SnapshotResult;
    await stopProcess(snapshotWorker);
    let dashboard = await startBysu(sourceConfig, ['dashboard'], 'dashboard started', { plainNode: options.plainNode });
    processes.push(dashboard);
    let mirrorWorker = await startBysu(offsiteConfig, ['worker', 'mirror'], 'mirror worker started', { plainNode: options.plainNode });
    processes.push(mirrorWorker);
    const files = ['m.bin', 'm.sql', 'manifest.json', 'SHA256SUMS'];

    const clearOffsite = () => rm(path.join(offsite, 'm-data'), { recursive: true, force: true });
    const mirrorRun = async (): Promise<{ seconds: number; cpuSeconds: number; result: MirrorJobResult }> => {
      await clearOffsite();
      await settle();
      const cpuBefore = await cpuSecondsOf(mirrorWorker.pid!);
      const job = await mirrorQueue.add(MIRROR_JOB, { mirror: 'home', trigger: 'manual' }, { attempts: 1 });
      const done = await waitForJob(mirrorQueue, job.id!);
      return { seconds: (done.finishedOn! - job.timestamp) / 1000, cpuSeconds: (await cpuSecondsOf(mirrorWorker.pid!)) - cpuBefore, result: done.returnvalue as MirrorJobResult };
    };
    const curlRun = async (checked: boolean): Promise<{ seconds: number; cpuSeconds: number }> => {
      await rm(curlDir, { recursive: true, force: true });
      await mkdir(curlDir, { recursive: true });
      await settle();
      const base = `http://127.0.0.1:${port}/api/apps/m-data/snapshots/${taken.id}`;
      // bash's `times` gives the children's CPU: curl, sha256sum and sync.
      const check = checked ? ` && sha256sum --quiet -c SHA256SUMS && sync -d ${files.join(' ')}` : '';
      const script = `cd ${curlDir} && for f in ${files.join(' ')}; do curl -fsS -H "Authorization: Bearer ${TOKEN}" -o "$f" "${base}/$f" || exit 1; done${check} && times`;
      const started = Date.now();
      const result = await run('bash', ['-c', script]);
      if (result.code !== 0) throw new Error(`curl baseline failed: ${result.stderr}`);
      const seconds = (Date.now() - started) / 1000;
      const lines = result.stdout.trim().split('\n');
      const children = (lines.at(-1) ?? '').split(/\s+/).map((value) => { const match = /^(\d+)m([\d.]+)s$/.exec(value); return match ? Number(match[1]) * 60 + Number(match[2]) : 0; });
      return { seconds, cpuSeconds: children.reduce((sum, value) => sum + value, 0) };
    };

    // A warm-up round of each, not counted.
    await mirrorRun();
    await curlRun(false);
    await curlRun(true);
    const ours: { seconds: number; cpuSeconds: number }[] = [];
    const plain: { seconds: number; cpuSeconds: number }[] = [];
    const theirs: { seconds: number; cpuSeconds: number }[] = [];
    for (let round = 0; round < rounds; round += 1) {
      // Rotate which goes first, so that none always gets the warmer machine.
      const sides = [async () => ours.push(await mirrorRun()), async () => plain.push(await curlRun(false)), async () => theirs.push(await curlRun(true))];
      for (let index = 0; index < sides.length; index += 1) await sides[(index + round) % sides.length]!();
    }
    const total = taken.bytes;
    const mibPerSecond = (seconds: number) => total / MiB / seconds;
    const bysuSeconds = median(ours.map((sample) => sample.seconds));
    const plainSeconds = median(plain.map((sample) => sample.seconds));
    const curlSeconds = median(theirs.map((sample) => sample.seconds));

    // The resume: paced at a tenth of a second per 1/10 of the file, the source killed a third of the way in.
    await clearOffsite();
    await stopProcess(mirrorWorker);
    const pace = Math.max(MiB, Math.floor(bytes / 10));
    await writeOffsite(pace);
    mirrorWorker = await startBysu(offsiteConfig, ['worker', 'mirror'], 'mirror worker started', { plainNode: options.plainNode });
    processes.push(mirrorWorker);
    const cut = await mirrorQueue.add(MIRROR_JOB, { mirror: 'home', trigger: 'manual' }, { attempts: 1 });
    const partial = path.join(offsite, 'm-data', '.incoming');
    const onDisk = async () => {
      let sum = 0;
      for (const name of await readdir(partial).catch(() => [] as string[])) {
        for (const file of await readdir(path.join(partial, name)).catch(() => [] as string[])) sum += (await stat(path.join(partial, name, file)).catch(() => ({ size: 0 }))).size;
      }
      return sum;
    };
    while ((await onDisk()) < total / 3) await new Promise((resolve) => setTimeout(resolve, 50));
    dashboard.kill('SIGKILL');
    await waitForJob(mirrorQueue, cut.id!).catch(() => undefined); // it fails: the source is gone
    const kept = await onDisk();
    dashboard = await startBysu(sourceConfig, ['dashboard'], 'dashboard started', { plainNode: options.plainNode });
    processes.push(dashboard);
    await stopProcess(mirrorWorker);
    await writeOffsite(0);
    mirrorWorker = await startBysu(offsiteConfig, ['worker', 'mirror'], 'mirror worker started', { plainNode: options.plainNode });
    processes.push(mirrorWorker);
    const resumedJob = await mirrorQueue.add(MIRROR_JOB, { mirror: 'home', trigger: 'manual' }, { attempts: 1 });
    const resumed = (await waitForJob(mirrorQueue, resumedJob.id!)).returnvalue as MirrorJobResult;
    const app = resumed.apps.find((entry) => entry.app === 'm-data')!;

    scenarios.m = {
      bytes: total,
      rounds,
      bysu: { seconds: bysuSeconds, mibPerSecond: mibPerSecond(bysuSeconds), cpuSeconds: median(ours.map((sample) => sample.cpuSeconds)), samples: ours.map((sample) => sample.seconds) },
      curlPlain: { seconds: plainSeconds, mibPerSecond: mibPerSecond(plainSeconds), cpuSeconds: median(plain.map((sample) => sample.cpuSeconds)), samples: plain.map((sample) => sample.seconds) },
      curl: { seconds: curlSeconds, mibPerSecond: mibPerSecond(curlSeconds), cpuSeconds: median(theirs.map((sample) => sample.cpuSeconds)), samples: theirs.map((sample) => sample.seconds) },
      resume: { keptOnDisk: kept, lacked: total - kept, received: app.received, resumedFrom: app.resumed, reReceived: app.received - (total - app.resumed) },
    };
    table.push(
      [`(m) a mirror copy of one ${bytes / MiB} MiB snapshot, from enqueue`, `${mibPerSecond(bysuSeconds).toFixed(0)} MiB/s`, `${mibPerSecond(plainSeconds).toFixed(0)} MiB/s curl -o`, `${(plainSeconds / bysuSeconds).toFixed(2)}×`, `${median(ours.map((sample) => sample.cpuSeconds)).toFixed(2)} s`, `${median(plain.map((sample) => sample.cpuSeconds)).toFixed(2)} s`],
      ['(m) the same, curl then sha256sum -c and sync', `${mibPerSecond(bysuSeconds).toFixed(0)} MiB/s`, `${mibPerSecond(curlSeconds).toFixed(0)} MiB/s`, `${(curlSeconds / bysuSeconds).toFixed(2)}×`, '-', `${median(theirs.map((sample) => sample.cpuSeconds)).toFixed(2)} s`],
      ['(m) a resume after the source died mid-file: received / lacked', `${(app.received / MiB).toFixed(1)} MiB`, `${((total - app.resumed) / MiB).toFixed(1)} MiB lacked`, '-', '-', '-'],
    );
  } finally {
    for (const child of processes) await stopProcess(child);
    await snapshotQueue.close();
    await mirrorQueue.close();
    connection.disconnect();
    await rm(curlDir, { recursive: true, force: true });
    await rm(source, { recursive: true, force: true });
    await rm(offsite, { recursive: true, force: true });
  }
}
