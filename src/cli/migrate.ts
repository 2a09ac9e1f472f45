/**
 * `database migrate …`: apply, revert, list and create migrations. The database comes from the
 * environment (DATABASE_URL / PG* / DB_STORAGE), as for createDb().
 */
import { resolve, sep } from 'node:path';
import { loadConfig } from '../db/config.ts';
import { createDb } from '../db/create-db.ts';
import {
  createMigrationFiles,
  DEFAULT_MIGRATIONS_DIR,
  migrate,
  migrateDown,
  migrationStatus,
  readMigrationFiles,
  type MigrationStatus,
  type MigratorOptions,
} from '../db/migrator.ts';
import { describeTarget } from '../db/target.ts';
import { noExtraArguments, parseCommandLine, UsageError } from './args.ts';
import { askYesNo, canAsk } from './confirm.ts';
import { EXIT } from './run-cli.ts';
import { embeddedStoreMissing } from './embedded-store.ts';

const DIR = '  --dir PATH       the migrations folder (default: the package\'s migrations/sql)';

const USAGE_UP = `usage: database migrate [up] [--to NAME] [--dir PATH]

Applies every pending migration, each in its own transaction with its ledger row, serialized
with other migrators by an advisory lock. Refuses to run when an applied file was edited or deleted.

  --to NAME        apply the pending migrations up to and including NAME only
${DIR}`;

const USAGE_DOWN = `usage: database migrate down [--to NAME | --all] [--yes] [--dir PATH]

Reverts the newest applied migration (its .down.sql, in one transaction), or down to and including
NAME, or every one. Shows the target and the migrations to revert and asks on a terminal; without
a terminal it refuses (exit 1, nothing changed) unless --yes is given.

  --to NAME        revert down to and including NAME
  --all            revert every applied migration (drops every table)
  --yes, -y        do not ask
${DIR}`;

const USAGE_STATUS = `usage: database migrate status [--json] [--dir PATH]

Lists every migration: applied, pending, changed (applied, file edited since) or missing (applied,
file gone), with checksums, and flags a migration whose .down.sql is missing, or changed since its
up ran. Exit 1 when one is changed or missing, or a down file changed.

  --json           print {"target", "migrations": [...]} on stdout instead (the target line goes to stderr)
${DIR}`;

const USAGE_CREATE = `usage: database migrate create NAME [--dir PATH]

Writes NNNN_NAME.up.sql and NNNN_NAME.down.sql with the next free number. NAME is lowercase
snake_case, verb first (add_users_locale), and not already taken by another migration.

${DIR}`;

/** Every form of `database migrate`, for `database migrate --help`. */
export const MIGRATE_USAGE = `usage: database migrate [up] [--to NAME]                   apply pending migrations
       database migrate down [--to NAME | --all] [--yes]   revert migrations (asks first)
       database migrate status [--json]                    applied, pending, changed, missing
       database migrate create NAME                        write the next NNNN_NAME.{up,down}.sql

  every form takes --dir PATH (the migrations folder; default: the package's migrations/sql)
  database migrate SUBCOMMAND --help                       more about one of them`;

const USAGES: Record<string, string> = { up: USAGE_UP, down: USAGE_DOWN, status: USAGE_STATUS, create: USAGE_CREATE };
// The flags each subcommand accepts (besides --help and --dir).
const FLAGS: Record<string, string[]> = { up: ['to'], down: ['to', 'all', 'yes'], status: ['json'], create: [] };

