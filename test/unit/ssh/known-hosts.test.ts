import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  fingerprint,
  hostKeyAlgorithmsFor,
  keyTypeOf,
  knownHostsName,
  lookupHostKeys,
  parseKnownHosts,
  patternsMatch,
  type HostKey,
} from '../../../src/ssh/known-hosts.ts';

interface GeneratedKey {
  /** `type base64` as in a .pub file, without the comment. */
  line: string;
  type: string;
  blob: Buffer;
  /** What `ssh-keygen -l -E sha256` prints for it. */
  sshKeygenFingerprint: string;
}

let dir: string;
const keys: Record<'a' | 'b' | 'c' | 'ecdsa', GeneratedKey> = {} as never;

function run(command: string, args: string[], cwd?: string): string {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8' });
  assert.equal(result.status, 0, `${command} ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout;
}

function generateKey(name: string, type: 'ed25519' | 'ecdsa'): GeneratedKey {
  const file = path.join(dir, name);
  run('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', `${name}@test`, '-f', file]);
  const [keyType, base64] = fs.readFileSync(`${file}.pub`, 'utf8').trim().split(/\s+/);
  const printed = run('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${file}.pub`]);
  const match = /\b(SHA256:[A-Za-z0-9+/]{43})\b/.exec(printed);
  assert.ok(match, `unexpected ssh-keygen -l output: ${printed}`);
  return { line: `${keyType} ${base64}`, type: keyType!, blob: Buffer.from(base64!, 'base64'), sshKeygenFingerprint: match[1]! };
}

function sameKeys(actual: HostKey[], expected: GeneratedKey[]): void {
  assert.deepEqual(
    actual.map((key) => key.blob.toString('base64')).sort(),
    expected.map((key) => key.blob.toString('base64')).sort(),
  );
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bysu-known-hosts-'));
  keys.a = generateKey('a', 'ed25519');
  keys.b = generateKey('b', 'ed25519');
  keys.c = generateKey('c', 'ed25519');
  keys.ecdsa = generateKey('e', 'ecdsa');
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('fingerprint and keyTypeOf', () => {
  test('fingerprint() equals what ssh-keygen -l -E sha256 prints', () => {
    for (const key of Object.values(keys)) {
      assert.equal(fingerprint(key.blob), key.sshKeygenFingerprint);
      assert.match(fingerprint(key.blob), /^SHA256:[A-Za-z0-9+/]{43}$/);
    }
    assert.notEqual(fingerprint(keys.a.blob), fingerprint(keys.b.blob));
  });

  test('keyTypeOf reads the type from the blob', () => {
    assert.equal(keyTypeOf(keys.a.blob), 'ssh-ed25519');
    assert.equal(keyTypeOf(keys.ecdsa.blob), keys.ecdsa.type);
    assert.match(keys.ecdsa.type, /^ecdsa-sha2-nistp/);
  });

  test('keyTypeOf of a short or malformed blob is "unknown"', () => {
    assert.equal(keyTypeOf(Buffer.alloc(0)), 'unknown');
    assert.equal(keyTypeOf(Buffer.from([0, 0, 0])), 'unknown');
    assert.equal(keyTypeOf(Buffer.from([0, 0, 0, 50, 0x61])), 'unknown'); // length beyond the blob
    assert.equal(keyTypeOf(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x61])), 'unknown');
  });
});

describe('knownHostsName', () => {
  test('plain host for port 22, [host]:port otherwise', () => {
    assert.equal(knownHostsName('db1.example.com', 22), 'db1.example.com');
    assert.equal(knownHostsName('10.0.0.11', 22), '10.0.0.11');
    assert.equal(knownHostsName('db1.example.com', 2222), '[db1.example.com]:2222');
    assert.equal(knownHostsName('::1', 2200), '[::1]:2200');
  });
});

