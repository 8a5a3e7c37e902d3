/**
 * Every command's --help ends with an example and its exit codes: what a
 * person reaches for first when a cron job or a script calls bysu.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Command } from 'commander';
import { buildProgram } from '../../../src/cli/main.ts';

/** Given the program, return every command that runs something (not a group like `config`), with its full name. */
function leafCommands(command: Command, prefix = ''): { name: string; command: Command }[] {
  return command.commands.flatMap((child) => {
    const name = `${prefix}${child.name()}`;
    return child.commands.length > 0 ? leafCommands(child, `${name} `) : [{ name, command: child }];
  });
}

test('every command\'s --help has an example and its exit status', () => {
  const commands = leafCommands(buildProgram(() => undefined));
  assert.ok(commands.length >= 14, `${commands.length} commands`);
  for (const { name, command } of commands) {
    let help = '';
    command.configureOutput({ writeOut: (text) => (help += text), writeErr: () => undefined });
    command.outputHelp();
    assert.match(help, /\nExamples?\b[^\n]*:\n(?: {2}[^\n]*\n)*? {2}[^\n]*\bbysu /, `bysu ${name} --help has an example`);
    assert.match(help, /\nExit status: 0 /, `bysu ${name} --help has its exit status`);
  }
});
