/**
 * `bysu config check [--connect]`: validate the config, the SSH key and that
 * every node's host key is pinned or known; with --connect log in to every node.
 */
import { checkSshFiles } from '../config/load.ts';
import { ConfigError, toError } from '../errors.ts';
import { knownHostsName, lookupHostKeys } from '../ssh/known-hosts.ts';
import { openSession, readIdentity, readKnownHosts } from '../ssh/session.ts';
import { EXIT_FAILED, EXIT_OK, loadCliConfig, type GlobalOptions } from './context.ts';

export async function configCheck(globals: GlobalOptions, options: { connect?: boolean }): Promise<number> {
  const config = loadCliConfig(globals);
  checkSshFiles(config);
  const identity = readIdentity(config.ssh.identityFile, config.ssh.knownHosts);
  // A node's host key must be pinned or present in knownHosts.
  const knownHosts = readKnownHosts(config.ssh.knownHosts).entries;
  const unknown = config.nodes.flatMap((node) => {
    if (node.hostKey !== undefined || lookupHostKeys(knownHosts, node.host, node.port).trusted.length > 0) return [];
    return [`nodes[${node.name}].hostKey: node "${node.name}" is not pinned and ${knownHostsName(node.host, node.port)} is not in ${config.ssh.knownHosts}; ` +
      `check its key out of band and pin it (bysu keyscan ${node.host} --port ${node.port})`];
  });
  if (unknown.length > 0) throw new ConfigError(unknown);
  console.log(`${config.source}: valid (${config.nodes.length} nodes, ${config.apps.length} apps)`);
  if (!options.connect) return EXIT_OK;
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
