/**
 * A node's address: where and as whom to log in, and which host key to
 * trust. The config's nodes, the jobs' payloads and openSession all use this
 * one shape. Apart from session.ts so that reading it loads no ssh2.
 */

export interface NodeAddress {
  /** Node name, for messages. */
  name: string;
  host: string;
  port: number;
  user: string;
  /** Pinned `SHA256:` fingerprint; when absent the known_hosts entries decide. */
  hostKey?: string;
}

/** Given a node (its address and maybe more), return only its address, with no hostKey key when none is pinned: what a job payload carries. */
export function nodeAddressOf(node: NodeAddress): NodeAddress {
  return { name: node.name, host: node.host, port: node.port, user: node.user, ...(node.hostKey ? { hostKey: node.hostKey } : {}) };
}
