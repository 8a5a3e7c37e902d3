/**
 * Scenario (r): the (b) round (8 nodes × 64 MiB) against rsnapshot, the tool
 * an operator would pick instead: rsync over ssh from the same sshd nodes.
 * Sides, in the same run, in turn (each round starts with the next one):
 * - BYSU's job span (first job created → last finished, the run's workers);
 * - BYSU as a user runs it, `bysu snapshot <apps> --wait`: its wall time, and
 *   its overhead over its jobs' span (start → first job, last job → exit);
 * - rsnapshot, a fresh full copy, one rsnapshot per node at once (the same
 *   parallelism as BYSU), then `sync`;
 * - rsnapshot, a fresh full copy, one config with every node (rsnapshot takes
 *   its backup points in turn), then `sync`;
 * - rsnapshot, the second night: each file changed by 1 % (16 patches in
 *   place) since a full copy, so rsync's delta transfer sends about 1 %,
 *   then `sync`. BYSU pulls whole dumps by design: its figure for that night
 *   is its fresh one.
 * Medians and bests of the rounds. Skipped, saying so, without rsnapshot.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, link, mkdir, open, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Queue } from 'bullmq';
import { run } from '../test/helpers/processes.ts';
import type { TestNode } from '../test/helpers/sshd.ts';
import { childTimes, clearRepository, median, MiB, rotate, settle, snapshotWithCli, type BenchSetup, type CliSnapshot, type Sample } from './common.ts';

/** What (r) needs of the (b) round: its nodes and apps, and a way to run it through BYSU. */
export interface RoundUnderTest {
  nodes: TestNode[];
  bytesPerNode: number;
  configFile: string;
  repository: string;
  queue: Queue;
  /** The apps' names, one per node. */
  names: string[];
  /** Snapshot the apps at once through the run's workers; seconds from the first enqueue to the last commit. */
  snapshot(names: string[]): Promise<Sample>;
}

interface RsnapshotSample extends Sample {
  /** Bytes rsync received over ssh (its --stats), all nodes together. */
  bytesReceived: number;
}

/** The share of each file that the second night changes, in this many patches. */
const CHANGED = 0.01;
const PATCHES = 16;

