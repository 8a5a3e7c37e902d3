/**
 * What `bysu config check` looks at beyond the file itself: everything that
 * would later make a process refuse to start or a job refuse to run, found at
 * once and reported together, one line per problem saying what is wrong and
 * what to do. It reuses the checks those processes make (the dashboard's
 * exposure rule, the repository marker, the SSH key and known_hosts, the
 * environment email alerts need), so the
 * check and the refusal cannot disagree. Reads only; creates nothing.
 */
import { lookup } from 'node:dns/promises';
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { checkDashboardExposure, isLoopback } from '../dashboard/auth.ts';
import { ConfigError, RepositoryUnavailableError, toError } from '../errors.ts';
import { emailProblems } from '../notify/email.ts';
import { COMMITS_DIR, DRILLS_DIR, INCOMING_DIR } from '../repository/layout.ts';
import { requireRepository } from '../repository/marker.ts';
import { identityFileProblems } from '../ssh/ssh-files.ts';
import { knownHostsName, lookupHostKeys } from '../ssh/known-hosts.ts';
import { readIdentity, readKnownHosts } from '../ssh/session.ts';
import type { Config } from '../config/load.ts';

/** What the checks found. */
export interface PreflightReport {
  /** One line per problem; empty when everything would start and run. */
  problems: string[];
  /** What was checked and how, for the operator (e.g. as which user the repository was found writable). */
  notes: string[];
}

/**
 * Given a loaded Config, check what the processes will check when they start
 * or run: the dashboard's exposure rule, the repository (exists, is a
 * directory, has its marker, is writable by the user running this), the SSH
 * key (present, readable, mode, parseable), that every node's host key is
 * pinned or in known_hosts, and what email alerts need from this environment
 * (the password's variable, the CA file). Return every problem found, not just the first.
 */
export async function preflight(config: Config): Promise<PreflightReport> {
  const notes: string[] = [];
  const problems = [
    ...dashboardProblems(config),
    ...(await dashboardAddressProblems(config)),
    ...(await repositoryProblems(config, notes)),
    ...identityProblems(config),
    ...knownHostsProblems(config),
    ...emailProblems(config.notify.email),
  ];
  return { problems, notes };
}

/**
 * The dashboard can listen only on an address of this machine (or all of
 * them): else `bysu dashboard` and `bysu up` fail to start with
 * EADDRNOTAVAIL or ENOTFOUND. Checked where config check runs, which is
 * meant to be where the processes run.
 */
export async function dashboardAddressProblems(config: Config): Promise<string[]> {
  const { host } = config.dashboard;
  if (host === '0.0.0.0' || host === '::') return [];
  let addresses: string[];
  try {
    addresses = (await lookup(host, { all: true })).map((entry) => entry.address);
  } catch (error) {
    return [`dashboard.host: cannot resolve ${JSON.stringify(host)} (${(error as NodeJS.ErrnoException).code ?? toError(error).message}): the dashboard could not listen there; use an address of this machine, 127.0.0.1 or 0.0.0.0`];
  }
  const local = new Set(Object.values(os.networkInterfaces()).flatMap((entries) => (entries ?? []).map((entry) => entry.address)));
  if (addresses.some((address) => local.has(address) || isLoopback(address))) return [];
  return [`dashboard.host: ${host}${addresses.join(', ') === host ? '' : ` (${addresses.join(', ')})`} is not an address of this machine, so the dashboard could not listen there; ` +
    `use one of ${[...local].join(', ')}, or 0.0.0.0 for all`];
}

/** Who this process runs as, for messages: `bysu (uid 998)`, or `uid 1234` without a passwd entry. */
export function currentUser(): string {
  const uid = process.getuid?.() ?? -1;
  try {
    return `${os.userInfo().username} (uid ${uid})`;
  } catch {
    return `uid ${uid}`;
  }
}

