/** The README's demo command keeps working: `npm run demo -- --once` exits 0 only on the expected outcome. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { PROJECT_ROOT } from '../helpers/cluster.ts';
import { run } from '../helpers/processes.ts';

test('the demo snapshots its sample apps and sees the expected outcome', async () => {
  const result = await run(process.execPath, ['--import', 'tsx', path.join(PROJECT_ROOT, 'demo/run.ts'), '--once'], { cwd: PROJECT_ROOT, timeout: 180_000 });
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.match(result.stdout, /shop: committed /);
  assert.match(result.stdout, /uploads: committed /);
  assert.match(result.stdout, /ledger: FAILED after 2 attempt\(s\)/);
  assert.match(result.stdout, /uploads\.tar: OK/);
  assert.match(result.stdout, /^ledger\s+FAILING/m, 'the status table shows the failing app');
  assert.match(result.stdout, /dashboard: http:\/\/127\.0\.0\.1:\d+\/ {2}user admin {2}password \S+/);
  assert.match(result.stdout, /expected outcome: .*dashboard up/);
});
