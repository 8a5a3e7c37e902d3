/**
 * Retention's removal of a stale attempt must never leave a half-deleted
 * attempt where its run, if only paused, could still publish it (a run
 * publishes by renaming its attempt directory into place).
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { StorageError } from '../../../src/errors.ts';
import { initRepository } from '../../../src/repository/marker.ts';
import { removeIncoming } from '../../../src/repository/remove.ts';
import { run, withTempDir } from '../../helpers/processes.ts';

const canMakeImmutable = process.getuid?.() === 0;

// Fails before the fix: removeIncoming ran `rm -rf` on the attempt in place, so a deletion that stopped
// half-way (here an immutable file; in life an I/O error or a slow delete racing the run) left
// `.incoming/job-7.1.0badc0de` with its part gone and its manifest still there, ready to be published.
test('a stale attempt whose deletion stops half-way is out of its run\'s reach', { skip: canMakeImmutable ? false : 'needs root for chattr +i (an undeletable file stops the deletion half-way)' }, async () => {
  await withTempDir(async (dir) => {
    const repository = path.join(dir, 'repo');
    await initRepository(repository);
    const incoming = path.join(repository, 'shop', '.incoming');
    const attempt = path.join(incoming, 'job-7.1.0badc0de');
    await mkdir(attempt, { recursive: true });
    await writeFile(path.join(attempt, 'a.sql'), 'part\n');
    await writeFile(path.join(attempt, 'manifest.json'), '{}\n');
    const chattr = await run('chattr', ['+i', path.join(attempt, 'manifest.json')]);
    if (chattr.code !== 0) {
      assert.fail(`chattr +i failed on ${dir} (${chattr.stderr.trim()}); the filesystem must support immutable files for this test`);
    }
    try {
      await assert.rejects(removeIncoming(repository, 'shop', 'job-7.1.0badc0de'), StorageError);
      const left = await readdir(incoming);
      assert.ok(!left.includes('job-7.1.0badc0de'), `the half-deleted attempt is still under its own name: ${left.join(', ')}`);
      assert.equal(left.length, 1);
      assert.match(left[0]!, /^deleting\.job-7\.1\.0badc0de\.[0-9a-f]{8}$/);
    } finally {
      for (const name of await readdir(incoming)) await run('chattr', ['-i', path.join(incoming, name, 'manifest.json')]);
    }
  });
});

test('an attempt already published or discarded by its run is no error', async () => {
  await withTempDir(async (dir) => {
    const repository = path.join(dir, 'repo');
    await initRepository(repository);
    await mkdir(path.join(repository, 'shop', '.incoming'), { recursive: true });
    await removeIncoming(repository, 'shop', 'job-7.1.0badc0de');
    assert.deepEqual(await readdir(path.join(repository, 'shop', '.incoming')), []);
  });
});
