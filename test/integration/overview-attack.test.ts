/**
 * Attack on the overview pages (issue 14), `/` and `/apps/<app>` served by the
 * real `bysu dashboard` against a private redis-server, real sshd nodes and a
 * real repository.
 *
 * Promises attacked (README "Dashboard, metrics and API", DESIGN "The
 * overview pages"): "When Redis or the repository cannot be read, the page
 * says so instead of failing"; the page answers (never hangs, never a 500)
 * whatever the repository holds; it "reads on a phone" (375 px, no
 * horizontal scroll).
 *
 * Each test below fails on the code as it is:
 *  1. redis-server stopped (SIGSTOP: a frozen VM, a Redis stuck on a fork or
 *     a slow disk): `/` and `/apps/shop` never answer. The dashboard's
 *     connection has no command timeout, and the shared status computation
 *     the pages wait for (unlike /metrics) has no bound; only the app page's
 *     own attempts read is raced against 5 s. /healthz answers 503 within 2 s
 *     meanwhile.
 *  2. A manifest.json that parses as JSON but is not a manifest (`{}`, `[]`,
 *     `{"parts":[null]}`, `{"warnings":"x"}`: a truncated rewrite, a hand edit,
 *     a bad restore) makes `/apps/<app>` answer 500 `{"error":"internal
 *     error"}` instead of the page with "manifest.json unreadable" on that row:
 *     listSnapshots (src/repository/read.ts) only checks that it is JSON, and
 *     renderAppPage reads `manifest.parts.map`, `manifest.warnings.length`.
 *     (`/` survives: it reads the validated summary.)
 *  3. An app (and node) named with the 63 characters NAME_PATTERN allows and
 *     no break opportunity: on a 375 px phone `/` is 561-580 px wide and the app's
 *     page 862 px (the name in a table cell / the <h1> does not wrap). And a
 *     node-controlled one: a tar entry with a 151-character absolute name
 *     gives a warning that the app's page shows unbroken (cut to 160
 *     characters, no word-break on `.problem`): that page is 1239 px wide.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { buffer } from 'node:stream/consumers';
import { Redis } from 'ioredis';
import tar from 'tar-stream';
import { launchChromium, skipWithoutChromium } from '../helpers/browser.ts';
import { waitForLog, withCluster, type TestCluster } from '../helpers/cluster.ts';
import { freePort } from '../helpers/processes.ts';

const PASSWORD = 'overview-attack-password';
const AUTH = { authorization: `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}` };
/** Past the 5 s for which the dashboard keeps the apps' states. */
const PAST_KEPT_STATES_MS = 6000;

/** Given a cluster and its apps, start `bysu dashboard` and return its base URL. */
async function startDashboard(cluster: TestCluster, apps: unknown[]): Promise<string> {
  const port = await freePort();
  await cluster.writeConfig(apps, { dashboard: { host: '127.0.0.1', port, user: 'admin', password: PASSWORD } });
  const dashboard = cluster.startProcess(['dashboard']);
  await waitForLog(dashboard, 'dashboard started');
  return `http://127.0.0.1:${port}/`;
}

/** GET a page with the credentials; resolve with its status, or 'no answer' after timeoutMs. */
async function get(url: string, timeoutMs = 15_000): Promise<number | 'no answer'> {
  return fetch(url, { headers: AUTH, signal: AbortSignal.timeout(timeoutMs) }).then(async (response) => {
    await response.text();
    return response.status;
  }, () => 'no answer' as const);
}

const SHOP = { name: 'shop', node: 'db1', parts: [{ file: 'shop.sql', run: 'echo shop' }] };

