/**
 * `bysu config allow-list <node>`: print the allow-list of a node's forced
 * command (contrib/node/bysu-allow, installed by contrib/node/setup-node.sh):
 * the `run:` of each part of the apps on the node and of each drill step that
 * runs there, one per line under a `# app` comment, exactly as bysu.yaml has
 * them. The wrapper runs a command only when it is one whole line of that
 * list, byte for byte, so the list is printed from the config, never retyped.
 */
import type { Config } from '../config/load.ts';
import { ConfigError } from '../errors.ts';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, ExitError, loadCliConfig, type GlobalOptions } from './context.ts';

/** One command the node runs, and where bysu.yaml has it. */
interface NodeCommand {
  /** The config path, as load.ts names fields: `apps[shop].parts[shop.sql].run`. */
  field: string;
  run: string;
}

/** The control characters bysu-allow refuses in any command (all of C0, and DEL). */
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Given a command, return why bysu-allow could never run it, or null when it can. */
function whyNeverRun(run: string): string | null {
  const control = CONTROL.exec(run);
  if (control) {
    const character = control[0];
    const named: Record<string, string> = { '\n': 'a newline', '\r': 'a carriage return', '\t': 'a tab' };
    let what = named[character] ?? `the control character 0x${character.charCodeAt(0).toString(16).padStart(2, '0')}`;
    // `run: |` keeps one newline at the end: the commonest way to get one.
    if (character === '\n' && control.index === run.length - 1) what = 'a newline at its end (a YAML block scalar `|` keeps one; `|-` does not)';
    return `holds ${what}: bysu-allow refuses every command that holds a control character, so the node could never run it; `
      + 'write it on one line (a longer one: a script on the node, and its path here)';
  }
  // The wrapper reads a line whose first non-blank character is `#` as a comment.
  if (/^[ \t]*#/.test(run)) return 'starts with "#": bysu-allow reads such a line of its allow-list as a comment, so the node could never run it';
  return null;
}

/**
 * Given the config and a node name, return the text of the node's allow-list:
 * a header comment, then for each app in config order a `# <app>` comment and
 * the `run:` of its parts when the app is on the node, and a `# <app> (drill)`
 * comment and the `run:` of its drill steps when its drill runs there. Throws
 * ExitError (EXIT_USAGE) for an unknown node and (EXIT_FAILED) when nothing
 * runs on the node; ConfigError naming every `run:` the wrapper could never
 * match (a control character, a leading `#`).
 */
export function allowListText(config: Pick<Config, 'nodes' | 'apps'>, node: string): string {
  if (!config.nodes.some((each) => each.name === node)) {
    throw new ExitError(EXIT_USAGE, `unknown node "${node}" (configured: ${config.nodes.map((each) => each.name).join(', ') || 'none'})`);
  }
  const lines = [`# node ${node}: the commands BYSU may run there (bysu config allow-list ${node})`];
  const commands: NodeCommand[] = [];
  for (const app of config.apps) {
    const groups: { title: string; commands: NodeCommand[] }[] = [];
    if (app.node === node) {
      groups.push({ title: app.name, commands: app.parts.map((part) => ({ field: `apps[${app.name}].parts[${part.file}].run`, run: part.run })) });
    }
    if (app.drill?.node === node) {
      groups.push({ title: `${app.name} (drill)`, commands: app.drill.steps.map((step, index) => ({ field: `apps[${app.name}].drill.steps[${index}].run`, run: step.run })) });
    }
    for (const group of groups) {
      lines.push(`# ${group.title}`, ...group.commands.map((command) => command.run));
      commands.push(...group.commands);
    }
  }
  const problems = commands.flatMap(({ field, run }) => {
    const why = whyNeverRun(run);
    return why === null ? [] : [`${field}: ${why}`];
  });
  if (problems.length > 0) throw new ConfigError(problems);
  if (commands.length === 0) {
    throw new ExitError(EXIT_FAILED, `no app and no drill runs on node "${node}": its allow-list would have no commands, and its key could run nothing`);
  }
  return `${lines.join('\n')}\n`;
}

export function configAllowList(options: GlobalOptions, node: string): number {
  process.stdout.write(allowListText(loadCliConfig(options), node));
  return EXIT_OK;
}
