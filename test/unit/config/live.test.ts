/**
 * LiveConfig: a reload takes a file that loads and passes the process's
 * checks, whole, and keeps the running values of the keys bound at start;
 * anything else is refused and the running config stays.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { checkDashboardExposure } from '../../../src/dashboard/auth.ts';
import { LiveConfig, readSettled } from '../../../src/config/live.ts';
import { loadConfig, type Config } from '../../../src/config/load.ts';
import { createLogger } from '../../../src/log.ts';

let dir: string;
let file: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'bysu-live-'));
  file = path.join(dir, 'bysu.yaml');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function write(options: { keep?: number; prefix?: string; host?: string; password?: string; apps?: string[] } = {}): void {
  const apps = (options.apps ?? ['shop']).map((name) => `  - { name: ${name}, node: db1, keep: ${options.keep ?? 3}, parts: [{ file: ${name}.sql, run: "echo ${name}" }] }`);
  writeFileSync(file, [
    `redis: { url: "redis://127.0.0.1:6399/0", prefix: ${options.prefix ?? 'bysu'} }`,
    `repository: ${dir}/repo`,
    `dashboard: { host: "${options.host ?? '127.0.0.1'}", password: "${options.password ?? ''}" }`,
    'nodes: [{ name: db1, host: 10.0.0.1 }]',
    'apps:',
    ...apps,
    '',
  ].join('\n'));
}

function start(check?: (config: Config) => void): LiveConfig {
  return new LiveConfig(file, loadConfig(file, {}), check);
}

test('a valid file takes effect whole, and listeners hear of it', async () => {
  write();
  const live = start();
  const heard: string[][] = [];
  live.onReload((config, previous) => heard.push([previous.apps.map((app) => app.name).join(','), config.apps.map((app) => app.name).join(',')]));
  write({ keep: 1, apps: ['shop', 'blog'] });
  const outcome = (await live.reload());
  assert.ok(outcome.ok);
  assert.equal(outcome.changed, true);
  assert.deepEqual(outcome.needRestart, []);
  assert.deepEqual(live.current().apps.map((app) => [app.name, app.keep]), [['shop', 1], ['blog', 1]]);
  assert.deepEqual(heard, [['shop', 'shop,blog']]);
});

test('a file that does not load is refused: the running config stays, nobody hears of it', async () => {
  write();
  const live = start();
  const before = live.current();
  let heard = 0;
  live.onReload(() => (heard += 1));
  writeFileSync(file, 'apps: [ {name: shop\n');
  const outcome = (await live.reload());
  assert.equal(outcome.ok, false);
  assert.match(!outcome.ok ? outcome.error.message : '', /not valid YAML/);
  assert.equal(live.current(), before);
  assert.equal(heard, 0);
});

test('keys bound at start keep their running values, and are named', async () => {
  write({ prefix: 'bysu' });
  const live = start();
  write({ prefix: 'other', keep: 1 });
  const outcome = (await live.reload());
  assert.ok(outcome.ok);
  assert.deepEqual(outcome.needRestart, ['redis.prefix']);
  assert.equal(live.current().redis.prefix, 'bysu', 'the running prefix stays');
  assert.equal(live.current().apps[0]!.keep, 1, 'the rest applies');
});

test('the checks see the file as the next start would, and as it would run now', async () => {
  write({ host: '0.0.0.0', password: 'secret' });
  const live = start((config) => checkDashboardExposure(config.dashboard));
  // As the next start would see it: beyond loopback without a password.
  write({ host: '0.0.0.0', password: '' });
  assert.equal((await live.reload()).ok, false);
  // As it would run now: the host (bound at start) stays 0.0.0.0, and the emptied password would apply at once.
  write({ host: '127.0.0.1', password: '' });
  const outcome = (await live.reload());
  assert.equal(outcome.ok, false);
  assert.match(!outcome.ok ? outcome.error.message : '', /dashboard\.password: required/);
  assert.equal(live.current().dashboard.password, 'secret');
});

test('a file is taken only when two reads apart find it the same; one that keeps changing is refused', async () => {
  write({ keep: 12 });
  // Written just now by a writer that is not done: taken only once two reads 300 ms apart agree.
  writeFileSync(file, 'half: written');
  const started = Date.now();
  const late = setTimeout(() => writeFileSync(file, 'whole: file\n'), 150);
  const read = await readSettled(file, 300, 5000);
  clearTimeout(late);
  assert.equal(read.text, 'whole: file\n', 'the text after the writer finished');
  assert.ok(Date.now() - started >= 600, 'it read again until two reads agreed');
  // An mtime in the future (a clock set wrong, `touch -d`) does not hold a reload up: the bytes decide.
  const future = new Date(Date.now() + 3600_000);
  utimesSync(file, future, future);
  const settledNow = Date.now();
  assert.equal((await readSettled(file, 300, 5000)).text, 'whole: file\n');
  assert.ok(Date.now() - settledNow < 2000, 'read after two reads 300 ms apart, not after the mtime');
  // A file that never stops changing.
  writeFileSync(file, 'keep: 1\n');
  const writer = setInterval(() => writeFileSync(file, `keep: ${Date.now()}\n`), 50);
  try {
    await assert.rejects(readSettled(file, 300, 1000), /still changing after 1 s: send SIGHUP again once it is written/);
  } finally {
    clearInterval(writer);
  }
});

/** Wait until the reload is verified (the file read again 3 s after it, after two reads 1 s apart), or fail. */
async function verified(live: LiveConfig, withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (live.reloadUnverified()) {
    if (Date.now() > deadline) assert.fail(`the reload was not verified within ${withinMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// Fails before the fix (second round of the fifth mirror attack): an app the config before the reload did not have
// got floor 0, so one re-added by a file cut short (`keep: 12` read as `keep: 1`) was pruned to its half keep.
test('until a reload is verified, an app the config before it did not have is not pruned at all', async () => {
  write({ keep: 3, apps: ['shop'] });
  const live = start();
  assert.equal(live.keepFloor('shop'), 0);
  write({ keep: 1, apps: ['shop', 'blog'] });
  assert.equal(await live.reloadAndLog(createLogger('silent')), true);
  assert.equal(live.reloadUnverified(), true);
  assert.equal(live.keepFloor('shop'), 3, 'what the config before it kept');
  assert.equal(live.keepFloor('blog'), Infinity, 'nothing pruned blog before the reload');
  await verified(live, 10_000);
  assert.equal(live.keepFloor('blog'), 0);
  assert.equal(live.keepFloor('shop'), 0);
});

// Fails before the fix (the same attack): a file moved away for a moment when it was to be read again left the
// reload unverified for good, and nothing said so: a keep lowered on purpose never applied.
test('a file that cannot be read again after a reload is tried again, and the reload verified once it can be', async () => {
  write({ keep: 3 });
  const live = start();
  write({ keep: 1 });
  assert.equal(await live.reloadAndLog(createLogger('silent')), true);
  const away = `${file}.away`;
  renameSync(file, away);
  await new Promise((resolve) => setTimeout(resolve, 4500)); // past the first read again
  assert.equal(live.reloadUnverified(), true, 'not read: not verified');
  renameSync(away, file);
  await verified(live, 12_000);
  assert.equal(live.current().apps[0]!.keep, 1);
});

// Fails before the fix (third round on the fifth mirror attack): the re-read of a first reload, already reading when a
// second SIGHUP loaded a file cut short, compared what it read (the cut file) with what the second reload had just
// loaded (the same cut file) and called it verified 0.6 s later: the floor lapsed and a mirror went from 8 copies to 1.
test('a re-read under way when a second reload loads a file cut short does not verify that reload', async () => {
  write({ keep: 12 });
  const live = start();
  write({ keep: 12, apps: ['shop', 'blog'] });
  const logger = createLogger('silent');
  assert.equal(await live.reloadAndLog(logger), true);
  const first = Date.now();
  // 2.3 s later a writer cuts the file (keep: 1) and a second SIGHUP comes; the first reload's re-read begins at 3 s.
  await new Promise((resolve) => setTimeout(resolve, 2300));
  write({ keep: 1, apps: ['shop', 'blog'] });
  assert.equal(await live.reloadAndLog(logger), true);
  // The first re-read has read the cut file twice by now (3 s + 1 s); the second reload's own is due at about 6.3 s.
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, first + 5000 - Date.now())));
  assert.equal(live.reloadUnverified(), true, 'the cut file is not verified by a read that began before it was loaded');
  assert.equal(live.keepFloor('shop'), 12);
  write({ keep: 12, apps: ['shop', 'blog'] }); // the writer finishes
  await verified(live, 15_000);
  assert.equal(live.current().apps[0]!.keep, 12, 'the finished file was read again and reloaded');
});

// Fails before the fix (the same round): each SIGHUP pushed the re-read back 3 s, so SIGHUPs every 2.5 s with the file
// unchanged (config management) left the reload unverified for as long as they came: a lowered keep never applied.
test('SIGHUPs that keep coming with the file unchanged do not push the re-read back', async () => {
  write({ keep: 12 });
  const live = start();
  write({ keep: 3 });
  const logger = createLogger('silent');
  assert.equal(await live.reloadAndLog(logger), true);
  let sending = true;
  const resend = (async () => {
    while (sending) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      await live.reloadAndLog(logger);
    }
  })();
  try {
    await verified(live, 7000);
  } finally {
    sending = false;
    await resend;
  }
  assert.equal(live.keepFloor('shop'), 0);
});
