/**
 * The dashboard as a person sees it: Debian's Chromium, driven by
 * playwright-core, logs in to Bull Board served by `bysu up`, finds a
 * completed and a failed snapshot job, and saves screenshots under
 * test-artifacts/ for a person to look at.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ARTIFACTS, assertRefusedWithoutCredentials, launchChromium, skipWithoutChromium } from '../helpers/browser.ts';
import { waitForLog, withCluster } from '../helpers/cluster.ts';
import { freePort } from '../helpers/processes.ts';


test('a person logs in to the dashboard and sees a completed and a failed snapshot', {
  skip: skipWithoutChromium,
  timeout: 180_000,
}, async () => {
  await withCluster(['db1'], async (cluster) => {
    const port = await freePort();
    const password = 'browser-test-password';
    await cluster.writeConfig(
      [
        { name: 'shop', node: 'db1', parts: [{ file: 'shop.sql', run: "printf 'SELECT 1;\\n'" }] },
        { name: 'broken', node: 'db1', attempts: 1, parts: [{ file: 'b.sql', run: 'echo "pg_dump: connection refused" >&2; exit 1' }] },
      ],
      { dashboard: { host: '127.0.0.1', port, user: 'admin', password } },
    );
    const up = cluster.startProcess(['up']);
    await waitForLog(up, 'bysu up: scheduler, workers and dashboard running');
    const snapshot = await cluster.bysu(['snapshot', '--all', '--wait']);
    assert.equal(snapshot.code, 1, snapshot.stdout);
    const shopJob = /shop: enqueued \(job ([^)]+)\)/.exec(snapshot.stdout)![1]!;
    const brokenJob = /broken: enqueued \(job ([^)]+)\)/.exec(snapshot.stdout)![1]!;

    const browser = await launchChromium();
    try {
      const base = `http://127.0.0.1:${port}/`;
      await assertRefusedWithoutCredentials(browser, base, 'dashboard');
      const wrong = await browser.newContext({ httpCredentials: { username: 'admin', password: 'wrong' } });
      const wrongPage = await wrong.newPage();
      const denied = await wrongPage.goto(base).catch((error: Error) => error);
      assert.ok(denied instanceof Error || denied?.status() === 401, 'wrong credentials, no dashboard');
      await wrong.close();

      const context = await browser.newContext({ httpCredentials: { username: 'admin', password }, viewport: { width: 1280, height: 800 } });
      const page = await context.newPage();
      await page.goto(`${base}board/`);
      await page.getByText('snapshot', { exact: true }).first().waitFor({ timeout: 30_000 });
      await page.getByText('retention', { exact: true }).first().waitFor();
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-board.png'), fullPage: true });

      await page.goto(`${base}board/queue/snapshot?status=completed`);
      await page.getByText(shopJob).first().waitFor({ timeout: 30_000 });
      // Times in UTC on a 24-hour clock, as the CLI and the overview show them (it showed the browser's 12-hour local time).
      await page.getByText(/\b\d\d:\d\d:\d\d UTC\b/).first().waitFor({ timeout: 10_000 });
      assert.doesNotMatch(await page.locator('body').innerText(), /\d:\d\d:\d\d ?[AP]M/);
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-completed.png'), fullPage: true });

      await page.goto(`${base}board/queue/snapshot?status=failed`);
      await page.getByText(brokenJob).first().waitFor({ timeout: 30_000 });
      await page.getByText(/command exited with code 1/).first().waitFor();
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-failed.png'), fullPage: true });
    } finally {
      await browser.close();
    }
    assert.ok(existsSync(path.join(ARTIFACTS, 'dashboard-failed.png')));
  });
});
