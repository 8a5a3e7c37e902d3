/**
 * OpenSSH host keys: fingerprints in OpenSSH's `SHA256:` form and lookups in
 * known_hosts files (plain, `[host]:port`, wildcard, negated and hashed
 * `|1|salt|hash` entries; `@revoked` honoured, `@cert-authority` ignored).
 */
import { createHash, createHmac } from 'node:crypto';

export interface HostKey {
  /** Key type from the blob, e.g. `ssh-ed25519`. */
  type: string;
  /** The raw public key blob (SSH wire format). */
  blob: Buffer;
}

export interface KnownHostEntry {
  marker: 'revoked' | 'cert-authority' | null;
  patterns: string;
  key: HostKey;
  line: number;
}

/** Given a raw SSH public key blob, return its OpenSSH fingerprint `SHA256:<unpadded base64>`. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** Given a raw public key blob, return the key type named at its start (`ssh-ed25519`, …). */
export function keyTypeOf(blob: Buffer): string {
  if (blob.length < 4) return 'unknown';
  const length = blob.readUInt32BE(0);
  if (length > 64 || 4 + length > blob.length) return 'unknown';
  return blob.subarray(4, 4 + length).toString('latin1');
}

/**
 * Given the host and port BYSU connects to, return the name OpenSSH records in
 * known_hosts: `host` for port 22, `[host]:port` otherwise.
 */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** Given the text of a known_hosts file, return its entries; malformed lines are skipped, as OpenSSH does. */
export function parseKnownHosts(text: string): KnownHostEntry[] {
  const entries: KnownHostEntry[] = [];
  text.split('\n').forEach((rawLine, index) => {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) return;
    const fields = line.split(/\s+/);
    let marker: KnownHostEntry['marker'] = null;
    if (fields[0] === '@revoked' || fields[0] === '@cert-authority') {
      marker = fields[0] === '@revoked' ? 'revoked' : 'cert-authority';
      fields.shift();
    }
    const [patterns, type, base64] = fields;
    if (!patterns || !type || !base64) return;
    const blob = Buffer.from(base64, 'base64');
    if (blob.length === 0 || keyTypeOf(blob) !== type) return;
    entries.push({ marker, patterns, key: { type, blob }, line: index + 1 });
  });
  return entries;
}

/** Given one host pattern (with `*` and `?`) and a name, say whether it matches (case-insensitively). */
function wildcardMatch(pattern: string, name: string): boolean {
  const source = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${source}$`, 'i').test(name);
}

/** Given a hashed entry `|1|salt|hash` and a name, say whether the hash is of that name. */
function hashedMatch(pattern: string, name: string): boolean {
  const [, kind, salt, hash] = pattern.split('|');
  if (kind !== '1' || !salt || !hash) return false;
  const computed = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64');
  return computed === hash;
}

/** Given an entry's pattern list and a known_hosts name, say whether the entry applies (negations win). */
export function patternsMatch(patterns: string, name: string): boolean {
  if (patterns.startsWith('|')) return hashedMatch(patterns, name);
  let matched = false;
  for (const pattern of patterns.split(',')) {
    if (pattern.startsWith('!')) {
      if (wildcardMatch(pattern.slice(1), name)) return false;
    } else if (wildcardMatch(pattern, name)) {
      matched = true;
    }
  }
  return matched;
}

/**
 * Given known_hosts entries and the host and port, return the keys trusted for
 * it and the keys revoked anywhere in the file.
 */
export function lookupHostKeys(entries: KnownHostEntry[], host: string, port: number): { trusted: HostKey[]; revoked: HostKey[] } {
  // OpenSSH lowercases the host name before it looks it up (and before it hashes it).
  const name = knownHostsName(host.toLowerCase(), port);
  const trusted: HostKey[] = [];
  const revoked: HostKey[] = [];
  for (const entry of entries) {
    if (entry.marker === 'revoked') revoked.push(entry.key);
    else if (entry.marker === null && patternsMatch(entry.patterns, name)) trusted.push(entry.key);
  }
  return { trusted, revoked };
}

/** Given key types from known_hosts, return the host key algorithms to ask the server for, in that order. */
export function hostKeyAlgorithmsFor(types: string[]): string[] {
  const algorithms: string[] = [];
  for (const type of types) {
    const forType = type === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [type];
    for (const algorithm of forType) if (!algorithms.includes(algorithm)) algorithms.push(algorithm);
  }
  return algorithms;
}
