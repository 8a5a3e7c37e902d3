/**
 * Hostile and bad input: malformed configs through the real CLI (exit 2, the
 * field named, never a stack trace), nodes that send endless, empty, unsafe or
 * malformed streams, bad command lines, bad HTTP requests, and secrets that
 * must never appear in logs, job data or responses.
 */
import assert from 'node:assert/strict';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import tar from 'tar-stream';
import { buffer } from 'node:stream/consumers';
import { SNAPSHOT_QUEUE } from '../../src/queue/jobs.ts';
import { waitForLog, withCluster, type TestCluster } from '../helpers/cluster.ts';
import { recordFault } from '../helpers/fault-report.ts';
import { freePort } from '../helpers/processes.ts';

const STACK = /^\s+at .+:\d+:\d+\)?$/m;

/** Run many CLI calls, four at a time. */
async function inBatches<T, R>(items: T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let index = 0; index < items.length; index += 4) results.push(...(await Promise.all(items.slice(index, index + 4).map(fn))));
  return results;
}

test('malformed configs: exit 2, the field named, no stack trace', async () => {
  await withCluster(['db1'], async (cluster) => {
    const base = (apps: string, extra = '') => `redis: { url: "${cluster.redis.url}", prefix: h }
repository: ${cluster.repository}
ssh: { user: root, identityFile: ${cluster.keys.identityFile}, knownHosts: ${cluster.keys.knownHostsFile} }
nodes: [{ name: db1, host: 127.0.0.1, port: ${cluster.nodes[0]!.port} }]
${extra}
apps:
${apps}`;
    const app = (fields: string) => `  - { name: shop, node: db1, parts: [{ file: a.sql, run: "echo a" }]${fields} }`;
    const readable = path.join(cluster.dir, 'readable_key');
    await writeFile(readable, 'x');
    await chmod(readable, 0o644);
    const cases: [string, string, string][] = [
      ['unknown top-level key', base(app('')).replace('repository:', 'repositroy: /x\nrepository:'), 'repositroy: unknown key; did you mean `repository`?'],
      ['unknown app key', base(app(', kepe: 3')), 'apps[shop].kepe: unknown key; did you mean `keep`?'],
      ['unknown part key', base('  - { name: shop, node: db1, parts: [{ file: a.sql, run: x, ok: [0] }] }'), 'apps[shop].parts[a.sql].ok: unknown key; did you mean `okExitCodes`?'],
      ['unknown node key', base(app('')).replace('port: ', 'prot: 1, port: '), 'nodes[db1].prot: unknown key; did you mean `port`?'],
      ['unknown defaults key', base(app(''), 'defaults: { keeep: 3 }'), 'defaults.keeep: unknown key; did you mean `keep`?'],
      ['traversal app name', base(app('').replace('name: shop', 'name: "../x"')), 'apps[0].name: must match'],
      ['traversal part file', base('  - { name: shop, node: db1, parts: [{ file: "../../etc/cron.d/x", run: x }] }'), 'apps[shop].parts[0].file: must be a plain file name'],
      ['absolute part file', base('  - { name: shop, node: db1, parts: [{ file: /etc/passwd, run: x }] }'), 'apps[shop].parts[0].file: must be a plain file name'],
      ['reserved part file', base('  - { name: shop, node: db1, parts: [{ file: SHA256SUMS, run: x }] }'), 'is reserved'],
      ['duplicate app', base(`${app('')}\n${app('')}`), 'apps[1].name: duplicate app name "shop" (also apps[0])'],
      ['duplicate part file', base('  - { name: shop, node: db1, parts: [{ file: a.sql, run: x }, { file: a.sql, run: y }] }'), 'apps[shop].parts[1].file: duplicate file name "a.sql" in this app (also apps[shop].parts[0])'],
      ['duplicate node', base(app('')).replace(/nodes: \[(.*)\]/, 'nodes: [$1, $1]'), 'nodes[1].name: duplicate node name "db1" (also nodes[0])'],
      ['unknown node', base(app('').replace('node: db1', 'node: db9')), 'apps[shop].node: unknown node "db9" (nodes: db1)'],
      ['bad cron', base(app(', schedule: "61 * * * *"')), 'apps[shop].schedule: invalid cron pattern "61 * * * *": minute 61 is out of range 0-59'],
      ['cron with 7 fields', base(app(', schedule: "0 0 0 * * * *"')), 'apps[shop].schedule: must be a cron pattern with 5 fields'],
      ['bad time zone', base(app(', timezone: Mars/Olympus')), 'apps[shop].timezone: unknown time zone'],
      ['bad size', base(app(', maxBytes: 10XB')), 'apps[shop].maxBytes: must be a size'],
      ['negative size', base(app(', maxBytes: -5')), 'apps[shop].maxBytes: must be a size like 512MiB, 50GiB or a number of bytes, got -5'],
      ['duration without unit', base(app(', timeout: 7200')), 'apps[shop].timeout: must be a duration with a unit'],
      ['bad duration', base(app(', stallTimeout: soon')), 'apps[shop].stallTimeout: must be a duration with a unit'],
      ['keep 0', base(app(', keep: 0')), 'apps[shop].keep: must be a whole number of at least 1, got 0'],
      ['attempts as text', base(app(', attempts: many')), 'apps[shop].attempts: must be a whole number of at least 1, got "many"'],
      ['exit code out of range', base('  - { name: shop, node: db1, parts: [{ file: a.sql, run: x, okExitCodes: [256] }] }'), 'apps[shop].parts[a.sql].okExitCodes: must be a non-empty list of exit codes from 0 to 255, got [256]'],
      ['empty command', base('  - { name: shop, node: db1, parts: [{ file: a.sql, run: "" }] }'), 'apps[shop].parts[a.sql].run: must be a non-empty command'],
      ['no parts', base('  - { name: shop, node: db1, parts: [] }'), 'apps[shop].parts: must be a non-empty list of parts (file and run), got an empty list'],
      ['port out of range', base(app('')).replace(/port: \d+/, 'port: 70000'), 'nodes[db1].port: must be a port number from 1 to 65535, got 70000'],
      ['host key not a fingerprint', base(app('')).replace('port: ', 'hostKey: "md5:aa", port: '), 'nodes[db1].hostKey: must be an OpenSSH fingerprint'],
      ['host with a space', base(app('')).replace('host: 127.0.0.1', 'host: "a b"'), 'nodes[db1].host: must be a host name or IP address, got "a b"'],
      ['redis url not a URL', base(app('')).replace(/url: "[^"]+"/, 'url: "localhost:6379"'), 'redis.url: must be a redis:// or rediss:// URL'],
      ['relative repository', base(app('')).replace(/repository: .*/, 'repository: backups'), 'repository: must be an absolute path'],
      ['section of the wrong type', base(app('')).replace(/ssh: \{[^}]*\}/, 'ssh: 5'), 'ssh: must be a mapping of keys, got a number'],
      ['webhook with a password', base(app(''), 'notify: { webhook: "https://u:pw@example.com/x" }'), 'notify.webhook: must not contain a user or password'],
      ['ping not a URL', base(app(', ping: "hc-ping"')), 'apps[shop].ping: must be an http:// or https:// URL'],
      ['shrinkWarn above 1', base(app(', shrinkWarn: 2')), 'apps[shop].shrinkWarn: must be a number from 0 (off) to below 1'],
      ['YAML syntax error', 'apps: [ { name: shop', '.yaml:1:21: not valid YAML'],
      ['YAML error shown with a caret', 'apps: [ { name: shop', '\n  1 | apps: [ { name: shop\n    |                     ^\n'],
      // Accepted before the declaration: read as an empty list, so a missing "-" meant no apps at all.
      ['apps as a mapping', base('').replace('apps:\n', 'apps: { name: shop, node: db1 }\n'), 'apps: must be a list of apps (name, node and parts), got a mapping'],
      ['identity readable by others', base(app('')).replace(cluster.keys.identityFile, readable), 'is readable by group or others'],
      ['missing identity file', base(app('')).replace(cluster.keys.identityFile, '/nonexistent/key'), 'ssh.identityFile: cannot read /nonexistent/key'],
      ['missing config file', '', 'cannot read the config file (no such file)'],
    ];
    const results = await inBatches(cases, async ([name, text, expected], ) => {
      const file = path.join(cluster.dir, `bad-${name.replace(/\W+/g, '-')}.yaml`);
      if (name !== 'missing config file') await writeFile(file, text);
      const result = await cluster.bysu(['-c', file, 'config', 'check']);
      return { name, expected, result };
    });
    let rejected = 0;
    for (const { name, expected, result } of results) {
      assert.equal(result.code, 2, `${name}: exit 2 (${result.stderr})`);
      assert.ok(result.stderr.includes(expected), `${name}: "${expected}" in\n${result.stderr}`);
      assert.doesNotMatch(result.stderr, STACK, `${name}: no stack trace`);
      rejected += 1;
    }
    recordFault({ kind: 'input', fault: `${cases.length} malformed configs (CLI)`, expected: 'exit 2, the field named, no stack trace', observed: `${rejected} rejected as expected`, pass: rejected === cases.length, tried: cases.length, rejected });
  });
});

