/**
 * Redis goes away under every long-running BYSU process (the three workers,
 * the scheduler, the dashboard, `bysu up` and its two snapshot worker
 * processes, whose lines share its output and are told apart by pid): each
 * must log the lost connection once, stay quiet while it is down, say once
 * that it is back, and stop within a few seconds of SIGTERM when nothing is
 * running, saying what it waited for.
 *
 * Fails before the fix: during 20 s without Redis the processes logged
 * 65 (snapshot worker), 52 (retention), 28 (drill), 91 (scheduler), 2
 * (dashboard) and 238 (`bysu up`) lines, none said Redis was back, and SIGTERM
 * took 81 s for the snapshot and drill workers (60 s grace, then
 * connectTimeout + 10 s) and 61 s for retention, the snapshot worker ending in
 * "running snapshots did not stop" although none ran; this test gives up at
 * 10 s. After: 1 line each, "reachable again" once, every stop 1 to 3 s.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { waitForLog, withCluster, type TestCluster } from '../helpers/cluster.ts';
import { recordFault } from '../helpers/fault-report.ts';
import { waitUntil } from '../helpers/processes.ts';

/** How long Redis stays down while the log lines are counted. */
const OUTAGE_MS = 20_000;
/** SIGTERM with nothing running must be done well within this (old code: ~90 s). */
const STOP_BOUND_MS = 10_000;

type Child = ReturnType<TestCluster['startProcess']>;

interface Process {
  name: string;
  child: Child;
  started: string;
}

/** Given a process's output, return its JSON log lines from character offset `from` (with the pid that wrote each). */
function logLines(child: Child, from = 0): { msg: string; line: string; pid: number | null }[] {
  return child.output().slice(from).split('\n').filter((line) => line.trim() !== '').map((line) => {
    try {
      const parsed = JSON.parse(line) as { msg?: unknown; pid?: unknown };
      return { msg: String(parsed.msg ?? ''), line, pid: typeof parsed.pid === 'number' ? parsed.pid : null };
    } catch {
      return { msg: line, line, pid: null };
    }
  });
}

/** One process whose lines are counted: a started process, or one of `bysu up`'s worker processes in its output. */
interface Counted {
  name: string;
  child: Child;
  /** Only the lines of this pid (null: every line of the output). */
  pid: number | null;
}

/** The lines of one counted process from character offset `from` of its output. */
function linesOf(counted: Counted, from = 0): { msg: string; line: string }[] {
  return logLines(counted.child, from).filter((line) => counted.pid === null || line.pid === counted.pid);
}

async function startAll(cluster: TestCluster): Promise<Process[]> {
  // `bysu up` runs a dashboard of its own: port 0 lets both it and `bysu dashboard` bind.
  const upConfig = path.join(cluster.dir, 'bysu-up.yaml');
  await cluster.writeConfig([{ name: 'shop', node: 'db1', parts: [{ file: 'a.sql', run: 'echo a' }] }], { dashboard: { host: '127.0.0.1', port: 0, password: '' }, up: { snapshotWorkers: 2 } });
  await writeFile(upConfig, await readFile(cluster.configFile, 'utf8'));
  const processes: Process[] = [
    { name: 'worker snapshot', child: cluster.startProcess(['worker', 'snapshot']), started: 'snapshot worker started' },
    { name: 'worker retention', child: cluster.startProcess(['worker', 'retention']), started: 'retention worker started' },
    { name: 'worker drill', child: cluster.startProcess(['worker', 'drill']), started: 'drill worker started' },
    { name: 'scheduler', child: cluster.startProcess(['scheduler']), started: 'scheduler started' },
    { name: 'dashboard', child: cluster.startProcess(['dashboard']), started: 'dashboard started' },
    { name: 'up', child: cluster.startProcess(['up'], { BYSU_CONFIG: upConfig }), started: 'bysu up: scheduler, workers and dashboard running' },
  ];
  // Six Node processes starting at once on a busy machine: allow them time.
  for (const process of processes) await waitForLog(process.child, process.started, 180_000);
  return processes;
}

/** Send SIGTERM and resolve with how long the process took to exit (null when it had not after boundMs) and its code. */
async function stopTimed(child: Child, boundMs: number): Promise<{ ms: number | null; code: number | null }> {
  const started = Date.now();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  const code = await Promise.race([exited, new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), boundMs))]);
  return code === 'late' ? { ms: null, code: null } : { ms: Date.now() - started, code };
}

