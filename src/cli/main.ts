/**
 * The `bysu` command line: parses arguments, runs one subcommand, and turns
 * what it returns or throws into an exit status (0 ok, 1 failed, 2 usage or
 * configuration error, or a repository that is missing or not marked) with a
 * one-line message instead of a stack trace.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { BysuError, ConfigError, RepositoryUnavailableError } from '../errors.ts';
import { BYSU_VERSION } from '../version.ts';
import { EXIT_FAILED, EXIT_USAGE, ExitError, type GlobalOptions } from './context.ts';
import { releaseHeldSighup } from './run-until-signal.ts';

function parseWorkerIndex(value: string): number {
  const index = Number(value);
  if (!Number.isInteger(index) || index < 1) throw new InvalidArgumentError('must be a whole number of at least 1');
  return index;
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError('must be a port number from 1 to 65535');
  return port;
}

/**
 * Build the program; `run` receives each command's exit status. Each command's
 * module is loaded only when it runs, so a worker process does not carry the
 * dashboard's Express and Bull Board (tens of MiB) or the other way round.
 */
export function buildProgram(run: (status: Promise<number>) => void): Command {
  const program = new Command('bysu')
    .description('BYSU: pull-based backups of small Linux clusters over SSH')
    .version(BYSU_VERSION)
    .option('-c, --config <file>', 'config file (default: $BYSU_CONFIG, else ./bysu.yaml)')
    .showHelpAfterError('(run bysu --help for usage)')
    .exitOverride();
  const globals = (): GlobalOptions => program.opts<GlobalOptions>();

  const config = program.command('config').description('check the configuration, or print its JSON Schema');
  config.command('check')
    .description('validate the config file; with --connect also log in to every node and check its host key')
    .option('--connect', 'log in to every node')
    .addHelpText('after', `
Besides the file itself it checks, and reports all at once, one line each,
what would later refuse to start or run:
  - the dashboard listening beyond loopback without a password, or on an
    address this machine does not have;
  - the repository: missing, not a directory, no BYSU marker (run bysu init),
    or not writable by the user running the check (it says which user: run it
    as the user the workers run as; root passes wherever the disk is writable);
  - the SSH key: missing, unreadable, not a file, readable by group or others,
    or not a usable unencrypted private key;
  - ssh.knownHosts that exists but cannot be read;
  - a node whose host key is neither pinned nor in ssh.knownHosts under the
    name ssh looks up ([host]:port when the port is not 22).
It reads the same environment (BYSU_*) as the processes: run it with theirs.

Exit status: 0 all good, 1 --connect could not log in to some node,
2 a problem above or in the file.`)
    .action((options: { connect?: boolean }) => run(import('./config-check.ts').then((command) => command.configCheck(globals(), options))));
  config.command('schema')
    .description('print the JSON Schema (draft-07) of the config file, for editors; the repository has it as bysu.schema.json')
    .addHelpText('after', `
The schema is generated from the same declaration the loader checks against.
With the YAML extension of VS Code (or any yaml-language-server editor), the
first line of bysu.yaml names it:

  # yaml-language-server: $schema=./bysu.schema.json

It checks types, patterns, ranges and unknown keys as you type; bysu config
check stays the authority (cron fields, time zones, an app's node exists).

Example:
  bysu config schema > bysu.schema.json`)
    .action(() => run(import('./config-schema.ts').then((command) => command.configSchema())));

  program.command('init')
    .description('make the configured repository a BYSU repository (run once, by hand; idempotent)')
    .option('--adopt', 'also mark a directory that already holds BYSU app directories (a repository from before markers)')
    .addHelpText('after', `
Creates the repository directory (mode 0700; its parent must exist) and writes
<repository>/.bysu-repository, the marker every worker, command and the dashboard
requires. An empty directory (or one holding only lost+found) is marked; a root
that already has a marker is left alone. A non-empty directory without a marker
is refused (with --adopt: accepted when it holds only BYSU app directories).

Never run it automatically at boot: on a mount point whose disk is not mounted
it would make the empty directory a repository, which is what the marker guards
against. Mount the disk first, then run it once.

Example:
  sudo -u bysu bysu init          # after mounting the backup disk at /var/lib/bysu

Exit status: 0 initialised or already a repository, 1 refused (the message says
why and what to do), 2 configuration error.`)
    .action((options: { adopt?: boolean }) => run(import('./init.ts').then((command) => command.init(globals(), options))));

  program.command('keyscan')
    .description('print the host key fingerprints (SHA256:…) of an SSH server, to pin')
    .argument('<host>')
    .addOption(new Option('--port <n>', 'SSH port').default(22).argParser(parsePort))
    .addOption(new Option('--timeout <ms>', 'connect timeout in ms').default(10_000).argParser(Number))
    .action((host: string, options: { port: number; timeout: number }) => run(import('./keyscan.ts').then((command) => command.keyscan(host, options))));

  program.command('snapshot')
    .description('enqueue a snapshot now; --wait shows progress and exits 0/1 on the outcome')
    .argument('[apps...]')
    .option('--all', 'every configured app')
    .option('--wait', 'wait for the outcome')
    .action((apps: string[], options: { all?: boolean; wait?: boolean }) => run(import('./snapshot.ts').then((command) => command.snapshot(globals(), apps, options))));

  program.command('drill')
    .description('restore drill: stream the newest snapshot into the drill steps now; --wait exits 0/1 on the outcome')
    .argument('[apps...]')
    .option('--all', 'every app with a drill')
    .option('--wait', 'wait for the outcome')
    .action((apps: string[], options: { all?: boolean; wait?: boolean }) => run(import('./drill.ts').then((command) => command.drill(globals(), apps, options))));

  program.command('list')
    .description('complete snapshots of an app, newest first')
    .argument('<app>')
    .option('--json', 'machine-readable output')
    .action((app: string, options: { json?: boolean }) => run(import('./list.ts').then((command) => command.list(globals(), app, options))));

  program.command('latest')
    .description('absolute path of the newest complete snapshot (exit 1 if none)')
    .argument('<app>')
    .action((app: string) => run(import('./latest.ts').then((command) => command.latest(globals(), app))));

  program.command('verify')
    .description('re-hash snapshots against SHA256SUMS and re-validate tars now; exit 1 on any mismatch (recorded in <app>/.last-verify.json: status calls the app CORRUPT while a damaged snapshot is kept)')
    .argument('[apps...]')
    .option('--all', 'every configured app')
    .addHelpText('after', `
Every complete snapshot of each app is read, newest first: each file listed in
SHA256SUMS is hashed again (a missing file, a checksum or size that does not
agree with SHA256SUMS or the manifest is a failure), and tar parts are
validated again. The verify worker (bysu worker verify, or bysu up) does the
same on verify.schedule (weekly by default), no faster than
verify.maxBytesPerSecond; this command reads as fast as the disk goes.

The verdicts are merged into <app>/.last-verify.json (readable without BYSU or
Redis) and the app's summary. While a kept snapshot is damaged, bysu status
calls the app CORRUPT, names the file and exits 1, /metrics has
bysu_app_damaged_snapshots, and the webhook gets "corrupt" once (from the
scheduler's next check). It clears when retention deletes the snapshot or a
later verification finds it whole again (after a repair).

Exit status: 0 every snapshot verified, 1 a snapshot is damaged, 2 usage or
configuration error, or a repository that is missing or not marked.`)
    .action((apps: string[], options: { all?: boolean }) => run(import('./verify.ts').then((command) => command.verify(globals(), apps, options))));

  program.command('status')
    .description('per app: last snapshot, age, size, next run, last error; exit 1 if any stale, failing or corrupt')
    .option('--json', 'machine-readable output')
    .action((options: { json?: boolean }) => run(import('./status.ts').then((command) => command.status(globals(), options))));

  program.command('prune')
    .description('apply retention now (or show what it would delete)')
    .argument('[apps...]')
    .option('--all', 'every configured app')
    .option('--dry-run', 'only show what would be deleted')
    .action((apps: string[], options: { all?: boolean; dryRun?: boolean }) => run(import('./prune.ts').then((command) => command.prune(globals(), apps, options))));

  program.command('up')
    .description('scheduler, the four workers (snapshot, retention, drill, verify) and the dashboard on one machine; SIGHUP reloads the config')
    .addHelpText('after', `
The dashboard, the scheduler and the retention, drill and verify workers run
in this process; the snapshot worker runs in up.snapshotWorkers processes of its own
(default: one per CPU core, no more than concurrency.global / perWorker), or
in this process when that is 1. SIGHUP and SIGTERM are passed on to them; one
that dies is started again, and they stop when this process is gone.`)
    .action(() => run(import('./up.ts').then((command) => command.up(globals()))));

  program.command('dashboard')
    .description('Bull Board, /healthz, /metrics and the read-only /api; SIGHUP reloads the config')
    .action(() => run(import('./dashboard.ts').then((command) => command.dashboard(globals()))));

  program.command('scheduler')
    .description('run the scheduler: job schedulers from the config (reloaded on SIGHUP), heartbeat, stale and damaged-snapshot alerts')
    .action(() => run(import('./scheduler.ts').then((command) => command.scheduler(globals()))));

  program.command('worker')
    .description('run a worker process (snapshot, retention, drill or verify); SIGHUP reloads the config')
    .argument('<kind>', 'snapshot, retention, drill or verify')
    // Set by `bysu up` for the worker processes it runs: their log lines carry it.
    .addOption(new Option('--worker-index <n>').hideHelp().argParser(parseWorkerIndex))
    .action((kind: string, options: { workerIndex?: number }) => run(import('./worker.ts').then((command) => command.worker(globals(), kind, options))));

  return program;
}

