/**
 * A node's address: where and as whom to log in, and which host key to
 * trust. The config's nodes, the jobs' payloads and openSession all use this
 * one shape, declared once with the config's other keys (a node's item in
 * schema.ts). Apart from session.ts so that reading it loads no ssh2.
 */
import type { NodeConfig } from '../config/schema.ts';

export type NodeAddress = NodeConfig;

/** Given a node (its address and maybe more), return only its address, with no hostKey key when none is pinned: what a job payload carries. */
export function nodeAddressOf(node: NodeAddress): NodeAddress {
  return { name: node.name, host: node.host, port: node.port, user: node.user, ...(node.hostKey ? { hostKey: node.hostKey } : {}) };
}