test('Redis down: every process logs the loss once, stays quiet, says once it is back, and stops within seconds of SIGTERM', async () => {
  await withCluster(['db1'], async (cluster) => {
    const processes = await startAll(cluster);
    // `bysu up` counts as one process, and each of its snapshot worker processes as one more.
    const up = processes.find((process) => process.name === 'up')!;
    const upWorkers = [...new Set(logLines(up.child).filter((line) => line.msg === 'snapshot worker started').map((line) => line.pid!))];
    assert.equal(upWorkers.length, 2, `bysu up runs two snapshot worker processes:\n${up.child.output()}`);
    const counted = processes.flatMap((process): Counted[] => process === up
      ? [{ name: 'up', child: up.child, pid: up.child.pid! }, ...upWorkers.map((pid, index) => ({ name: `up worker ${index + 1}`, child: up.child, pid }))]
      : [{ name: process.name, child: process.child, pid: null }]);

    // (1) 20 s without Redis: count what each process writes.
    const offsets = counted.map((process) => process.child.output().length);
    await cluster.redis.stop();
    await new Promise((resolve) => setTimeout(resolve, OUTAGE_MS));
    const counts = counted.map((process, index) => ({ name: process.name, lines: linesOf(process, offsets[index]) }));
    await cluster.redis.start();
    // A worker retries every 5 s at most: give each process time to reconnect, then a little more to see any flapping.
    await Promise.all(counted.map((process, index) => waitUntil(`${process.name}: redis reachable again`, async () => linesOf(process, offsets[index]).some((line) => line.msg.startsWith('redis reachable again')), 20_000).catch(() => undefined)));
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const observedLines = counts.map((count) => `${count.name} ${count.lines.length}`).join(', ');
    const reachable = counted.map((process, index) => linesOf(process, offsets[index]).filter((line) => line.msg.startsWith('redis reachable again')).length);
    const unreachable = counted.map((process, index) => linesOf(process, offsets[index]).filter((line) => line.msg.startsWith('redis unreachable at')).length);
    const quiet = counts.every((count) => count.lines.length <= 3) && reachable.every((n) => n === 1) && unreachable.every((n) => n === 1);
    recordFault({
      kind: 'fault',
      fault: `Redis down ${OUTAGE_MS / 1000} s: log lines per process`,
      expected: 'at most 3 lines each (the loss once, then one line a minute); "reachable again" once when it is back',
      observed: `${observedLines}; "reachable again" ${reachable.join('/')}, "unreachable" ${unreachable.join('/')} times`,
      pass: quiet,
    });
    // (2) Redis gone again, nothing running: SIGTERM must be done in seconds.
    const beforeSecondLoss = processes.map((process) => process.child.output().length);
    await cluster.redis.stop();
    // Let each process notice (the dashboard's connection may stay idle: then the wait simply ends).
    await Promise.all(processes.map((process, index) => waitForLog({ output: () => process.child.output().slice(beforeSecondLoss[index]) }, 'redis unreachable at', 5000).catch(() => undefined)));
    const stops = await Promise.all(processes.map(async (process) => ({ process, ...(await stopTimed(process.child, STOP_BOUND_MS)) })));
    const observedStops = stops.map((stop) => `${stop.process.name} ${stop.ms === null ? `>${STOP_BOUND_MS / 1000}` : (stop.ms / 1000).toFixed(1)} s`).join(', ');
    recordFault({
      kind: 'fault',
      fault: 'SIGTERM with Redis down, nothing running',
      expected: 'every process exits 0 within 5 s and logs what it waited for',
      observed: observedStops,
      pass: stops.every((stop) => stop.ms !== null && stop.ms < 5000 && stop.code === 0),
    });
    // Both rows are recorded before any assertion, so a failing run still measures both.
    for (const count of counts) {
      assert.ok(count.lines.length <= 3, `${count.name} wrote ${count.lines.length} lines in ${OUTAGE_MS} ms without Redis:\n${count.lines.slice(0, 12).map((line) => line.line).join('\n')}`);
      assert.match(count.lines[0]?.line ?? '', /redis unreachable at redis:\/\/127\.0\.0\.1:\d+\/0: .*ECONNREFUSED/, `${count.name}: the first line says what was lost`);
    }
    counted.forEach((process, index) => {
      assert.equal(reachable[index], 1, `${process.name} says once that Redis is back`);
      assert.equal(unreachable[index], 1, `${process.name} reports the loss once (no flapping on reconnect)`);
    });
    for (const stop of stops) {
      const tail = stop.process.child.output().slice(-3000);
      assert.notEqual(stop.ms, null, `${stop.process.name} had not exited ${STOP_BOUND_MS} ms after SIGTERM:\n${tail}`);
      assert.equal(stop.code, 0, `${stop.process.name} exit code:\n${tail}`);
      assert.ok(stop.ms! < 5000, `${stop.process.name} took ${stop.ms} ms:\n${tail}`);
      assert.doesNotMatch(tail, /did not stop/);
    }
    for (const stop of stops.filter((each) => each.process.name.startsWith('worker') || each.process.name === 'up')) {
      assert.match(stop.process.child.output(), /"msg":"no (snapshot|retention|drill) job running: nothing to wait for"/, `${stop.process.name} says what it waited for`);
    }
  });
});
