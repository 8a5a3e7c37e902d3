/**
 * The README's docker compose steps, as the compose test runs them: the two
 * ```sh blocks after the `<!-- compose-steps: prepare -->` and
 * `<!-- compose-steps: start -->` markers, with only what a reader fills in
 * filled in: `/path/to/` becomes the directory of the test's key and
 * known_hosts. A prelude
 * stands in for what this machine lacks and a reader's has: `sudo` when
 * running as root without it, and `docker compose` (v2) as Debian's
 * `docker-compose --compatibility` (v1). A step whose placeholder is gone
 * fails the test, naming it: the docs changed, and so must this.
 */
import path from 'node:path';

export interface ComposeSteps {
  /** The ssh directory and the config copied (before the operator's edit). */
  prepare: string;
  /** The stack started and asked for its status. */
  start: string;
}

function block(readme: string, marker: string): string {
  const at = readme.indexOf(`<!-- compose-steps: ${marker}`);
  if (at < 0) throw new Error(`README.md has no "<!-- compose-steps: ${marker}" marker: the compose test runs the README's steps from it`);
  const match = /```sh\n([\s\S]*?)```/.exec(readme.slice(at));
  if (!match) throw new Error(`README.md: no \`\`\`sh block after the compose-steps: ${marker} marker`);
  return match[1]!;
}

/** Given README.md's text, the key files and the compose command, the two scripts to run with bash. */
export function readmeComposeSteps(readme: string, options: { identityFile: string; knownHosts: string; compose: string[] }): ComposeSteps {
  const keyDir = path.dirname(options.identityFile);
  if (path.dirname(options.knownHosts) !== keyDir) throw new Error('the key and known_hosts must share a directory (the README copies both from /path/to/)');
  const prepare = block(readme, 'prepare');
  if (!prepare.includes('/path/to/')) throw new Error('the README\'s compose steps no longer copy from /path/to/: update test/compose/readme-steps.ts');
  const start = block(readme, 'start');
  const v2 = options.compose.length === 2 && options.compose[1] === 'compose';
  const prelude = [
    'command -v sudo > /dev/null || sudo() { "$@"; }',
    v2 ? '' : `docker() { if [ "$1" = compose ]; then shift; ${options.compose.join(' ')} "$@"; else command docker "$@"; fi; }`,
  ].join('\n');
  return {
    prepare: `${prelude}\n${prepare.replaceAll('/path/to/', `${keyDir}/`)}`,
    start: `${prelude}\n${start}`,
  };
}