async function hostileTar(): Promise<{ unsafe: Buffer; hugePax: Buffer }> {
  const pack = tar.pack();
  pack.entry({ name: '/etc/cron.d/evil' }, 'x');
  pack.entry({ name: '../../root/.ssh/authorized_keys' }, 'y');
  pack.finalize();
  const unsafe = await buffer(pack);
  // A pax header that claims 1 GiB: it must be refused without buffering it.
  const header = Buffer.alloc(512);
  header.write('PaxHeader/evil', 0);
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write('10000000000\0', 124);
  header.write('00000000000\0', 136);
  header.write('        ', 148);
  header[156] = 'x'.charCodeAt(0);
  header.write('ustar\0', 257);
  header.write('00', 263);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return { unsafe, hugePax: header };
}

test('hostile nodes, bad command lines, bad HTTP requests, and secrets never shown', async () => {
  await withCluster(['db1'], async (cluster: TestCluster) => {
    const node = cluster.nodes[0]!;
    const { unsafe, hugePax } = await hostileTar();
    await writeFile(path.join(node.dir, 'unsafe.tar'), unsafe);
    await writeFile(path.join(node.dir, 'hugepax.tar'), hugePax);
    const port = await freePort();
    const PASSWORD = 'S3cret-Dashboard-Pw';
    const TOKEN = 'S3cret-Api-Token-42';
    const HOOK_TOKEN = 'S3cret-Hook-Token';
    await cluster.writeConfig(
      [
        { name: 'endless', node: 'db1', attempts: 1, maxBytes: '2MiB', parts: [{ file: 'e.bin', run: 'cat /dev/zero' }] },
        { name: 'nothing', node: 'db1', attempts: 1, stallTimeout: '2s', parts: [{ file: 'n.sql', run: 'sleep 60' }] },
        { name: 'unsafe', node: 'db1', attempts: 1, parts: [{ file: 'u.tar', run: 'cat "$NODE_DIR/unsafe.tar"' }] },
        { name: 'hugepax', node: 'db1', attempts: 1, parts: [{ file: 'h.tar', run: 'cat "$NODE_DIR/hugepax.tar"; head -c 50000000 /dev/zero' }] },
        { name: 'garbage', node: 'db1', attempts: 1, parts: [{ file: 'g.tar', run: 'head -c 100000 /dev/urandom' }] },
      ],
      { dashboard: { host: '127.0.0.1', port, password: PASSWORD, apiToken: TOKEN }, notify: { webhook: `http://127.0.0.1:9/hook?token=${HOOK_TOKEN}` } },
    );
    const up = cluster.startProcess(['up']);
    await waitForLog(up, 'bysu up: scheduler, workers and dashboard running');
    const result = await cluster.bysu(['snapshot', '--all', '--wait']);
    const out = result.stdout;
    const nodeCases: [string, RegExp][] = [
      ['endless stream (maxBytes)', /endless: FAILED .*exceeds maxBytes \(2097152 bytes\)/],
      ['no data (stallTimeout)', /nothing: FAILED .*no data received for 2000 ms/],
      ['tar with absolute and .. names', /unsafe: committed .*2 warnings/],
      ['tar with a 1 GiB pax header', /hugepax: FAILED .*a pax header of 1073741824 bytes .* exceeds 1048576/],
      ['binary garbage as .tar', /garbage: FAILED .*not a valid tar archive: bad header checksum/],
    ];
    for (const [name, pattern] of nodeCases) assert.match(out, pattern, name);
    const manifest = JSON.parse(await (await import('node:fs/promises')).readFile(path.join(cluster.repository, 'unsafe', 'latest', 'manifest.json'), 'utf8'));
    assert.deepEqual(manifest.warnings, ['u.tar: entry "/etc/cron.d/evil": absolute path', 'u.tar: entry "../../root/.ssh/authorized_keys": ".." in path']);
    recordFault({ kind: 'input', fault: 'hostile node output (5 kinds)', expected: 'limits enforced; unsafe names warned; bad tars rejected', observed: 'endless→maxBytes, silent→stallTimeout, unsafe→2 warnings, 1 GiB pax→refused, garbage→rejected', pass: true, tried: 5, rejected: 5 });

    const cli: string[][] = [['snapshot', 'nosuchapp'], ['frobnicate'], ['list', 'unsafe', '--bogus'], ['snapshot'], ['keyscan'], ['prune', 'unsafe', '--all']];
    const cliResults = await inBatches(cli, (args) => cluster.bysu(args));
    cliResults.forEach((cliResult, index) => {
      assert.equal(cliResult.code, 2, cli[index]!.join(' '));
      assert.doesNotMatch(cliResult.stderr, STACK);
    });
    recordFault({ kind: 'input', fault: `${cli.length} bad command lines`, expected: 'exit 2 with usage, no stack trace', observed: 'all exit 2', pass: true, tried: cli.length, rejected: cli.length });

    const base = `http://127.0.0.1:${port}/`;
    const basic = (user: string, pass: string) => ({ authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}` });
    const http: [string, Record<string, string>, number][] = [
      ['board/', {}, 401],
      ['board/', basic('admin', 'nope'), 401],
      ['board/api/queues', basic('admin', ''), 401],
      ['api/apps', {}, 401],
      ['api/apps', { authorization: 'Bearer nope' }, 401],
      ['api/apps', { authorization: `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}` }, 401],
      ['api/apps/unsafe/latest/..%2f..%2f..%2fbysu.yaml', { authorization: `Bearer ${TOKEN}` }, 404],
      ['api/apps/..%2f..%2fetc/snapshots', { authorization: `Bearer ${TOKEN}` }, 404],
    ];
    let refused = 0;
    for (const [route, headers, status] of http) {
      const response = await fetch(`${base}${route}`, { headers });
      assert.equal(response.status, status, route);
      refused += 1;
    }
    const oversized = await fetch(`${base}api/apps`, { headers: { authorization: `Bearer ${TOKEN}`, 'x-big': 'x'.repeat(64_000) } }).then((response) => response.status, () => 431);
    assert.equal(oversized, 431);
    refused += 1;
    recordFault({ kind: 'input', fault: `${http.length + 1} bad HTTP requests`, expected: '401/404/431, nothing served', observed: `${refused} refused`, pass: true, tried: http.length + 1, rejected: refused });

    // Secrets: in no log line, no CLI output, no job data, no API answer.
    const connection = new Redis(cluster.redis.url, { maxRetriesPerRequest: null });
    const queue = new Queue(SNAPSHOT_QUEUE, { connection, prefix: cluster.prefix });
    const jobs = JSON.stringify((await queue.getJobs(['completed', 'failed', 'delayed', 'waiting'])).map((job) => job.asJSON()));
    await queue.close();
    connection.disconnect();
    const apps = await (await fetch(`${base}api/apps`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const haystacks = { log: up.output(), cli: out + result.stderr, jobs, api: apps };
    for (const secret of [PASSWORD, TOKEN, HOOK_TOKEN]) {
      for (const [where, text] of Object.entries(haystacks)) assert.ok(!text.includes(secret), `${secret} leaked into ${where}`);
    }
    recordFault({ kind: 'input', fault: 'secrets in logs, job data, answers', expected: 'dashboard password, API token, webhook token never shown', observed: `3 secrets absent from ${Object.keys(haystacks).length} places (${up.output().length} bytes of log)`, pass: true, tried: 3, rejected: 3 });
  });
});
