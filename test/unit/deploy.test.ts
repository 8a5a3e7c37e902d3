/**
 * The deployment files stay true to the program: compose.yaml runs real
 * `bysu` subcommands with Redis set up for BullMQ (AOF, noeviction), two
 * snapshot workers, the repository on a volume and config and key read-only;
 * the Dockerfile is multi-stage and runs as a non-root user; the systemd
 * units start real subcommands and pass `systemd-analyze verify` (as does
 * contrib/mirror's SSH tunnel unit).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { parse } from 'yaml';
import { buildProgram } from '../../src/cli/main.ts';
import { WORKER_KINDS } from '../../src/cli/worker.ts';
import { missingRuntimeFlags, RUNTIME_V8_FLAGS } from '../../src/cli/runtime-flags.ts';
import { SOURCE_DIRS } from '../../bin/compiled.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Given a bysu argument list, throw unless it names a real subcommand (and a real worker kind). */
function assertRealCommand(args: string[], where: string): void {
  const program = buildProgram(() => undefined);
  const command = program.commands.find((candidate) => candidate.name() === args[0]);
  assert.ok(command, `${where}: "${args[0]}" is a bysu subcommand`);
  if (args[0] === 'worker') assert.ok((WORKER_KINDS as readonly string[]).includes(args[1]!), `${where}: worker kind "${args[1]}"`);
  const help = spawnSync(process.execPath, [path.join(ROOT, 'bin/bysu.js'), ...args, '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0, `${where}: bysu ${args.join(' ')} --help`);
}

test('compose.yaml: services, Redis settings, replicas, volumes, real commands', () => {
  const compose = parse(readFileSync(path.join(ROOT, 'compose.yaml'), 'utf8'), { merge: true }) as {
    services: Record<string, { command: string[]; image?: string; build?: string; volumes?: string[]; deploy?: { replicas?: number }; environment?: Record<string, string>; restart?: string; depends_on?: Record<string, { condition: string }> }>;
    volumes: Record<string, unknown>;
  };
  assert.deepEqual(Object.keys(compose.services).sort(), ['dashboard', 'drill-worker', 'init', 'mirror-worker', 'redis', 'retention-worker', 'scheduler', 'snapshot-worker', 'verify-worker']);
  // Every kind of worker runs somewhere: a kind left out would leave its queue unserved, with nothing said.
  for (const kind of WORKER_KINDS) assert.ok(Object.values(compose.services).some((service) => service.command.join(' ') === `worker ${kind}`), `compose runs a ${kind} worker`);
  // The repository volume is made a repository once, before anything that requires its marker starts.
  assert.deepEqual(compose.services.init!.command, ['init']);
  assert.equal(compose.services.init!.restart, 'no', 'init runs once per start, never in a loop');
  for (const [name, service] of Object.entries(compose.services)) {
    if (name === 'redis' || name === 'init') continue;
    assert.equal(service.depends_on?.init?.condition, 'service_completed_successfully', `${name} waits for bysu init`);
  }
  const redis = compose.services.redis!.command.join(' ');
  assert.match(redis, /--appendonly yes/);
  assert.match(redis, /--appendfsync everysec/);
  assert.match(redis, /--maxmemory-policy noeviction/);
  assert.equal(compose.services['snapshot-worker']!.deploy?.replicas, 2);
  assert.ok('repository' in compose.volumes);
  for (const [name, service] of Object.entries(compose.services)) {
    if (name === 'redis') continue;
    assertRealCommand(service.command, `compose service ${name}`);
    assert.equal(service.build, '.', `${name} builds the shared image`);
    assert.ok(service.volumes?.includes('repository:/var/lib/bysu'), `${name} mounts the repository`);
    // The directory, not bysu.yaml alone: a single-file bind mount never shows a file an editor replaced.
    assert.ok(service.volumes?.includes('./config:/etc/bysu:ro'), `${name}: config and SSH key read-only, as a directory`);
    assert.equal(service.environment?.BYSU_REDIS_URL, 'redis://redis:6379/0');
  }
  assert.match(compose.services.dashboard!.environment?.BYSU_DASHBOARD_PASSWORD ?? '', /^\$\{BYSU_DASHBOARD_PASSWORD:\?/, 'compose refuses to start the dashboard without a password');
});

test('Dockerfile: multi-stage, non-root, bysu as the entrypoint', () => {
  const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  assert.ok((dockerfile.match(/^FROM /gm) ?? []).length >= 2, 'multi-stage');
  assert.match(dockerfile, /^FROM node:20-/m, 'the Node.js the project runs on');
  const user = /^USER (\S+)$/m.exec(dockerfile)?.[1];
  assert.ok(user && user !== 'root' && user !== '0', `runs as a non-root user (${user})`);
  // The script itself, so that its #! line's V8 flags apply (see the runtime-flags test below).
  assert.match(dockerfile, /^ENTRYPOINT \["\/app\/bin\/bysu\.js"\]$/m);
  // The compiled form is built in its own stage and run because the runtime copies the very sources it was built from.
  assert.match(dockerfile, /^RUN node scripts\/build\.mjs$/m, 'a stage compiles to dist/');
  assert.match(dockerfile, /^COPY --from=build \/app\/dist \.\/dist$/m, 'the runtime image has dist/');
  const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  for (const dir of SOURCE_DIRS) assert.match(runtime, new RegExp(`^COPY ${dir} \\./${dir}$`, 'm'), `the runtime image has ${dir}/, as the build had`);
  for (const copied of dockerfile.matchAll(/^COPY (?!--from)(\S+)/gm)) {
    assert.ok(existsSync(path.join(ROOT, copied[1]!)), `COPY ${copied[1]} exists`);
  }
});

const systemdAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;

test('systemd units start real subcommands', () => {
  const units = readdirSync(path.join(ROOT, 'contrib/systemd')).filter((name) => name.endsWith('.service'));
  assert.ok(units.length >= 5);
  for (const kind of WORKER_KINDS) assert.ok(units.includes(`bysu-worker-${kind}.service`), `a unit runs the ${kind} worker`);
  for (const unit of units) {
    const text = readFileSync(path.join(ROOT, 'contrib/systemd', unit), 'utf8');
    const exec = /^ExecStart=\/opt\/bysu\/bin\/bysu\.js (.+)$/m.exec(text);
    assert.ok(exec, `${unit} runs bysu`);
    assertRealCommand(exec[1]!.split(' '), unit);
    assert.match(text, /^User=bysu$/m, `${unit} runs as the bysu user`);
    assert.match(text, /^TimeoutStopSec=120$/m, `${unit} gives running snapshots their grace period`);
    // Every bysu process re-reads its config on SIGHUP: `systemctl reload <unit>` must send it.
    assert.match(text, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m, `${unit} reloads with SIGHUP`);
    // `bysu init` at every start would mark the empty mount point of a disk that failed to mount.
    assert.doesNotMatch(text, /^Exec\w*=.*\binit\b/m, `${unit} never runs bysu init`);
    if (/ (up|worker \w+)$/.test(exec[1]!)) assert.match(text, /^RequiresMountsFor=\/var\/lib\/bysu$/m, `${unit} waits for the repository's mount`);
  }
});

test('bin/bysu.js carries the V8 flags of runtime-flags.ts on its #! line, and is executable', async () => {
  const script = path.join(ROOT, 'bin/bysu.js');
  assert.equal(readFileSync(script, 'utf8').split('\n')[0], `#!/usr/bin/env -S node ${RUNTIME_V8_FLAGS.join(' ')}`);
  assert.ok(statSync(script).mode & 0o111, 'executable, so that launchers can run it directly');
  const version = spawnSync(script, ['--version'], { encoding: 'utf8' });
  assert.equal(version.status, 0, version.stderr);
  assert.deepEqual(missingRuntimeFlags([...RUNTIME_V8_FLAGS]), []);
  assert.deepEqual(missingRuntimeFlags(['--import', 'tsx']), [...RUNTIME_V8_FLAGS]);
});

test('systemd units pass systemd-analyze verify', { skip: systemdAnalyze ? false : 'systemd-analyze is not installed on this machine' }, () => {
  // contrib/mirror's SSH tunnel unit too (test/integration/mirror-transport.test.ts runs its ssh command).
  const units = ['contrib/systemd', 'contrib/mirror'].flatMap((dir) => readdirSync(path.join(ROOT, dir)).filter((name) => name.endsWith('.service')).map((name) => path.join(ROOT, dir, name)));
  assert.ok(units.some((unit) => unit.endsWith('/contrib/mirror/bysu-mirror-tunnel.service')));
  const result = spawnSync('systemd-analyze', ['verify', ...units], { encoding: 'utf8' });
  const problems = `${result.stdout}${result.stderr}`.split('\n').filter((line) => line.includes('bysu') && !/Failed to resolve (user|group)|No such file or directory.*\/opt\/bysu|Command \/opt\/bysu\/bin\/bysu\.js is not executable: No such file/.test(line));
  assert.deepEqual(problems, []);
});
