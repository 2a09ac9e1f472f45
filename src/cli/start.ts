/**
 * `database start` (npm start): brings the configured database to the latest schema, loads the
 * seed data and prints the status, as a service's getDb() start-up does.
 */
import { loadConfig } from '../db/config.ts';
import { createDb } from '../db/create-db.ts';
import { describeTarget } from '../db/target.ts';
import { syncDatabase } from '../lifecycle/get-db.ts';
import { formatSeedSummary } from '../seed/seed.ts';
import { noExtraArguments, parseCommandLine } from './args.ts';
import { EXIT } from './run-cli.ts';
import { printStatus } from './status.ts';

/** Usage of `database start`. */
export const START_USAGE = `usage: database start

Migrates the configured database to the latest schema (as \`database migrate\`), loads the seed
data (as \`database seed\`), then prints \`database status\`. With nothing configured that is the
embedded store at .data/pglite, created when missing.`;

/** Runs `database start ARGS…`; resolves to the exit code. */
export async function runStart(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(args, {}, START_USAGE);
  if (values.help) {
    console.log(START_USAGE);
    return EXIT.ok;
  }
  noExtraArguments(positionals, 0, START_USAGE);
  const config = loadConfig();
  console.log(describeTarget(config));
  const db = createDb(config);
  try {
    const { migrated, seeded } = await syncDatabase(db);
    return await printStatus(db, migrated.length, formatSeedSummary(seeded));
  } finally {
    await db.destroy();
  }
}
