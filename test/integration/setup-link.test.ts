/**
 * `scripts/setup.sh --link-only` puts a `bysu` command on the PATH: a symbolic
 * link to this checkout's bin/bysu.js, idempotent, never replacing a `bysu`
 * that is not ours, with the exact line to put its directory on the PATH. Run
 * with BYSU_LINK_DIR (and, for the non-root default, as nobody with a HOME of
 * its own): a test must not touch the machine's /usr/local/bin. The docs and
 * --help speak of `bysu …`, never `npx bysu`.
 */
import assert from 'node:assert/strict';
import { chmod, lstat, mkdir, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { BYSU_BIN, PROJECT_ROOT } from '../helpers/cluster.ts';
import { run, withTempDir } from '../helpers/processes.ts';

const SETUP = path.join(PROJECT_ROOT, 'scripts/setup.sh');
/** A PATH without the link's directory (the system's, so bash, ln and readlink are found). */
const BARE_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

function linkOnly(env: NodeJS.ProcessEnv, command: string[] = ['bash', SETUP, '--link-only']): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return run(command[0]!, command.slice(1), { env: { PATH: BARE_PATH, ...env }, cwd: '/' });
}

test('--link-only links bysu to bin/bysu.js, says how to put it on the PATH, and that line works; a second run changes nothing', async () => {
  await withTempDir(async (dir) => {
    const bin = path.join(dir, 'tools/bin');
    const home = path.join(dir, 'home');
    await mkdir(home);
    const first = await linkOnly({ BYSU_LINK_DIR: bin, HOME: home });
    assert.equal(first.code, 0, first.stdout + first.stderr);
    assert.equal(await readlink(path.join(bin, 'bysu')), BYSU_BIN);
    assert.match(first.stdout, new RegExp(`^setup: linked ${bin}/bysu -> ${BYSU_BIN}$`, 'm'));
    const hint = first.stdout.split('\n').find((line) => line.startsWith('  echo '));
    assert.equal(hint, `  echo 'export PATH="${bin}:$PATH"' >> ~/.profile && export PATH="${bin}:$PATH"`);
    // The printed line, run as it is, makes `bysu` a command; and a login shell after it finds it too.
    const used = await run('bash', ['-c', `${hint!.trim()} && bysu --version`], { env: { PATH: `${path.dirname(process.execPath)}:${BARE_PATH}`, HOME: home } });
    assert.equal(used.code, 0, used.stdout + used.stderr);
    assert.match(used.stdout, /^\d+\.\d+\.\d+/);
    assert.match(await readFile(path.join(home, '.profile'), 'utf8'), new RegExp(`^export PATH="${bin}:\\$PATH"$`, 'm'));

    const again = await linkOnly({ BYSU_LINK_DIR: bin, HOME: home, PATH: `${bin}:${BARE_PATH}` });
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.equal(again.stdout, `setup: bysu is already linked: ${bin}/bysu -> ${BYSU_BIN}\n`, 'on the PATH now: no hint');
    assert.equal(await readlink(path.join(bin, 'bysu')), BYSU_BIN);
  });
});

test('a bysu that is not ours is left alone and said so (exit 1); a link to a checkout that is gone is replaced', async () => {
  await withTempDir(async (dir) => {
    const bin = path.join(dir, 'bin');
    await mkdir(bin);
    const link = path.join(bin, 'bysu');
    await writeFile(link, '#!/bin/sh\necho another bysu\n');
    const file = await linkOnly({ BYSU_LINK_DIR: bin, HOME: dir });
    assert.equal(file.code, 1);
    assert.equal(file.stderr, `setup: ${link} exists and is not a link to BYSU: left alone. Run '${BYSU_BIN}' instead, or remove ${link} and run: bash scripts/setup.sh --link-only\n`);
    assert.equal(await readFile(link, 'utf8'), '#!/bin/sh\necho another bysu\n');

    const other = path.join(dir, 'other-checkout/bin/bysu.js');
    await mkdir(path.dirname(other), { recursive: true });
    await writeFile(other, '');
    await rm(link);
    await symlink(other, link);
    const foreign = await linkOnly({ BYSU_LINK_DIR: bin, HOME: dir });
    assert.equal(foreign.code, 1);
    assert.match(foreign.stderr, new RegExp(`^setup: ${link} is a link to ${other}, not to this checkout: left alone\\. To use this checkout's instead: ln -sfn '${BYSU_BIN}' '${link}'$`, 'm'));
    assert.equal(await readlink(link), other, 'another checkout\'s link is theirs');

    await rm(path.join(dir, 'other-checkout'), { recursive: true });
    const gone = await linkOnly({ BYSU_LINK_DIR: bin, HOME: dir });
    assert.equal(gone.code, 0, gone.stderr);
    assert.match(gone.stdout, new RegExp(`^setup: ${link} pointed at ${other}, which no longer exists; relinked: ${link} -> ${BYSU_BIN}$`, 'm'));
    assert.equal(await readlink(link), BYSU_BIN);
  });
});

test('not root: the link goes to ~/.local/bin and the hint names $HOME/.local/bin', async (context) => {
  await withTempDir(async (dir) => {
    const home = path.join(dir, 'home');
    await mkdir(home);
    await run('chown', ['nobody', home]);
    await chmod(dir, 0o755);
    const asNobody = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', 'bash', SETUP, '--link-only'];
    const probe = await run('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'test', '-r', SETUP], { env: { PATH: BARE_PATH } });
    if (process.getuid?.() !== 0 || probe.code !== 0) {
      context.skip(process.getuid?.() !== 0 ? 'not run as root: cannot become another user to test the non-root default' : `nobody cannot read ${SETUP} in this checkout`);
      return;
    }
    const result = await linkOnly({ HOME: home }, asNobody);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const link = path.join(home, '.local/bin/bysu');
    assert.equal(await readlink(link), BYSU_BIN);
    assert.equal((await lstat(link)).uid, Number((await run('id', ['-u', 'nobody'])).stdout.trim()));
    assert.ok(result.stdout.includes(`  echo 'export PATH="$HOME/.local/bin:$PATH"' >> ~/.profile && export PATH="$HOME/.local/bin:$PATH"`), result.stdout);
  });
});

test('README, DESIGN, demo, bench, contrib and every --help speak of bysu, never npx', async () => {
  const files = ['README.md', 'DESIGN.md'];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(path.join(PROJECT_ROOT, dir), { withFileTypes: true })) {
      const name = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(name);
      else if (!/\.json$/.test(entry.name)) files.push(name);
    }
  };
  for (const dir of ['demo', 'bench', 'contrib']) await walk(dir);
  const found: string[] = [];
  for (const file of files) {
    (await readFile(path.join(PROJECT_ROOT, file), 'utf8')).split('\n').forEach((line, index) => {
      if (/\bnpx\b/.test(line)) found.push(`${file}:${index + 1}: ${line.trim()}`);
    });
  }
  const help = await run(BYSU_BIN, ['--help']);
  const commands = [...help.stdout.matchAll(/^ {2}([a-z]+) /gm)].map((match) => match[1]!).filter((name) => name !== 'help');
  assert.ok(commands.includes('restore') && commands.includes('cat'), help.stdout);
  for (const command of [[], ...commands.map((name) => [name]), ['config', 'check'], ['config', 'schema']]) {
    const text = (await run(BYSU_BIN, [...command, '--help'])).stdout;
    if (/\bnpx\b/.test(text)) found.push(`bysu ${command.join(' ')} --help`);
  }
  assert.deepEqual(found, []);
});
