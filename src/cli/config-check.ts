/**
 * `bysu config check [--connect]`: validate the config, then everything that
 * would later refuse to start or run (preflight.ts: the dashboard's
 * exposure rule, the repository, the SSH key, each node's host key, the
 * email password's variable and CA file), all
 * problems at once; with --connect log in to every node.
 */
import { preflight } from './preflight.ts';
import { ConfigError, toError } from '../errors.ts';
import { openSession, readIdentity } from '../ssh/session.ts';
import { EXIT_FAILED, EXIT_OK, loadCliConfig, type GlobalOptions } from './context.ts';

export async function configCheck(globals: GlobalOptions, options: { connect?: boolean }): Promise<number> {
  const config = loadCliConfig(globals);
  const report = await preflight(config);
  if (report.problems.length > 0) throw new ConfigError(report.problems);
  console.log(`${config.source}: valid (${config.nodes.length} nodes, ${config.apps.length} apps)`);
  for (const note of report.notes) console.log(note);
  if (!options.connect) return EXIT_OK;
  const identity = readIdentity(config.ssh.identityFile, config.ssh.knownHosts);
  let failures = 0;
  // One node at a time: a config check must not be the thing that swamps a cluster.
  for (const node of config.nodes) {
    try {
      const session = await openSession(node, identity, { readyTimeoutMs: config.ssh.connectTimeoutMs });
      session.close();
      console.log(`${node.name}: ok (${node.user}@${node.host}:${node.port}, host key ${node.hostKey ? 'pinned' : 'in known_hosts'})`);
    } catch (error) {
      failures += 1;
      console.log(`${node.name}: FAILED: ${toError(error).message}`);
    }
  }
  return failures === 0 ? EXIT_OK : EXIT_FAILED;
}