function problemsOf(check: () => void): string[] {
  try {
    check();
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
}

function dashboardProblems(config: Config): string[] {
  return problemsOf(() => checkDashboardExposure(config.dashboard));
}

/**
 * The marker check every worker and command makes, then write access to the
 * root and to the directories BYSU keeps for each configured app, as this
 * process's user (access(2): root passes wherever the filesystem is writable).
 */
async function repositoryProblems(config: Config, notes: string[]): Promise<string[]> {
  const root = config.repository;
  try {
    await requireRepository(root);
  } catch (error) {
    if (error instanceof RepositoryUnavailableError) return [error.message];
    throw error;
  }
  const user = currentUser();
  const directories = [root];
  for (const app of config.apps) {
    for (const directory of [path.join(root, app.name), ...[INCOMING_DIR, COMMITS_DIR, DRILLS_DIR].map((name) => path.join(root, app.name, name))]) {
      if ((await stat(directory).catch(() => null))?.isDirectory()) directories.push(directory);
    }
  }
  const refused: { directory: string; code: string }[] = [];
  for (const directory of directories) {
    await access(directory, constants.W_OK | constants.X_OK).catch((error: NodeJS.ErrnoException) => {
      refused.push({ directory, code: error.code ?? toError(error).message });
    });
  }
  if (refused.some((entry) => entry.code === 'EROFS')) {
    return [`repository ${root} is on a read-only filesystem (EROFS): workers cannot write snapshots there; remount it read-write`];
  }
  if (refused.length > 0) {
    const shown = refused.slice(0, 3).map((entry) => entry.directory).join(', ') + (refused.length > 3 ? `, … (${refused.length} in all)` : '');
    return [
      `repository ${root}: ${shown} not writable by ${user}, the user this check ran as (${refused[0]!.code}): ` +
        `the workers write there; make it writable by the user they run as (e.g. chown -R that user ${root}), and run bysu config check as that user`,
    ];
  }
  const asRoot = process.getuid?.() === 0
    ? '; root may write where the workers\' user cannot: to check as that user, run e.g. sudo -u bysu bysu config check'
    : '';
  notes.push(`repository ${root}: marked, writable by ${user}, the user this check ran as${asRoot}`);
  return [];
}

/** The key file's own checks (what a worker refuses at start), then whether ssh2 can use it. */
function identityProblems(config: Config): string[] {
  const problems = identityFileProblems(config.ssh.identityFile);
  if (problems.length > 0) return problems;
  try {
    readIdentity(config.ssh.identityFile, config.ssh.knownHosts);
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    return [`ssh.identityFile: cannot read ${config.ssh.identityFile} (${toError(error).message})`];
  }
}

/**
 * Every node without a pinned hostKey must be in known_hosts under the name
 * OpenSSH looks up (`[host]:port` unless the port is 22): else each
 * connection to it is refused.
 */
function knownHostsProblems(config: Config): string[] {
  const unpinned = config.nodes.map((node, index) => ({ node, index })).filter(({ node }) => node.hostKey === undefined);
  const file = config.ssh.knownHosts;
  let known: ReturnType<typeof readKnownHosts>;
  try {
    // Read even when every key is pinned: each connection reads it (for @revoked keys) and fails on a file it cannot read.
    known = readKnownHosts(file);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  if (unpinned.length === 0) return [];
  return unpinned
    .filter(({ node }) => lookupHostKeys(known.entries, node.host, node.port).trusted.length === 0)
    .map(({ node }) =>
      `nodes[${node.name}].hostKey: node "${node.name}" is not pinned and ${knownHostsName(node.host.toLowerCase(), node.port)} is not in ${file}` +
        `${known.missing ? ' (the file does not exist)' : ''}: check its key out of band, then add the line that ` +
        `\`bysu keyscan ${node.host} --port ${node.port}\` prints to ${file} (or ssh-keyscan${node.port === 22 ? '' : ` -p ${node.port}`} ${node.host} >> ${file}), ` +
        'or pin its fingerprint as the node\'s hostKey',
    );
}
