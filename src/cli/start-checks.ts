/**
 * What each long-running process refuses to start with, and so also refuses
 * to reload to (LiveConfig runs the same check before a reload takes effect):
 * a start and a reload never disagree about a config.
 */
import type { StartCheck } from '../config/live.ts';
import { checkSshFiles } from '../ssh/ssh-files.ts';
import { checkDashboardExposure } from '../dashboard/auth.ts';
import { ConfigError } from '../errors.ts';
import { emailProblems } from '../notify/email.ts';
import { requireRepository } from '../repository/marker.ts';
import { readIdentity } from '../ssh/session.ts';
import { dashboardAddressProblems } from './preflight.ts';

/**
 * A process that sends alerts (the scheduler, the snapshot and drill workers):
 * with email alerts, the password's environment variable set and the CA file
 * readable, so that the first alert is not the moment they are found missing.
 */
export const checkAlerts: StartCheck = (config) => {
  const problems = emailProblems(config.notify.email);
  if (problems.length > 0) throw new ConfigError(problems);
};

/**
 * A worker that logs in to nodes (snapshot, drill): a key it can read and
 * parse, known_hosts (not without nodes: an instance that only mirrors
 * another BYSU has no key), a marked repository; what alerting needs.
 */
export const checkNodeWorker: StartCheck = async (config) => {
  if (config.nodes.length > 0) {
    checkSshFiles(config);
    readIdentity(config.ssh.identityFile, config.ssh.knownHosts);
  }
  await requireRepository(config.repository);
  checkAlerts(config);
};

/** A worker that only reads and writes the repository (retention, verify): a marked repository. */
export const checkRepositoryWorker: StartCheck = async (config) => {
  await requireRepository(config.repository);
};

/**
 * The dashboard: never beyond loopback without a password, and only on an
 * address of this machine (an unmarked repository it reports, at /healthz).
 */
export const checkDashboard: StartCheck = async (config) => {
  checkDashboardExposure(config.dashboard);
  const problems = await dashboardAddressProblems(config);
  if (problems.length > 0) throw new ConfigError(problems);
};

/** `bysu up`: what its workers and its dashboard refuse. */
export const checkUp: StartCheck = async (config) => {
  await checkDashboard(config);
  await checkNodeWorker(config);
};
