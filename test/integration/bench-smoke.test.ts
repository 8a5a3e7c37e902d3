/** `npm run bench -- --smoke` keeps working: every scenario runs end to end and writes its JSON (no timing assertions). */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { PROJECT_ROOT } from '../helpers/cluster.ts';
import { run } from '../helpers/processes.ts';

test('the benchmark runs in smoke mode', async () => {
  const result = await run(process.execPath, ['--import', 'tsx', path.join(PROJECT_ROOT, 'bench/run.ts'), '--smoke'], { cwd: PROJECT_ROOT, timeout: 600_000 });
  assert.equal(result.code, 0, result.stderr.slice(-3000));
  for (const scenario of ['(a)', '(a2)', '(b)', '(b2)', '(c)', '(d)', '(r)', '(n)', '(u)', '(f)', '(v)']) assert.ok(result.stdout.includes(scenario), `${scenario} in the table`);
  const results = JSON.parse(await readFile(path.join(PROJECT_ROOT, 'bench/results-smoke.json'), 'utf8'));
  assert.equal(results.smoke, true);
  for (const key of ['a', 'a2', 'b', 'b2', 'c', 'n']) assert.ok(results.scenarios[key].bysu > 0 && results.scenarios[key].openssh > 0, key);
  assert.deepEqual(results.scenarios.d.cases.map((memoryCase: { key: string }) => memoryCase.key), ['parallel', 'small', 'large']);
  for (const memoryCase of results.scenarios.d.cases) assert.ok(memoryCase.peakMiB >= memoryCase.idleMiB && memoryCase.idleMiB > 0, memoryCase.key);

  // (n): the workers' CPU per job, beside the ssh clients'.
  assert.ok(results.scenarios.n.cpuMsPerJob.bysu > 0 && results.scenarios.n.cpuMsPerJob.openssh > 0, 'n: CPU per job');
  // (r): every side, unless rsnapshot is missing (then it says so).
  const rsnapshot = results.scenarios.r;
  if ((await run('bash', ['-c', 'command -v rsnapshot'])).code === 0) {
    for (const side of ['span', 'cli', 'rsnapshotFresh', 'rsnapshotInTurn', 'rsnapshotSecondNight']) assert.ok(rsnapshot[side].median > 0, `r: ${side}`);
    assert.equal(typeof rsnapshot.goal.met, 'boolean');
  } else {
    assert.match(rsnapshot.skipped, /rsnapshot is not installed/);
  }
  // (u): `bysu up` and two worker processes, each with its CLI overhead.
  const sides = results.scenarios.u.sides;
  for (const key of results.scenarios.u.snapshotWorkersSupported ? ['upDefault', 'upOne', 'workers'] : ['upDefault', 'workers']) {
    assert.ok(sides[key].wallSeconds > 0 && sides[key].spanSeconds > 0 && sides[key].wallSeconds >= sides[key].spanSeconds, `u: ${key}`);
  }
  // (f): one fleet size with every reader's cold and warm figure and the floor.
  const [fleet] = results.scenarios.f.sizes;
  assert.equal(fleet.apps, 20);
  assert.equal(fleet.snapshots, 60);
  assert.ok(fleet.floorSeconds > 0 && fleet.reconcileSeconds.first > 0 && fleet.dashboardStartSeconds > 0, 'f: floor, reconcile, dashboard start');
  for (const reader of ['status', 'statusJson', 'metrics', 'apiApps']) assert.ok(fleet[reader].cold > 0 && fleet[reader].warm > 0, `f: ${reader}`);
  // (v): the verification alone and beside a snapshot, unbounded and at the default bound, each side measured.
  const verify = results.scenarios.v;
  for (const [key, value] of Object.entries(verify.mibPerSecond as Record<string, number>)) assert.ok(value > 0, `v: ${key}`);
  assert.equal(Object.keys(verify.mibPerSecond).length, 8);
  assert.ok(verify.verifyCpuSecondsPerGiB.unbounded > 0 && verify.verifyCpuSecondsPerGiB.bound > 0, 'v: CPU per GiB verified');
  // (m): the mirror's copy and curl's, and a resume that received what it lacked and no more.
  const mirror = results.scenarios.m;
  assert.ok(mirror.bysu.mibPerSecond > 0 && mirror.curl.mibPerSecond > 0 && mirror.curlPlain.mibPerSecond > 0, 'm: every side');
  assert.ok(mirror.resume.resumedFrom > 0 && mirror.resume.reReceived === 0, `m: the resume kept its bytes: ${JSON.stringify(mirror.resume)}`);
});
