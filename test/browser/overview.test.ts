/**
 * The overview pages as a person sees them: Debian's Chromium, driven by
 * playwright-core, opens `/` served by `bysu up` on a small real fleet (two
 * sshd nodes, an app with three snapshots of different sizes, an app whose
 * dump fails with hostile text in its reason, an app that never ran), on a
 * desktop and on a 375 px phone, with and without JavaScript, then an app's
 * page; screenshots go to test-artifacts/ for a person to look at.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { ARTIFACTS, assertRefusedWithoutCredentials, launchChromium, skipWithoutChromium } from '../helpers/browser.ts';
import { waitForLog, withCluster } from '../helpers/cluster.ts';
import { freePort, run } from '../helpers/processes.ts';

/** What the failing dump says on stderr: markup that must reach the page as text, never as HTML. */
const HOSTILE = 'pg_dump: connection refused <script>document.title="pwned"</script><img src=x onerror=alert(1)>';

test('the overview: every app and node at a glance, an app\'s snapshots and attempts, on a desktop and a phone', {
  skip: skipWithoutChromium,
  timeout: 240_000,
}, async () => {
  await withCluster(['db1', 'db2'], async (cluster) => {
    const [db1] = cluster.nodes;
    const port = await freePort();
    const password = 'overview-test-password';
    await cluster.writeConfig(
      [
        { name: 'shop', node: 'db1', keep: 5, parts: [{ file: 'shop.sql', run: 'cat "$NODE_DIR/shop.sql"' }] },
        { name: 'broken', node: 'db2', attempts: 2, backoff: '1s', parts: [{ file: 'b.sql', run: `echo '${HOSTILE}' >&2; exit 1` }] },
        { name: 'later', node: 'db2', schedule: '0 3 1 1 *', parts: [{ file: 'l.sql', run: 'echo later' }] },
      ],
      { dashboard: { host: '127.0.0.1', port, user: 'admin', password } },
    );
    const up = cluster.startProcess(['up']);
    await waitForLog(up, 'bysu up: scheduler, workers and dashboard running');
    // Three snapshots of shop, the second one a shrink: its bars show it.
    for (const lines of [400, 100, 500]) {
      await writeFile(path.join(db1!.dir, 'shop.sql'), 'INSERT INTO t VALUES (1);\n'.repeat(lines));
      const taken = await cluster.bysu(['snapshot', 'shop', '--wait']);
      assert.equal(taken.code, 0, taken.stdout + taken.stderr);
    }
    const failed = await cluster.bysu(['snapshot', 'broken', '--wait']);
    assert.equal(failed.code, 1, failed.stdout);

    const browser = await launchChromium();
    try {
      const base = `http://127.0.0.1:${port}/`;
      await assertRefusedWithoutCredentials(browser, base, 'overview');

      const desktop = await browser.newContext({ httpCredentials: { username: 'admin', password }, viewport: { width: 1280, height: 800 } });
      const page = await desktop.newPage();
      const answer = await page.goto(base);
      assert.equal(answer?.status(), 200);
      const appRow = (name: string) => page.locator('table').first().locator('tr', { has: page.locator(`a:text-is("${name}")`) });
      assert.match(await appRow('shop').innerText(), /OK[\s\S]*\d{8}T\d{6}Z[\s\S]*\d+(\.\d)? KiB/);
      assert.equal(await appRow('shop').locator('svg.sizes rect').count(), 3, 'three kept sizes drawn');
      const heights = await appRow('shop').locator('svg.sizes rect').evaluateAll((bars) => bars.map((bar) => Number(bar.getAttribute('height'))));
      assert.ok(heights[1]! < heights[0]! && heights[0]! < heights[2]!, `the shrink shows: bar heights ${heights.join(', ')}, oldest first`);
      const broken = await appRow('broken').innerText();
      assert.match(broken, /FAILING/);
      assert.ok(broken.includes(HOSTILE.slice(0, 60)), `the reason is shown as text: ${broken}`);
      assert.match(await appRow('later').innerText(), /NEVER/);
      assert.equal(await page.title(), 'BYSU backups', 'no markup from a reason ran');
      assert.equal(await page.locator('script, img').count(), 0, 'the page has no script, and a reason adds no element');
      assert.match(await page.locator('body').innerText(), /\d{4}-\d\d-\d\d \d\d:\d\d UTC \(\d+[smh] ago\)/, 'UTC times with their relative age');
      const nodes = page.locator('table').nth(1);
      assert.match(await nodes.locator('tr', { hasText: 'db1' }).innerText(), /shop[\s\S]*UTC/);
      assert.match(await nodes.locator('tr', { hasText: 'db2' }).innerText(), /broken FAILING/);
      assert.equal(await page.locator('meta[http-equiv="refresh"]').getAttribute('content'), '60');
      await page.screenshot({ path: path.join(ARTIFACTS, 'overview-desktop.png'), fullPage: true });

      // An app's page: its snapshots with each file's size and sha256, its attempts.
      await appRow('shop').locator('a').click();
      await page.waitForURL(/\/apps\/shop$/);
      const snapshots = page.locator('table').first().locator('tbody tr');
      assert.equal(await snapshots.count(), 3);
      const newest = (await snapshots.first().locator('td').first().innerText()).trim();
      const sums = await readFile(path.join(cluster.repository, 'shop', newest, 'SHA256SUMS'), 'utf8');
      const sha = /^([0-9a-f]{64}) {2}shop\.sql$/m.exec(sums)![1]!;
      assert.ok((await snapshots.first().innerText()).includes(sha), 'the newest snapshot lists shop.sql with its sha256');
      const check = await run('sha256sum', ['-c', 'SHA256SUMS'], { cwd: path.join(cluster.repository, 'shop', newest) });
      assert.equal(check.code, 0, 'the file the page describes is the one sha256sum checks');
      assert.equal(await page.locator('table').nth(1).locator('tbody tr', { hasText: 'completed' }).count(), 3, 'three completed attempts');
      await page.screenshot({ path: path.join(ARTIFACTS, 'overview-app.png'), fullPage: true });

      await page.goto(`${base}apps/broken`);
      const attempts = await page.locator('table').nth(1).innerText();
      assert.match(attempts, /failed[\s\S]*2 of 2/);
      assert.ok(attempts.includes('<script>'), 'the reason, as text');
      assert.doesNotMatch(await page.locator('body').innerText(), /file:\/\/|at \w+ \(/, 'no stack trace');
      await page.screenshot({ path: path.join(ARTIFACTS, 'overview-app-failing.png'), fullPage: true });
      assert.equal((await page.goto(`${base}apps/nosuchapp`))?.status(), 404);
      assert.equal((await page.goto(`${base}apps/..%2F..%2Fetc`))?.status(), 404);

      // Bull Board shows the failed job's reason, and no stack trace under it.
      await page.goto(`${base}board/queue/snapshot?status=failed`);
      await page.getByText(/command exited with code 1/).first().waitFor({ timeout: 30_000 });
      assert.doesNotMatch(await page.locator('body').innerText(), /at \w+ \(file:\/\//, 'Bull Board shows no stack trace');
      await desktop.close();

      // A phone: nothing wider than the screen.
      const phone = await browser.newContext({ httpCredentials: { username: 'admin', password }, viewport: { width: 375, height: 812 }, isMobile: true });
      const small = await phone.newPage();
      await small.goto(base);
      const width = await small.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 375, `the page is ${width} px wide on a 375 px screen`);
      await small.screenshot({ path: path.join(ARTIFACTS, 'overview-phone.png'), fullPage: true });
      await phone.close();

      // Without JavaScript it is the same page.
      const plain = await browser.newContext({ httpCredentials: { username: 'admin', password }, javaScriptEnabled: false });
      const noScript = await plain.newPage();
      await noScript.goto(base);
      assert.match(await noScript.locator('body').innerText(), /shop[\s\S]*broken[\s\S]*FAILING/);
      await plain.close();
    } finally {
      await browser.close();
    }
  });
});
