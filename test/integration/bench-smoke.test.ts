/** `npm run bench -- --smoke` keeps working: every scenario runs end to end and writes its JSON (no timing assertions). */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { PROJECT_ROOT } from '../helpers/cluster.ts';
import { run } from '../helpers/processes.ts';

test('the benchmark runs in smoke mode', async () => {
  const result = await run(process.execPath, ['--import', 'tsx', path.join(PROJECT_ROOT, 'bench/run.ts'), '--smoke'], { cwd: PROJECT_ROOT, timeout: 180_000 });
  assert.equal(result.code, 0, result.stderr.slice(-3000));
  for (const scenario of ['(a)', '(a2)', '(b)', '(b2)', '(c)', '(d)']) assert.ok(result.stdout.includes(scenario), `${scenario} in the table`);
  const results = JSON.parse(await readFile(path.join(PROJECT_ROOT, 'bench/results-smoke.json'), 'utf8'));
  assert.equal(results.smoke, true);
  for (const key of ['a', 'a2', 'b', 'b2', 'c']) assert.ok(results.scenarios[key].bysu > 0 && results.scenarios[key].openssh > 0, key);
  assert.deepEqual(results.scenarios.d.cases.map((memoryCase: { key: string }) => memoryCase.key), ['parallel', 'small', 'large']);
  for (const memoryCase of results.scenarios.d.cases) assert.ok(memoryCase.peakMiB >= memoryCase.idleMiB && memoryCase.idleMiB > 0, memoryCase.key);
});