describe('parseKnownHosts and lookupHostKeys', () => {
  test('a plain entry is trusted for its host on port 22 only', () => {
    const entries = parseKnownHosts(`db1.example.com ${keys.a.line}\n`);
    assert.equal(entries.length, 1);
    assert.equal(entries[0]!.marker, null);
    assert.equal(entries[0]!.line, 1);
    assert.equal(entries[0]!.key.type, 'ssh-ed25519');
    sameKeys(lookupHostKeys(entries, 'db1.example.com', 22).trusted, [keys.a]);
    sameKeys(lookupHostKeys(entries, 'DB1.Example.COM', 22).trusted, [keys.a]);
    sameKeys(lookupHostKeys(entries, 'db1.example.com', 2222).trusted, []);
    sameKeys(lookupHostKeys(entries, 'db2.example.com', 22).trusted, []);
    sameKeys(lookupHostKeys(entries, 'db1.example.co', 22).trusted, []);
    sameKeys(lookupHostKeys(entries, 'xdb1.example.com', 22).trusted, []);
  });

  test('a [host]:port entry is trusted for that port only', () => {
    const entries = parseKnownHosts(`[db1.example.com]:2222 ${keys.a.line}\n[10.0.0.11]:2200 ${keys.b.line}\n`);
    sameKeys(lookupHostKeys(entries, 'db1.example.com', 2222).trusted, [keys.a]);
    sameKeys(lookupHostKeys(entries, 'db1.example.com', 22).trusted, []);
    sameKeys(lookupHostKeys(entries, 'db1.example.com', 2223).trusted, []);
    sameKeys(lookupHostKeys(entries, '10.0.0.11', 2200).trusted, [keys.b]);
    sameKeys(lookupHostKeys(entries, '10.0.0.11', 22).trusted, []);
  });

  test('comma-separated host lists', () => {
    const entries = parseKnownHosts(`db1.example.com,10.0.0.11,[db1.example.com]:2222 ${keys.a.line}\n`);
    sameKeys(lookupHostKeys(entries, 'db1.example.com', 22).trusted, [keys.a]);
    sameKeys(lookupHostKeys(entries, '10.0.0.11', 22).trusted, [keys.a]);
    sameKeys(lookupHostKeys(entries, 'db1.example.com', 2222).trusted, [keys.a]);
    sameKeys(lookupHostKeys(entries, '10.0.0.12', 22).trusted, []);
  });

  test('several keys for one host are all trusted', () => {
    const entries = parseKnownHosts(`db1 ${keys.a.line}\ndb1 ${keys.ecdsa.line}\nother ${keys.b.line}\n`);
    sameKeys(lookupHostKeys(entries, 'db1', 22).trusted, [keys.a, keys.ecdsa]);
  });

  test('wildcards: * and ?', () => {
    const entries = parseKnownHosts(`*.example.com ${keys.a.line}\ndb? ${keys.b.line}\n`);
    sameKeys(lookupHostKeys(entries, 'db1.example.com', 22).trusted, [keys.a]);
    sameKeys(lookupHostKeys(entries, 'a.b.example.com', 22).trusted, [keys.a]);
    sameKeys(lookupHostKeys(entries, 'example.com', 22).trusted, []);
    sameKeys(lookupHostKeys(entries, 'db1.example.org', 22).trusted, []);
    sameKeys(lookupHostKeys(entries, 'db1xexample.com', 22).trusted, []); // "." is literal, not any character
    sameKeys(lookupHostKeys(entries, 'db7', 22).trusted, [keys.b]);
    sameKeys(lookupHostKeys(entries, 'db10', 22).trusted, []);
  });

  test('negation: !bad.example.com excludes a host a wildcard would match', () => {
    const entries = parseKnownHosts(`*.example.com,!bad.example.com ${keys.a.line}\n`);
    sameKeys(lookupHostKeys(entries, 'good.example.com', 22).trusted, [keys.a]);
    sameKeys(lookupHostKeys(entries, 'bad.example.com', 22).trusted, []);
    // The order does not matter: a negation wins wherever it stands.
    const reversed = parseKnownHosts(`!bad.example.com,*.example.com ${keys.a.line}\n`);
    sameKeys(lookupHostKeys(reversed, 'bad.example.com', 22).trusted, []);
    sameKeys(lookupHostKeys(reversed, 'good.example.com', 22).trusted, [keys.a]);
    // A negation alone matches nothing.
    assert.equal(patternsMatch('!bad.example.com', 'good.example.com'), false);
  });

  test('hashed entries produced by the real ssh-keygen -H', () => {
    const file = path.join(dir, 'known_hosts_hashed');
    fs.writeFileSync(
      file,
      `db1.example.com ${keys.a.line}\n` +
        `[db2.example.com]:2222 ${keys.b.line}\n` +
        `db3.example.com,10.0.0.13 ${keys.c.line}\n`,
    );
    run('ssh-keygen', ['-H', '-f', file]);
    const text = fs.readFileSync(file, 'utf8');
    assert.ok(!text.includes('example.com'), `ssh-keygen -H left a plain name:\n${text}`);
    const entries = parseKnownHosts(text);
    assert.ok(entries.length >= 3);
    for (const entry of entries) assert.match(entry.patterns, /^\|1\|/);

    sameKeys(lookupHostKeys(entries, 'db1.example.com', 22).trusted, [keys.a]);
    sameKeys(lookupHostKeys(entries, 'db1.example.com', 2222).trusted, []);
    sameKeys(lookupHostKeys(entries, 'db2.example.com', 2222).trusted, [keys.b]);
    sameKeys(lookupHostKeys(entries, 'db2.example.com', 22).trusted, []);
    sameKeys(lookupHostKeys(entries, 'db3.example.com', 22).trusted, [keys.c]);
    sameKeys(lookupHostKeys(entries, '10.0.0.13', 22).trusted, [keys.c]);
    sameKeys(lookupHostKeys(entries, 'db4.example.com', 22).trusted, []);

    // ssh-keygen -F (OpenSSH's own lookup) agrees on the port-2222 entry.
    assert.match(run('ssh-keygen', ['-F', '[db2.example.com]:2222', '-f', file]), /found: line/);
  });

  test('a hashed entry matches a host name whatever its case, like a plain one', () => {
    // OpenSSH lower-cases the host name before it looks it up (and writes
    // known_hosts in lower case); a plain entry here matches case-insensitively,
    // so the same file hashed must give the same answer.
    const file = path.join(dir, 'known_hosts_case');
    fs.writeFileSync(file, `db1.example.com ${keys.a.line}\n`);
    const plain = parseKnownHosts(fs.readFileSync(file, 'utf8'));
    run('ssh-keygen', ['-H', '-f', file]);
    const hashed = parseKnownHosts(fs.readFileSync(file, 'utf8'));
    for (const host of ['db1.example.com', 'DB1.example.com']) {
      assert.deepEqual(
        lookupHostKeys(hashed, host, 22).trusted.length,
        lookupHostKeys(plain, host, 22).trusted.length,
        `plain and hashed known_hosts disagree about ${host}`,
      );
    }
  });

  test('@revoked entries are reported in revoked, never trusted', () => {
    const entries = parseKnownHosts(
      `db1.example.com ${keys.a.line}\n` + `@revoked * ${keys.b.line}\n` + `@revoked db9.example.com ${keys.c.line}\n`,
    );
    assert.equal(entries.filter((entry) => entry.marker === 'revoked').length, 2);
    const result = lookupHostKeys(entries, 'db1.example.com', 22);
    sameKeys(result.trusted, [keys.a]);
    sameKeys(result.revoked, [keys.b, keys.c]);
    // Even for a host its pattern matches, a revoked line does not make its key trusted.
    sameKeys(lookupHostKeys(entries, 'db9.example.com', 22).trusted, []);
  });

  test('@cert-authority entries are parsed but never trusted as host keys', () => {
    const entries = parseKnownHosts(`@cert-authority *.example.com ${keys.a.line}\n`);
    assert.equal(entries.length, 1);
    assert.equal(entries[0]!.marker, 'cert-authority');
    const result = lookupHostKeys(entries, 'db1.example.com', 22);
    assert.deepEqual(result.trusted, []);
    assert.deepEqual(result.revoked, []);
  });

  test('comments, blank and malformed lines are skipped; line numbers are kept', () => {
    const text = [
      '# a comment',
      '',
      '   ',
      `   # indented comment ${keys.c.line}`,
      'db1.example.com', // no key
      'db1.example.com ssh-ed25519', // no blob
      'db1.example.com ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIA==', // the type does not match the blob
      'db1.example.com ssh-ed25519 !!!notbase64!!!',
      `@bogus db1.example.com ${keys.b.line}`, // an unknown marker makes "@bogus" the pattern
      `db1.example.com ${keys.a.line} a trailing comment`,
      `\tdb2.example.com   ${keys.b.line}\r`,
    ].join('\n');
    const entries = parseKnownHosts(text);
    const trusted = lookupHostKeys(entries, 'db1.example.com', 22).trusted;
    sameKeys(trusted, [keys.a]);
    const forDb1 = entries.filter((entry) => patternsMatch(entry.patterns, 'db1.example.com'));
    assert.deepEqual(forDb1.map((entry) => entry.line), [10]);
    sameKeys(lookupHostKeys(entries, 'db2.example.com', 22).trusted, [keys.b]);
    assert.deepEqual(entries.map((entry) => entry.line), [10, 11], 'comments and malformed lines are not entries');
  });
});

describe('hostKeyAlgorithmsFor', () => {
  test('ssh-rsa expands to the SHA-2 signature algorithms first; order and uniqueness kept', () => {
    assert.deepEqual(hostKeyAlgorithmsFor(['ssh-rsa', 'ssh-ed25519']), ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa', 'ssh-ed25519']);
    assert.deepEqual(hostKeyAlgorithmsFor(['ssh-ed25519', 'ssh-rsa', 'ssh-ed25519']), ['ssh-ed25519', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);
    assert.deepEqual(hostKeyAlgorithmsFor(['ecdsa-sha2-nistp256']), ['ecdsa-sha2-nistp256']);
    assert.deepEqual(hostKeyAlgorithmsFor([]), []);
  });
});
