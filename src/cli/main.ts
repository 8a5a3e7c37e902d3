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

  const config = program.command('config').description('check the configuration, print its JSON Schema, or print the allow-list of a node');
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
    name ssh looks up ([host]:port when the port is not 22);
  - email alerts (notify.email): the variable passwordEnv names not set or
    empty, a caFile that cannot be read or holds no certificate.
It reads the same environment (BYSU_*, the SMTP password's variable) as the
processes: run it with theirs.

Example:
  sudo -u bysu bysu config check --connect

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
  bysu config schema > bysu.schema.json

Exit status: 0 printed.`)
    .action(() => run(import('./config-schema.ts').then((command) => command.configSchema())));
  config.command('allow-list')
    .description('print the commands a node may run, for its allow-list (/etc/bysu/allowed-commands; see contrib/node/setup-node.sh)')
    .argument('<node>')
    .addHelpText('after', `
Prints the allow-list of the node's forced command, bysu-allow: the run: of
each part of the apps on the node, and of each drill step that runs there, one
per line under a "# app" (or "# app (drill)") comment, exactly as bysu.yaml has
them. bysu-allow runs a command only when it is one whole line of that list,
byte for byte, so print the list rather than retype it. A run: that bysu-allow
could never match is refused, naming it: one holding a newline (a YAML block
scalar "|" ends with one), a tab or another control character, or starting
with "#".

Example (node db1, from the BYSU checkout on the backup server):
  bysu config allow-list db1 > db1.allowed-commands
  scp contrib/node/setup-node.sh contrib/node/bysu-allow /etc/bysu/id_ed25519.pub db1.allowed-commands root@db1:
  ssh root@db1 sh setup-node.sh --key-file id_ed25519.pub --allow-list db1.allowed-commands

Run it again, and the script, when the apps of a node change.

Exit status: 0 printed, 1 no app or drill runs on the node (nothing printed),
2 an unknown node, a run: the node could never run, or a configuration error.`)
    .action((node: string) => run(import('./config-allow-list.ts').then((command) => command.configAllowList(globals(), node))));

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
    .addHelpText('after', `
Example:
  bysu keyscan db1.example.com        # then pin the SHA256:… under the node's hostKeys

Exit status: 0 printed, 1 the server could not be reached or sent no key.`)
    .action((host: string, options: { port: number; timeout: number }) => run(import('./keyscan.ts').then((command) => command.keyscan(host, options))));

  program.command('snapshot')
    .description('enqueue a snapshot now; --wait shows progress and exits 0/1 on the outcome')
    .argument('[apps...]')
    .option('--all', 'every configured app')
    .option('--wait', 'wait for the outcome, showing progress')
    .option('--json', 'print the job ids (with --wait: each outcome) as JSON, nothing else')
    .addHelpText('after', `
With --wait it shows each running part with its elapsed time, rate and, from
the size of the app's previous snapshot, about how long is left; a job that
waits says why (its node at its concurrency.perNode limit, or no snapshot
worker running). Colour on a terminal; none when NO_COLOR is set or the output
is not a terminal.

Examples:
  bysu snapshot shop --wait
  bysu snapshot --all --wait --json | jq '.[] | select(.ok | not)'

Exit status: 0 enqueued (with --wait: every snapshot committed), 1 a snapshot
failed for good or Redis was lost while waiting, 2 usage, configuration or
repository error (nothing was enqueued).`)
    .action((apps: string[], options: { all?: boolean; wait?: boolean; json?: boolean }) => run(import('./snapshot.ts').then((command) => command.snapshot(globals(), apps, options))));

  program.command('drill')
    .description('restore drill: stream the newest snapshot into the drill steps now; --wait exits 0/1 on the outcome')
    .argument('[apps...]')
    .option('--all', 'every app with a drill')
    .option('--wait', 'wait for the outcome')
    .option('--json', 'print the job ids (with --wait: each outcome) as JSON, nothing else')
    .addHelpText('after', `
Examples:
  bysu drill shop --wait
  bysu drill --all --wait --json

Exit status: 0 enqueued (with --wait: every drill passed), 1 a drill failed or
Redis was lost while waiting, 2 usage or configuration error, or an app without
a drill.`)
    .action((apps: string[], options: { all?: boolean; wait?: boolean; json?: boolean }) => run(import('./drill.ts').then((command) => command.drill(globals(), apps, options))));

  program.command('mirror')
    .description('copy now what a mirror\'s source (another BYSU, mirrors: in the config) has and this repository lacks; --wait exits 0/1 on the outcome')
    .argument('[mirrors...]')
    .option('--all', 'every configured mirror')
    .option('--wait', 'wait for the outcome')
    .option('--json', 'print the job ids (with --wait: each outcome) as JSON, nothing else')
    .addHelpText('after', `
A mirror worker (bysu worker mirror, or bysu up) does the copying; the
scheduler runs each mirror on mirrors[].schedule (hourly by default).

Examples:
  bysu mirror home --wait
  bysu mirror --all --wait --json

Exit status: 0 enqueued (with --wait: every run copied what it should), 1 a run
failed (the apps and files are named) or Redis was lost while waiting, 2 usage
or configuration error.`)
    .action((mirrors: string[], options: { all?: boolean; wait?: boolean; json?: boolean }) => run(import('./mirror.ts').then((command) => command.mirror(globals(), mirrors, options))));

  program.command('list')
    .description('complete snapshots of an app (or of every configured app), newest first')
    .argument('[app]')
    .option('--all', 'every configured app, each line starting with its name')
    .option('--json', 'machine-readable output: one object per snapshot, with its app')
    .addHelpText('after', `
Examples:
  bysu list shop
  bysu list --all --json

Exit status: 0 listed (also when there is none), 2 usage, configuration or
repository error.`)
    .action((app: string | undefined, options: { all?: boolean; json?: boolean }) => run(import('./list.ts').then((command) => command.list(globals(), app, options))));

  program.command('latest')
    .description('absolute path of the newest complete snapshot (exit 1 if none)')
    .argument('<app>')
    .option('--json', 'its id, path, finish time, size and parts as JSON')
    .addHelpText('after', `
Example:
  cd "$(bysu latest shop)" && sha256sum -c SHA256SUMS

Exit status: 0 printed, 1 the app has no complete snapshot, 2 usage,
configuration or repository error.`)
    .action((app: string, options: { json?: boolean }) => run(import('./latest.ts').then((command) => command.latest(globals(), app, options))));

  program.command('restore')
    .description('check a snapshot\'s files against SHA256SUMS and copy them (or extract its tar parts) into a new directory')
    .argument('<app>')
    .option('--snapshot <id>', 'the snapshot to restore (see bysu list <app>; default: the newest complete one, as bysu latest)')
    .option('--to <dir>', 'directory to create (or an empty one to fill; default: ./<app>-<snapshot id>)')
    .addOption(new Option('--part <file>', 'restore only this part (repeat for more)').argParser((file: string, files: string[]) => [...files, file]).default([], 'every part'))
    .option('--extract', 'extract tar parts (*.tar, *.tar.gz, *.tgz) with GNU tar instead of copying them')
    .addHelpText('after', `
Every chosen file is first read whole and checked against the snapshot's
SHA256SUMS (which must also list manifest.json, checked too, and every part the
manifest names); only then is it copied, hashed again on the way, into a hidden
staging directory beside the target, which is renamed to the target's name once
everything is written and on disk. So the target never holds a partial or
unchecked restore: after a failure or Ctrl-C it does not exist (or, if it was
an empty directory, stays empty). A target that is not empty is refused.

Without --extract the target gets the files, manifest.json and a SHA256SUMS of
what it holds (the snapshot's own lines), so that sha256sum -c SHA256SUMS in it
checks the copy. With --extract a tar part is extracted in place of its copy,
as tar -C <dir> -xf would, and no listing is written. An archive is refused
(nothing extracted) when an entry has an absolute path or a "..", or a link
would point outside the target; two parts holding the same file are refused
too (tar --keep-old-files). Owners and modes are tar's defaults (kept as root).

Examples:
  bysu restore shop                                # ./shop-<id>: every part of the newest snapshot
  bysu restore shop --part shop.sql --to /tmp/r    # one file, into /tmp/r
  bysu restore shop --snapshot 20261126T021500Z --part uploads.tar --extract --to /srv/shop.restored

It prints what it wrote where, and the command to load each file
(psql … < DIR/shop.sql). It reads only the config and the repository: it
works while Redis is down.

Exit status: 0 restored; 1 a file does not match SHA256SUMS (it is named), the
snapshot is incomplete, an archive is unsafe or tar failed, or the app has no
complete snapshot: nothing restored; 2 unknown app, snapshot id or part, a
target that exists and is not empty, or a repository that is not mounted.`)
    .action((app: string, options: { snapshot?: string; to?: string; part: string[]; extract?: boolean }) => run(import('./restore.ts').then((command) => command.restore(globals(), app, options))));

  program.command('cat')
    .description('write one file of a snapshot to stdout, checked against SHA256SUMS (e.g. bysu cat shop shop.sql | psql staging)')
    .argument('<app>')
    .argument('<file>', 'a part of the snapshot, or manifest.json')
    .option('--snapshot <id>', 'the snapshot to read (see bysu list <app>; default: the newest complete one, as bysu latest)')
    .addHelpText('after', `
Output cannot be taken back once written, so the file is read twice: first
whole, checked against SHA256SUMS (a damaged file writes nothing at all and
exits 1), then written to stdout while it is hashed again. Should the file
change between the two reads (someone writing into the repository), the
command still exits 1 at the end with "the output is NOT to be trusted" on
stderr: what the reader got must then be discarded. In a shell pipeline that
status is only seen with set -o pipefail (bash) or by checking it.

Example (a staging refresh):
  set -o pipefail
  bysu cat shop shop.sql | psql -v ON_ERROR_STOP=1 staging

The price of the first read is reading the file twice (the second mostly from
the page cache). It reads only the config and the repository: it works while
Redis is down.

Exit status: 0 the whole file was written and matched; 1 a mismatch (nothing
written, or, if it changed while being written, the output is not to be
trusted), the reader closed the pipe early, or no complete snapshot; 2 unknown
app, snapshot id or file, or a repository that is not mounted.`)
    .action((app: string, file: string, options: { snapshot?: string }) => run(import('./cat.ts').then((command) => command.cat(globals(), app, file, options))));

  program.command('verify')
    .description('re-hash snapshots against SHA256SUMS and re-validate tars now; exit 1 on any mismatch (recorded in <app>/.last-verify.json: status calls the app CORRUPT while a damaged snapshot is kept)')
    .argument('[apps...]')
    .option('--all', 'every configured app')
    .option('--snapshot <id>', 'only this snapshot of the one app named')
    .option('--json', 'each snapshot\'s verdict as JSON, nothing else')
    .addHelpText('after', `
Every complete snapshot of each app (or the one --snapshot names) is read, newest first: each file listed in
SHA256SUMS is hashed again (a missing file, a checksum or size that does not
agree with SHA256SUMS or the manifest is a failure), and tar parts are
validated again. The verify worker (bysu worker verify, or bysu up) does the
same on verify.schedule (weekly by default), no faster than
verify.maxBytesPerSecond; this command reads as fast as the disk goes.
A mirror's copies are verified too: by name, and with --all (and by the
verify worker, on verify.schedule, one job per mirror).

The verdicts are merged into <app>/.last-verify.json (readable without BYSU or
Redis) and the app's summary. While a kept snapshot is damaged, bysu status
calls the app CORRUPT, names the file and exits 1, /metrics has
bysu_app_damaged_snapshots, and the webhook gets "corrupt" once (from the
scheduler's next check). It clears when retention deletes the snapshot or a
later verification finds it whole again (after a repair).

Examples:
  bysu verify --all
  bysu verify shop --snapshot 20261126T021500Z --json

Exit status: 0 every snapshot verified, 1 a snapshot is damaged, 2 usage or
configuration error, or a repository that is missing or not marked.`)
    .action((apps: string[], options: { all?: boolean; snapshot?: string; json?: boolean }) => run(import('./verify.ts').then((command) => command.verify(globals(), apps, options))));

  program.command('status')
    .description('per app: last snapshot, age, size, next run, last error; exit 1 if any stale, failing or corrupt (named apps: only those)')
    .argument('[apps...]')
    .option('--json', 'machine-readable output')
    .addHelpText('after', `
Examples:
  bysu status
  bysu status shop ledger
  bysu status --json | jq '.apps[] | select(.state != "ok") | .app'

Exit status: 0 every app shown healthy and a scheduler alive, 1 an app stale,
failing or with a problem (a failed drill, a damaged snapshot, no scheduler),
or Redis unreachable, 2 an unknown app, configuration or repository error.`)
    .action((apps: string[], options: { json?: boolean }) => run(import('./status.ts').then((command) => command.status(globals(), apps, options))));

  program.command('prune')
    .description('apply retention now (or show what it would delete)')
    .argument('[apps...]')
    .option('--all', 'every configured app')
    .option('--dry-run', 'only show what would be deleted')
    .option('--json', 'print what was (or would be) kept and deleted per app as JSON')
    .addHelpText('after', `
Examples:
  bysu prune --all --dry-run
  bysu prune shop

Exit status: 0 applied (or shown), 1 retention failed for an app (named),
2 usage, configuration or repository error.`)
    .action((apps: string[], options: { all?: boolean; dryRun?: boolean; json?: boolean }) => run(import('./prune.ts').then((command) => command.prune(globals(), apps, options))));

  program.command('up')
    .description('scheduler, the five workers (snapshot, retention, drill, verify, mirror) and the dashboard on one machine; SIGHUP reloads the config')
    .addHelpText('after', `
The dashboard, the scheduler and the retention, drill, verify and mirror workers run
in this process; the snapshot worker runs in up.snapshotWorkers processes of its own
(default: one per CPU core, no more than concurrency.global / perWorker), or
in this process when that is 1. SIGHUP and SIGTERM are passed on to them; one
that dies is started again, and they stop when this process is gone.

Example:
  bysu up                   # the whole of BYSU on one server; systemd: contrib/systemd/bysu-up.service

Exit status: 0 stopped by SIGTERM or SIGINT, 1 it could not start or run,
2 configuration or repository error.`)
    .action(() => run(import('./up.ts').then((command) => command.up(globals()))));

  program.command('dashboard')
    .description('the overview of apps and nodes at /, Bull Board at /board/, /healthz, /metrics and the read-only /api; SIGHUP reloads the config')
    .addHelpText('after', `
Example:
  bysu dashboard            # then open http://127.0.0.1:3000/ (dashboard.host, dashboard.port)

Exit status: 0 stopped by SIGTERM or SIGINT, 1 it could not start or run,
2 configuration error (e.g. listening beyond loopback without a password).`)
    .action(() => run(import('./dashboard.ts').then((command) => command.dashboard(globals()))));

  program.command('scheduler')
    .description('run the scheduler: job schedulers from the config (reloaded on SIGHUP), heartbeat, stale and damaged-snapshot alerts')
    .addHelpText('after', `
Example:
  bysu scheduler            # one per deployment is enough; more are safe

Exit status: 0 stopped by SIGTERM or SIGINT, 1 it could not start or run,
2 configuration or repository error.`)
    .action(() => run(import('./scheduler.ts').then((command) => command.scheduler(globals()))));

  program.command('worker')
    .description('run a worker process (snapshot, retention, drill, verify or mirror); SIGHUP reloads the config')
    .argument('<kind>', 'snapshot, retention, drill, verify or mirror')
    // Set by `bysu up` for the worker processes it runs: their log lines carry it.
    .addOption(new Option('--worker-index <n>').hideHelp().argParser(parseWorkerIndex))
    .addHelpText('after', `
Example:
  bysu worker snapshot      # as many as you like, on this or other machines

Exit status: 0 stopped by SIGTERM or SIGINT (running jobs finished or handed
back), 1 it could not start or run, 2 configuration or repository error.`)
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
  // A reader that went away (`bysu status | head`) ends the output, not the command: what is left is not
  // printed, and the command still ends with its own exit status (a script with pipefail sees it).
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
  });
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