/** Given a thrown error, print it in one line (or one line per config problem) and return the exit status. */
export function reportError(error: unknown): number {
  if (error instanceof ExitError) {
    console.error(`bysu: ${error.message}`);
    return error.status;
  }
  if (error instanceof RepositoryUnavailableError) {
    // Nothing was tried: like a configuration error, the setup has to change (mount the disk, run bysu init).
    console.error(`bysu: ${error.message}`);
    return EXIT_USAGE;
  }
  if (error instanceof ConfigError) {
    for (const problem of error.problems) console.error(`bysu: config: ${problem}`);
    return EXIT_USAGE;
  }
  if (error instanceof BysuError) {
    console.error(`bysu: ${error.message}`);
    return EXIT_FAILED;
  }
  const message = error instanceof Error ? error.message : String(error);
  console.error(`bysu: ${message}`);
  if (process.env.BYSU_DEBUG && error instanceof Error) console.error(error.stack);
  return EXIT_FAILED;
}

/** The commands that run until a signal, and reload their config on SIGHUP. */
const LONG_RUNNING = new Set(['up', 'dashboard', 'scheduler', 'worker']);

/** Run `bysu` with argv; resolves to the exit status. */
export async function main(argv: string[]): Promise<number> {
  let pending: Promise<number> | null = null;
  const program = buildProgram((status) => {
    pending = status;
  });
  // bin/bysu.js holds SIGHUP while it loads; a one-shot command ends on it, as any command would.
  program.hook('preAction', (_program, command) => {
    if (!LONG_RUNNING.has(command.name())) releaseHeldSighup();
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help, --version and `bysu help` exit 0; help shown because a subcommand is missing is a usage error.
      return error.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    return reportError(error);
  }
  if (pending === null) {
    program.outputHelp();
    return EXIT_USAGE;
  }
  try {
    return await pending;
  } catch (error) {
    return reportError(error);
  }
}