/** Runs `database migrate ARGS…`; resolves to the exit code. */
export async function runMigrate(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(
    args,
    {
      to: { type: 'string' },
      all: { type: 'boolean' },
      yes: { type: 'boolean', short: 'y' },
      json: { type: 'boolean' },
      dir: { type: 'string' },
    },
    MIGRATE_USAGE,
  );
  const [command = 'up', ...rest] = positionals;
  const usage = USAGES[command];
  if (usage === undefined) {
    if (values.help) {
      console.log(MIGRATE_USAGE);
      return EXIT.ok;
    }
    throw new UsageError(`unknown subcommand ${JSON.stringify(command)}`, MIGRATE_USAGE);
  }
  if (values.help) {
    console.log(positionals.length === 0 ? MIGRATE_USAGE : usage);
    return EXIT.ok;
  }
  for (const flag of ['to', 'all', 'yes', 'json'] as const) {
    if (values[flag] !== undefined && !FLAGS[command]!.includes(flag)) {
      throw new UsageError(`--${flag} does not go with migrate ${command}`, usage);
    }
  }
  if (values.to !== undefined && values.all) throw new UsageError('give --to or --all, not both', usage);
  const options: MigratorOptions = {
    ...(values.dir === undefined ? {} : { migrationsDir: resolve(values.dir) }),
    log: (line) => console.log(line),
  };

  if (command === 'create') {
    const name = rest[0];
    if (name === undefined) throw new UsageError('create takes a NAME', usage);
    noExtraArguments(rest, 1, usage);
    const dir = options.migrationsDir ?? DEFAULT_MIGRATIONS_DIR;
    if (values.dir === undefined && dir.split(sep).includes('node_modules')) {
      throw new Error(
        `refusing to write into the installed package (${dir}): this package's migrations are written in its ` +
          `own repository. Give --dir PATH for a folder of your own.`,
      );
    }
    for (const path of createMigrationFiles(name, { migrationsDir: dir })) console.log(`created ${path}`);
    return EXIT.ok;
  }
  noExtraArguments(rest, 0, usage);

  const config = loadConfig();
  const target = describeTarget(config);
  if (command === 'status') return status(config, target, options, values.json === true);
  console.log(target);
  const db = createDb(config);
  try {
    if (command === 'up') {
      const applied = await migrate(db, { ...options, ...(values.to === undefined ? {} : { to: values.to }) });
      console.log(applied.length === 0 ? 'up to date' : `applied ${applied.length} migration${applied.length === 1 ? '' : 's'}`);
      return EXIT.ok;
    }
    let refused = false;
    const reverted = await migrateDown(db, values.all ? { to: 0 } : values.to === undefined ? {} : { to: values.to }, {
      ...options,
      confirm: async (names) => {
        if (values.yes) return true;
        const list = names.map((name) => `  ${name}`).join('\n');
        const what = `${names.length} migration${names.length === 1 ? '' : 's'}`;
        if (!canAsk()) {
          console.error(
            `would revert ${what} on ${target}, newest first:\n${list}\n` +
              `refusing without a terminal to confirm: nothing was reverted. Add --yes to revert without asking.`,
          );
          refused = true;
          return false;
        }
        console.log(`about to revert ${what}, newest first (what they created is dropped, with its data):\n${list}`);
        const yes = await askYesNo(`revert ${what} on ${target}?`);
        if (!yes) {
          console.log('nothing was reverted');
          refused = true;
        }
        return yes;
      },
    });
    if (refused) return EXIT.failed;
    console.log(reverted.length === 0 ? 'nothing to revert' : `reverted ${reverted.join(', ')}`);
    return EXIT.ok;
  } finally {
    await db.destroy();
  }
}

async function status(
  config: ReturnType<typeof loadConfig>,
  target: string,
  options: MigratorOptions,
  json: boolean,
): Promise<number> {
  (json ? console.error : console.log)(target);
  let list: MigrationStatus[];
  if (embeddedStoreMissing(config)) {
    // Opening the store would create it: a status must not. Every file is pending.
    list = readMigrationFiles(options.migrationsDir).map((file) => ({
      name: file.name,
      state: 'pending',
      checksum: file.checksum,
      appliedChecksum: undefined,
      appliedAt: undefined,
      durationMs: undefined,
      downFileMissing: !file.hasDownFile,
      downChecksum: file.downChecksum,
      appliedDownChecksum: undefined,
      downFileChanged: false,
    }));
    if (!json) console.log('(the embedded store does not exist yet: `database migrate` creates it)');
  } else {
    const db = createDb(config);
    try {
      list = await migrationStatus(db, options);
    } finally {
      await db.destroy();
    }
  }
  const bad = list.some((s) => s.state === 'changed' || s.state === 'missing' || s.downFileChanged);
  if (json) {
    console.log(JSON.stringify({ target, migrations: list }, null, 2));
    return bad ? EXIT.failed : EXIT.ok;
  }
  for (const s of list) {
    const applied = s.appliedAt === undefined ? '' : `  applied ${s.appliedAt.toISOString()} in ${s.durationMs} ms`;
    const sums =
      s.state === 'changed'
        ? `file ${s.checksum?.slice(0, 12)} ≠ ledger ${s.appliedChecksum?.slice(0, 12)}`
        : (s.checksum ?? s.appliedChecksum ?? '').slice(0, 12);
    console.log(`  ${s.state.padEnd(8)} ${s.name.padEnd(40)} ${sums}${applied}${s.downFileMissing ? '  (down file missing)' : ''}${s.downFileChanged ? '  (down file changed since applied)' : ''}`);
  }
  const counts = (['applied', 'pending', 'changed', 'missing'] as const)
    .map((state) => [state, list.filter((s) => s.state === state).length] as const)
    .filter(([, n]) => n > 0)
    .map(([state, n]) => `${n} ${state}`);
  console.log(counts.length === 0 ? 'no migrations' : counts.join(', '));
  return bad ? EXIT.failed : EXIT.ok;
}
