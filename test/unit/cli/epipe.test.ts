/**
 * `bysu … | head`: a reader that goes away ends the output, not the command.
 * It crashed with an unhandled EPIPE (a stack trace on stderr) before.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bin/bysu.js');

test('bysu config schema | true: no EPIPE on stderr, and bysu\'s own exit status (pipefail)', () => {
  // `true` reads nothing and exits: every write of bysu's then meets a closed pipe.
  const result = spawnSync('bash', ['-c', `set -o pipefail; node ${JSON.stringify(BIN)} config schema | true`], { encoding: 'utf8' });
  assert.doesNotMatch(result.stderr, /EPIPE|Unhandled 'error' event/, result.stderr);
  assert.equal(result.status, 0, result.stderr);
});