/** Given the run's setup and the (b) round, measure BYSU against rsnapshot and record the figures. */
export async function rsnapshotScenario(setup: BenchSetup, round: RoundUnderTest): Promise<void> {
  const label = `(r) ${round.nodes.length} nodes × ${round.bytesPerNode / MiB} MiB: BYSU against rsnapshot`;
  const which = await run('bash', ['-c', 'command -v rsnapshot']);
  if (which.code !== 0) {
    const reason = 'rsnapshot is not installed: `npm run setup` as root installs it, or apt-get install -y rsnapshot';
    console.error(`bench: (r) skipped: ${reason}`);
    setup.scenarios.r = { label, skipped: reason };
    setup.table.push([label, 'skipped', reason, '-', '-', '-']);
    return;
  }
  const dir = path.join(setup.dir, 'rsnapshot');
  await mkdir(dir, { recursive: true });
  // rsync takes directories: each node's file, hard-linked into a directory of its own (changed in place, both names see it).
  for (const node of round.nodes) {
    await mkdir(path.join(node.dir, 'rsnap'), { recursive: true });
    await rm(path.join(node.dir, 'rsnap', 'b.bin'), { force: true });
    await link(path.join(node.dir, 'b.bin'), path.join(node.dir, 'rsnap', 'b.bin'));
    await copyFile(path.join(node.dir, 'b.bin'), path.join(node.dir, 'b.orig'));
  }
  const sshConfig = path.join(dir, 'ssh_config');
  await writeFile(sshConfig, round.nodes.map((node) => [
    `Host ${node.name}`, '  HostName 127.0.0.1', `  Port ${node.port}`, `  User ${node.user}`, `  IdentityFile ${setup.keys.identityFile}`,
    `  UserKnownHostsFile ${setup.keys.knownHostsFile}`, '  BatchMode yes', '',
  ].join('\n')).join('\n'));
  const sshPath = (await run('bash', ['-c', 'command -v ssh'])).stdout.trim();
  /** An rsnapshot.conf (tabs between fields) that backs up `nodes` into `root`. */
  const writeConf = async (name: string, nodes: TestNode[]) => {
    const file = path.join(dir, `${name}.conf`);
    const lines = [
      ['config_version', '1.2'], ['snapshot_root', `${path.join(dir, 'roots', name)}/`], ['cmd_cp', '/bin/cp'], ['cmd_rm', '/bin/rm'],
      ['cmd_rsync', '/usr/bin/rsync'], ['cmd_ssh', sshPath], ['ssh_args', `-F ${sshConfig}`], ['retain', 'alpha', '7'],
      // rsnapshot's default rsync arguments, with --stats: what crossed the wire is recorded (verbose 3 lets rsync print it).
      ['rsync_long_args', '--delete --numeric-ids --relative --delete-excluded --stats'],
      ['verbose', '3'], ['loglevel', '1'], ['lockfile', path.join(dir, `${name}.pid`)],
      ...nodes.map((node) => ['backup', `${node.name}:${path.join(node.dir, 'rsnap')}/`, `${node.name}/`]),
    ];
    await writeFile(file, `${lines.map((fields) => fields.join('\t')).join('\n')}\n`);
    return file;
  };
  const perNode = await Promise.all(round.nodes.map((node) => writeConf(node.name, [node])));
  const allInOne = await writeConf('all', round.nodes);

  /**
   * Run rsnapshot over these configs at once, then sync; seconds, the CPU of
   * rsnapshot, rsync and ssh, and the bytes rsync received (its --stats).
   */
  const rsnapshot = async (confs: string[]): Promise<RsnapshotSample> => {
    const started = Date.now();
    const runs = await Promise.all(confs.map(async (conf) => {
      const result = await run('bash', ['-c', `rsnapshot -c ${conf} alpha; code=$?; times; exit $code`]);
      if (result.code !== 0) throw new Error(`rsnapshot -c ${conf} alpha exited ${result.code}: ${result.stderr.slice(-2000)}`);
      const received = [...result.stdout.matchAll(/^Total bytes received: ([\d,]+)/gm)].map((match) => Number(match[1]!.replaceAll(',', '')));
      return { cpuSeconds: childTimes(result.stdout), bytesReceived: received.reduce((sum, value) => sum + value, 0) };
    }));
    await run('sync', []);
    return {
      seconds: (Date.now() - started) / 1000,
      cpuSeconds: runs.reduce((sum, value) => sum + value.cpuSeconds, 0),
      bytesReceived: runs.reduce((sum, value) => sum + value.bytesReceived, 0),
    };
  };
  const clearRoots = () => rm(path.join(dir, 'roots'), { recursive: true, force: true });
  const restoreFiles = () => Promise.all(round.nodes.map((node) => copyFile(path.join(node.dir, 'b.orig'), path.join(node.dir, 'b.bin'))));
  /** Change CHANGED of each node's file, in PATCHES patches at random offsets, in place. */
  const changeFiles = () => Promise.all(round.nodes.map(async (node) => {
    const patch = Math.floor((round.bytesPerNode * CHANGED) / PATCHES);
    const handle = await open(path.join(node.dir, 'b.bin'), 'r+');
    try {
      for (let index = 0; index < PATCHES; index += 1) {
        const slot = Math.floor(round.bytesPerNode / PATCHES);
        await handle.write(randomBytes(patch), 0, patch, index * slot + Math.floor(Math.random() * (slot - patch)));
      }
    } finally {
      await handle.close();
    }
  }));

  const sides: Record<string, () => Promise<RsnapshotSample | Sample | CliSnapshot>> = {
    span: () => round.snapshot(round.names),
    cli: async () => {
      await settle();
      const result = await snapshotWithCli(round.configFile, round.queue, round.names);
      await clearRepository(round.repository);
      return result;
    },
    fresh: async () => {
      await clearRoots();
      await settle();
      return rsnapshot(perNode);
    },
    sequential: async () => {
      await clearRoots();
      await settle();
      return rsnapshot([allInOne]);
    },
    delta: async () => {
      // Last night's full copy, untimed; then today's dumps differ by 1 %.
      await clearRoots();
      await restoreFiles();
      await rsnapshot(perNode);
      await changeFiles();
      await settle();
      try {
        return await rsnapshot(perNode);
      } finally {
        await restoreFiles();
      }
    },
  };
  // Warm-up, not counted: rsnapshot's and rsync's first start, and the CLI's (not in smoke: it keeps the bench working, no more).
  if (!setup.options.smoke) {
    await sides.fresh!();
    await sides.cli!();
  }
  const rounds = setup.options.smoke ? 1 : 3;
  const samples: Record<string, (Sample | CliSnapshot)[]> = Object.fromEntries(Object.keys(sides).map((key) => [key, []]));
  for (let index = 0; index < rounds; index += 1) {
    for (const key of rotate(Object.keys(sides), index)) samples[key]!.push(await sides[key]!());
    const show = (key: string) => {
      const sample = samples[key]!.at(-1)!;
      return ('wallSeconds' in sample ? sample.wallSeconds : sample.seconds).toFixed(2);
    };
    console.error(`bench: (r) round ${index + 1}: BYSU span ${show('span')} s, snapshot --wait ${show('cli')} s, rsnapshot fresh ${show('fresh')} s (in turn ${show('sequential')} s), second night ${show('delta')} s`);
  }
  await clearRoots();
  const secondsOf = (key: string) => samples[key]!.map((sample) => ('wallSeconds' in sample ? sample.wallSeconds : sample.seconds));
  const bytesOf = (key: string) => median(samples[key]!.map((sample) => ('bytesReceived' in sample ? (sample as RsnapshotSample).bytesReceived : 0)));
  const summary = (key: string) => ({ median: median(secondsOf(key)), best: Math.min(...secondsOf(key)), ...(key === 'fresh' || key === 'sequential' || key === 'delta' ? { bytesReceived: bytesOf(key) } : {}) });
  const cli = samples.cli as CliSnapshot[];
  const overhead = {
    median: median(cli.map((sample) => sample.wallSeconds - sample.spanSeconds)),
    start: median(cli.map((sample) => sample.startSeconds)),
    end: median(cli.map((sample) => sample.endSeconds)),
  };
  const span = summary('span');
  const fresh = summary('fresh');
  const goal = { target: `BYSU job span ≤ 0.8 × rsnapshot's fresh copy (${round.nodes.length} at once)`, ratio: span.median / fresh.median, bestRatio: span.best / fresh.best, met: span.median <= 0.8 * fresh.median };
  setup.scenarios.r = {
    label,
    bysu: span.median,
    rsnapshot: fresh.median,
    span,
    cli: summary('cli'),
    cliOverheadSeconds: overhead,
    rsnapshotFresh: fresh,
    rsnapshotInTurn: summary('sequential'),
    rsnapshotSecondNight: summary('delta'),
    changedShare: CHANGED,
    goal,
    samples,
  };
  const cpu = (key: string) => `${(median(samples[key]!.map((sample) => ('cpuSeconds' in sample ? sample.cpuSeconds : 0))) / ((round.bytesPerNode * round.nodes.length) / 1024 ** 3)).toFixed(2)} s/GiB`;
  const best = (value: { median: number; best: number }) => `${value.median.toFixed(2)} s (best ${value.best.toFixed(2)})`;
  setup.table.push(
    [`(r) fresh copy: BYSU job span, against rsnapshot ${round.nodes.length} at once + sync`, best(span), `${best(fresh)} rsnapshot`, `${goal.ratio.toFixed(2)}× (goal ≤ 0.8×: ${goal.met ? 'met' : 'not met'})`, cpu('span'), cpu('fresh')],
    ['(r) fresh copy: rsnapshot with one config (backup points in turn) + sync', '-', `${best(summary('sequential'))} rsnapshot`, `${(span.median / summary('sequential').median).toFixed(2)}×`, '-', cpu('sequential')],
    [`(r) fresh copy: \`bysu snapshot … --wait\` (CLI overhead ${overhead.median.toFixed(2)} s: start ${overhead.start.toFixed(2)}, end ${overhead.end.toFixed(2)})`, best(summary('cli')), `${best(fresh)} rsnapshot`, `${(summary('cli').median / fresh.median).toFixed(2)}×`, '-', '-'],
    [`(r) second night, each file ${CHANGED * 100} % changed: BYSU pulls it whole, rsync receives ${(bytesOf('delta') / MiB).toFixed(1)} of ${(bytesOf('fresh') / MiB).toFixed(0)} MiB`, best(span), `${best(summary('delta'))} rsnapshot`, `${(span.median / summary('delta').median).toFixed(2)}×`, '-', cpu('delta')],
  );
}