test('the overview answers while redis-server is stopped (SIGSTOP)', async () => {
  await withCluster(['db1'], async (cluster) => {
    const base = await startDashboard(cluster, [SHOP]);
    assert.equal(await get(base), 200);
    const redis = new Redis(cluster.redis.url, { maxRetriesPerRequest: null });
    const pid = Number(/process_id:(\d+)/.exec(await redis.info('server'))![1]);
    redis.disconnect();
    process.kill(pid, 'SIGSTOP');
    try {
      await new Promise((resolve) => setTimeout(resolve, PAST_KEPT_STATES_MS));
      const health = await fetch(`${base}healthz`, { signal: AbortSignal.timeout(15_000) }).then((response) => response.status, () => 'no answer');
      const [overview, appPage] = await Promise.all([get(base), get(`${base}apps/shop`)]);
      // Both answer with what the repository knows, and say that Redis cannot be read.
      assert.deepEqual({ health, overview, appPage }, { health: 503, overview: 200, appPage: 200 },
        'the pages answer (saying Redis cannot be read) within 15 s, as /healthz does');
      const page = await fetch(base, { headers: AUTH, signal: AbortSignal.timeout(15_000) }).then((response) => response.text(), () => '');
      assert.match(page, /Redis unreachable at/);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  });
});

test('an app\'s page answers when a manifest.json is JSON but not a manifest', async () => {
  await withCluster(['db1'], async (cluster) => {
    const base = await startDashboard(cluster, [SHOP]);
    const garbage = ['{}', '[]', '{"parts":[null],"warnings":[]}', '{"parts":[],"warnings":"x"}'];
    const statuses: Record<string, number | 'no answer'> = {};
    for (const [index, text] of garbage.entries()) {
      const snapshot = path.join(cluster.repository, 'shop', `20260101T00000${index}Z`);
      await mkdir(snapshot, { recursive: true });
      await writeFile(path.join(snapshot, 'manifest.json'), text);
      await new Promise((resolve) => setTimeout(resolve, PAST_KEPT_STATES_MS));
      statuses[text] = await get(`${base}apps/shop`);
      await writeFile(path.join(snapshot, 'manifest.json'), 'not json'); // read as unreadable from now on
    }
    assert.deepEqual(statuses, Object.fromEntries(garbage.map((text) => [text, 200])), 'the page, with the row saying its manifest cannot be read');
  });
});

test('no horizontal scroll on a 375 px phone with the longest app name allowed, or a tar entry name in a warning', { skip: skipWithoutChromium }, async () => {
  await withCluster(['db1'], async (cluster) => {
    const name = 'a'.repeat(63);
    // A tar from the node whose one entry has a long absolute name: the snapshot commits with a warning naming it.
    const pack = tar.pack();
    pack.entry({ name: `/${'x'.repeat(150)}` }, 'x');
    pack.finalize();
    await writeFile(path.join(cluster.nodes[0]!.dir, 'long.tar'), await buffer(pack));
    const tarry = { name: 'tarry', node: 'db1', parts: [{ file: 't.tar', run: 'cat "$NODE_DIR/long.tar"' }] };
    const base = await startDashboard(cluster, [SHOP, { ...SHOP, name }, tarry]);
    const worker = cluster.startWorker();
    await waitForLog(worker, 'worker started');
    const taken = await cluster.bysu(['snapshot', 'tarry', '--wait']);
    assert.match(taken.stdout, /tarry: committed .*1 warnings/, taken.stdout + taken.stderr);
    const browser = await launchChromium();
    try {
      const phone = await browser.newContext({ httpCredentials: { username: 'admin', password: PASSWORD }, viewport: { width: 375, height: 812 }, isMobile: true });
      const page = await phone.newPage();
      const widths: Record<string, number> = {};
      for (const url of [base, `${base}apps/${name}`, `${base}apps/tarry`]) {
        assert.equal((await page.goto(url))?.status(), 200);
        widths[url.slice(base.length) || '/'] = await page.evaluate(() => document.documentElement.scrollWidth);
      }
      assert.deepEqual(Object.entries(widths).filter(([, width]) => width > 375), [], 'no page wider than the screen');
    } finally {
      await browser.close();
    }
  });
});
