#!/usr/bin/env node
/**
 * The `database` command (package.json `bin`; `npm run migrate|seed|start` in the repository):
 * one entry point, one module per subcommand, each loaded only when it runs.
 * Exit codes: 0 done; 1 failed or refused (nothing half-applied); 2 bad command line.
 */
import { readFileSync } from 'node:fs';

const USAGE = `usage: database COMMAND [ARGS…]

Operates the database of the configured environment: DATABASE_URL (or PGHOST, PGPORT,
PGDATABASE, PGUSER, PGPASSWORD) names a PostgreSQL server; otherwise the embedded store at
DB_STORAGE (default .data/pglite). Every command prints its target first.

commands:
  migrate [up] [--to NAME]                apply pending migrations
  migrate down [--to NAME | --all] [--yes]
                                          revert migrations (asks first; without a terminal needs --yes)
  migrate status [--json]                 applied, pending, changed and missing migrations
  migrate create NAME                     write the next NNNN_NAME.up.sql / .down.sql
  seed [--dir PATH] [--force]             load the seed data (data/*.csv)
  secrets rotate [--yes]                  re-encrypt every secret under the current key (DB_SECRET_KEYS)
  tenant export ID DIR                    write every row of a tenant to a folder (NDJSON + manifest)
  tenant import DIR                       load such a folder into a database without that tenant
  tenant delete ID [--yes]                remove every row of a tenant (asks first; without a terminal needs --yes)
  status                                  versions, migrations, tables with row counts and RLS
  start                                   migrate + seed + status (what a service's getDb() does)
  studio [--port N] [--host ADDRESS]      a local read-only web page to browse the database

  database COMMAND --help                 more about one command
  database --version                      the package's version

exit codes: 0 done, 1 failed or refused (nothing half-applied), 2 bad command line`;

const COMMANDS: Record<string, () => Promise<(args: string[]) => Promise<number>>> = {
  migrate: async () => (await import('./migrate.ts')).runMigrate,
  seed: async () => (await import('./seed.ts')).runSeed,
  secrets: async () => (await import('./secrets.ts')).runSecrets,
  tenant: async () => (await import('./tenant.ts')).runTenant,
  status: async () => (await import('./status.ts')).runStatus,
  start: async () => (await import('./start.ts')).runStart,
  studio: async () => (await import('./studio.ts')).runStudio,
};

const major = Number(process.versions.node.split('.')[0]);
if (major < 22) {
  console.error(`database: needs Node.js 22 or newer, this is ${process.version} (${process.execPath})`);
  process.exit(1);
}

const [command, ...args] = process.argv.slice(2);
if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
  (command === undefined ? console.error : console.log)(USAGE);
  process.exitCode = command === undefined ? 2 : 0;
} else if (command === '--version' || command === '-v') {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  console.log(pkg.version);
} else if (COMMANDS[command] === undefined) {
  console.error(`database: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
  process.exitCode = 2;
} else {
  const [{ runCli }, run] = await Promise.all([import('./run-cli.ts'), COMMANDS[command]()]);
  await runCli(command, () => run(args));
}
