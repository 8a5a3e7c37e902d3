/**
 * Crafted tar archives (test/helpers/crafted-tars.ts: malformed pax records,
 * pax and long-name headers with no entry after them, odd numeric fields, and
 * the deliberate strictness) judged by the part inspector beside GNU tar and
 * bsdtar, and four of them sent through a real sshd node as snapshot parts.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { InvalidArchiveError } from '../../src/errors.ts';
import { PartInspector } from '../../src/repository/part-inspector.ts';
import { waitForLog, withCluster } from '../helpers/cluster.ts';
import { craftedTarClasses, haveBsdtar, toolAccepts, verdictAsExpected, type CraftedTar } from '../helpers/crafted-tars.ts';
import { recordFault } from '../helpers/fault-report.ts';

/** The verdict of the inspector that ingest and `bysu verify` use. */
async function inspectorAccepts(archive: Buffer): Promise<boolean> {
  const inspector = new PartInspector('crafted.tar');
  try {
    await inspector.update(archive);
    await inspector.finish();
    return true;
  } catch (error) {
    inspector.discard();
    if (error instanceof InvalidArchiveError) return false;
    throw error;
  }
}

const skip = haveBsdtar() ? false : 'bsdtar is not installed (apt-get install libarchive-tools): nothing to compare with';

test('crafted tar archives: BYSU agrees with GNU tar and bsdtar where they agree, and refuses the deliberate cases', { skip }, async () => {
  const cases = craftedTarClasses().flatMap((crafted) => crafted.cases);
  let asExpected = 0;
  let shouldRefuse = 0;
  let refused = 0;
  const wrong: string[] = [];
  for (const { name, side, archive } of cases) {
    const verdicts = { gnu: toolAccepts('tar', archive), bsd: toolAccepts('bsdtar', archive), bysu: await inspectorAccepts(archive) };
    if (verdictAsExpected(side, verdicts)) asExpected += 1;
    else wrong.push(`${name} (${side})`);
    const refuse = side === 'strict' || (side === 'both' && !verdicts.gnu) || (side === 'gnu' && !verdicts.gnu) || (side === 'bsdtar' && !verdicts.bsd);
    if (refuse) {
      shouldRefuse += 1;
      if (!verdicts.bysu) refused += 1;
    }
  }

  // Four of them as the output of a node's dump command, through sshd, the worker and the commit.
  const byName = (prefix: string): CraftedTar => cases.find((crafted) => crafted.name.startsWith(prefix))!;
  const sent = [
    { app: 'paxnul', crafted: byName('pax: a NUL inside the keyword'), expect: /paxnul: FAILED .*malformed pax header at byte 0: the record at offset 0 has a NUL byte in its keyword/ },
    { app: 'orphan', crafted: byName('a file, then a x header'), expect: /orphan: FAILED .*the pax extended header at byte 1024 is followed by the end-of-archive marker/ },
    { app: 'twotars', crafted: byName('strict: `{ tar c a; tar c b; }`'), expect: /twotars: FAILED .*non-zero data after the end-of-archive marker/ },
    { app: 'nulsize', crafted: byName('size: one NUL before the octal digits ('), expect: /nulsize: committed / },
  ];
  const lines = await withCluster(['db1'], async (cluster) => {
    for (const { app, crafted } of sent) await writeFile(path.join(cluster.nodes[0]!.dir, `${app}.tar`), crafted.archive);
    await cluster.writeConfig(sent.map(({ app }) => ({ name: app, node: 'db1', attempts: 1, parts: [{ file: `${app}.tar`, run: `cat "$NODE_DIR/${app}.tar"` }] })));
    const worker = cluster.startWorker();
    await waitForLog(worker, 'worker started');
    // Generous: under load a node's login shell can take long (four jobs run one after another on one node).
    const result = await cluster.bysu(['snapshot', '--all', '--wait'], { timeoutMs: 400_000 });
    return result.stdout;
  });
  const sentAsExpected = sent.filter(({ expect }) => expect.test(lines)).length;

  recordFault({
    kind: 'input',
    fault: `${cases.length} crafted tar archives (bad pax records, orphan x/L/K headers, numeric fields, strictness)`,
    expected: 'GNU tar and bsdtar agree → BYSU agrees; the deliberate cases refused; 4 of them via sshd as expected',
    observed: `${asExpected}/${cases.length} verdicts as expected; ${refused}/${shouldRefuse} refused that should be; via sshd ${sentAsExpected}/${sent.length}`,
    pass: wrong.length === 0 && sentAsExpected === sent.length,
    tried: shouldRefuse,
    rejected: refused,
  });
  assert.deepEqual(wrong, [], 'verdicts not as expected');
  for (const { app, expect } of sent) assert.match(lines, expect, app);
});
