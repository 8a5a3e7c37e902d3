/**
 * The overview pages' pure parts: escaping, the size bars, the node rows and
 * what a page says when the apps' states cannot be read. The pages as a
 * browser shows them are tested in test/browser/overview.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig } from '../../../src/config/load.ts';
import { escapeHtml, html } from '../../../src/dashboard/html.ts';
import { nodeRows, renderAppPage, renderOverview, sizeBars } from '../../../src/dashboard/overview.ts';
import type { AppStatus, StatusReport } from '../../../src/status/app-status.ts';

const CONFIG = parseConfig(`
repository: /var/lib/bysu
ssh: { user: backup, identityFile: /etc/bysu/id_ed25519 }
nodes:
  - { name: db1, host: 10.0.0.1 }
  - { name: db2, host: 10.0.0.2 }
  - { name: idle, host: 10.0.0.3 }
apps:
  - { name: shop, node: db1, parts: [{ file: shop.sql, run: pg_dump shop }], drill: { node: db2, steps: [{ run: psql, stdin: shop.sql }] } }
  - { name: wiki, node: db2, parts: [{ file: wiki.sql, run: pg_dump wiki }] }
`, 'bysu.yaml', {});

const NOW = Date.parse('2026-12-02T12:00:00Z');

function app(fields: Partial<AppStatus> & Pick<AppStatus, 'app' | 'state'>): AppStatus {
  return {
    node: null, newest: null, keptBytes: [], ageMs: null, staleAfterMs: null, nextRunAt: null, lastFailure: null, firstSeenAt: null,
    problems: [], lastDrill: null, lastDrillPassedAt: null, drillSince: null, lastVerify: null, mirror: null, ...fields,
  };
}

const REPORT: StatusReport = {
  at: new Date(NOW).toISOString(),
  mirrors: [],
  scheduler: { at: new Date(NOW - 5000).toISOString(), host: 'backup', pid: 1 },
  redis: { reachable: true, error: null },
  apps: [
    app({
      app: 'shop', node: 'db1', state: 'ok', keptBytes: [300, 100, 200], ageMs: 3_600_000,
      newest: { id: '20261202T110000Z', path: '/x', finishedAt: '2026-12-02T11:00:00Z', bytes: 300, durationMs: 1000, warnings: [] },
      lastDrill: { snapshotId: '20261202T110000Z', passed: true, at: '2026-12-02T11:30:00Z', node: 'db2', error: null },
    }),
    app({
      app: 'wiki', node: 'db2', state: 'failing',
      lastFailure: { at: '2026-12-02T11:45:00Z', reason: 'part wiki.sql: command exited with code 1\nstderr: <b>boom</b> & \u001b[2J', jobId: 'j', attempts: 3 },
    }),
  ],
};

describe('html', () => {
  test('escapes every value, keeps what it built itself, omits null and false', () => {
    assert.equal(html`<p title="${'"x"'}">${'<a>&'}${null}${false}${html`<i>ok</i>`}${['<', 1]}</p>`.text, '<p title="&quot;x&quot;">&lt;a&gt;&amp;<i>ok</i>&lt;1</p>');
    assert.equal(escapeHtml(`'`), '&#39;');
  });
});

describe('sizeBars', () => {
  test('draws the kept sizes oldest first, scaled to the largest, the newest marked', () => {
    const svg = sizeBars([300, 100, 200])!.text;
    const heights = [...svg.matchAll(/<rect [^>]*height="(\d+)"/g)].map((match) => Number(match[1]));
    assert.deepEqual(heights, [11, 5, 16]);
    assert.match(svg, /<rect x="8"[^>]*class="newest"\/>/);
    assert.match(svg, /oldest first: 200 B, 100 B, 300 B/);
  });
  test('nothing to compare with one snapshot or none', () => {
    assert.equal(sizeBars([5]), null);
    assert.equal(sizeBars([]), null);
  });
});

describe('nodeRows', () => {
  test('a node\'s apps, its last successful contact (a snapshot or a drill passed there) and what fails', () => {
    const rows = nodeRows(CONFIG, REPORT);
    assert.deepEqual(rows.map((row) => row.node), ['db1', 'db2', 'idle']);
    assert.deepEqual(rows[0], { node: 'db1', apps: ['shop'], lastContact: '2026-12-02T11:00:00Z', failing: [] });
    assert.deepEqual(rows[1], { node: 'db2', apps: ['wiki'], lastContact: '2026-12-02T11:30:00Z', failing: ['wiki FAILING'] });
    assert.deepEqual(rows[2], { node: 'idle', apps: [], lastContact: null, failing: [] });
  });
});

describe('renderOverview', () => {
  const page = renderOverview(CONFIG, REPORT, NOW);
  test('a failing app comes first, its reason on one line, escaped', () => {
    assert.ok(page.indexOf('apps/wiki') < page.indexOf('apps/shop'));
    assert.ok(page.includes('part wiki.sql: command exited with code 1 / stderr: &lt;b&gt;boom&lt;/b&gt; &amp; \\u001b[2J'), page);
    assert.doesNotMatch(page, /<b>boom|\u001b/);
  });
  test('UTC times with their relative age; no script; refreshes itself', () => {
    assert.match(page, /2026-12-02 11:00 UTC<\/time> <span class="dim">\(1h ago\)/);
    assert.doesNotMatch(page, /<script/i);
    assert.match(page, /<meta http-equiv="refresh" content="60">/);
  });
  test('with Redis unreachable, what the repository knows, and a line saying what is unknown', () => {
    const down = renderOverview(CONFIG, { ...REPORT, scheduler: null, redis: { reachable: false, error: 'Redis unreachable at redis://127.0.0.1:6390/0' } }, NOW);
    assert.match(down, /<div class="banner">Redis unreachable at redis:\/\/127\.0\.0\.1:6390\/0: failures, next runs and the scheduler are unknown/);
    assert.match(down, /scheduler: unknown/);
    assert.match(down, /20261202T110000Z/);
  });
  test('an app copied by a mirror names its source and how far behind it is, escaped', () => {
    const mirrored = app({
      app: 'ledger', state: 'stale',
      mirror: { source: 'home', url: 'https://backup1.example.com', checkedAt: '2026-12-02T11:00:00Z', behind: 2, lagMs: 3 * 3_600_000, unreachableMs: 3_600_000, maxLagMs: 7_200_000, lastError: null },
    });
    const shown = renderOverview(CONFIG, { ...REPORT, apps: [...REPORT.apps, mirrored] }, NOW);
    assert.match(shown, /apps\/ledger">ledger<\/a> <span class="dim">copy of home, 2 behind \(the oldest waiting 3h\)<\/span>/);
    assert.match(renderAppPage(mirrored, [], [], NOW), /copy of home \(https:\/\/backup1\.example\.com\); newest none/);
  });
  test('when the states cannot be read, the page says why instead of failing', () => {
    const broken = renderOverview(CONFIG, new Error('Redis unreachable at redis://127.0.0.1:6390'), NOW);
    assert.match(broken, /The apps' states cannot be read: Redis unreachable at redis:\/\/127\.0\.0\.1:6390/);
  });
});

describe('renderAppPage', () => {
  test('the last failure whole, escaped, line breaks kept; attempts that cannot be read are said so', () => {
    const page = renderAppPage(REPORT.apps[1]!, [], new Error('Redis did not answer within 5000 ms'), NOW);
    assert.match(page, /after 3 attempt\(s\):<div class="reason">part wiki\.sql: command exited with code 1\nstderr: &lt;b&gt;boom&lt;\/b&gt;/);
    assert.match(page, /No complete snapshot yet\./);
    assert.match(page, /The queue cannot be read: Redis did not answer within 5000 ms/);
  });
});
