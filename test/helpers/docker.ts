/**
 * Docker Engine and Compose for the compose test, from Debian's packages:
 * installed when missing (as root), a daemon started when none runs (and
 * stopped afterwards), and the stand-in base images built once per machine
 * (test/compose/standins.sh). Compose v2 (`docker compose`) is used when the
 * CLI has it, else Debian's Compose v1 (`docker-compose --compatibility`, so
 * that deploy.replicas is honoured).
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from './cluster.ts';
import { run, spawnTracked, stopProcess, waitUntil } from './processes.ts';

const PACKAGES: Record<string, string> = { dockerd: 'docker.io', 'docker-compose': 'docker.io docker-compose', debootstrap: 'debootstrap' };

function have(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

/**
 * Install what is missing; return why the compose test cannot run here, or false when it can.
 * Only as root: the daemon, its images and its volumes belong to root.
 */
export function composeSkipReason(): string | false {
  if (process.platform !== 'linux') return 'Docker Engine runs on Linux only';
  if (process.getuid?.() !== 0) return 'the compose test runs as root only (it starts dockerd); run `sudo npm run test:compose`';
  const missing = Object.keys(PACKAGES).filter((command) => !have(command));
  if (missing.length === 0) return false;
  const packages = [...new Set(missing.flatMap((command) => PACKAGES[command]!.split(' ')))];
  const install = spawnSync('apt-get', ['install', '-y', '-q', ...packages], { encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (install.status !== 0) return `cannot install ${packages.join(' ')} (apt-get install -y ${packages.join(' ')} exited ${install.status}: ${install.stderr.trim().split('\n').pop()})`;
  return false;
}

/** The docker CLI that matches Debian's daemon when both are installed. */
export const DOCKER = have('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';

/** The compose command line: v2 when the CLI has it, else v1 with --compatibility (replicas). */
export function composeCommand(): string[] {
  return spawnSync(DOCKER, ['compose', 'version'], { stdio: 'ignore' }).status === 0 ? [DOCKER, 'compose'] : ['docker-compose', '--compatibility'];
}

/** A running Docker daemon: the machine's own when one answers, else one started here and stopped by stop(). */
export async function ensureDockerDaemon(logDir: string): Promise<{ stop: () => Promise<void> }> {
  if ((await run(DOCKER, ['info'])).code === 0) return { stop: async () => {} };
  mkdirSync(logDir, { recursive: true });
  const log = openSync(path.join(logDir, 'dockerd.log'), 'a');
  // No default bridge and no iptables rules: compose's own network joins the services, published
  // ports go through docker-proxy on 127.0.0.1, and nothing of the machine's firewall is touched.
  const daemon: ChildProcess = spawnTracked('dockerd', ['--bridge=none', '--iptables=false', '--ip6tables=false'], { stdio: ['ignore', log, log] });
  await waitUntil('dockerd answers', async () => (await run(DOCKER, ['info'])).code === 0, 60_000);
  return { stop: () => stopProcess(daemon, 30_000) };
}

/** Build the stand-in base images (a no-op when they are current); throw with their output when that fails. */
export async function ensureStandinImages(): Promise<void> {
  const result = await run('bash', [path.join(PROJECT_ROOT, 'test/compose/standins.sh')]);
  if (result.code !== 0) throw new Error(`test/compose/standins.sh failed:\n${result.stderr}`);
}
