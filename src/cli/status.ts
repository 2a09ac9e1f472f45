/**
 * `database status`: what `database start` prints, without changing anything: the target, the
 * server and pgvector versions, the migrations applied and pending, each table with its row count
 * and row-level security.
 */
import type { Kysely } from 'kysely';
import { loadConfig } from '../db/config.ts';
import { createDb } from '../db/create-db.ts';
import { checkHealth } from '../db/health.ts';
import { migrationStatus } from '../db/migrator.ts';
import { tableStatus } from '../db/status.ts';
import { describeTarget } from '../db/target.ts';
import { noExtraArguments, parseCommandLine } from './args.ts';
import { EXIT } from './run-cli.ts';
import { embeddedStoreMissing } from './embedded-store.ts';

/** Usage of `database status`. */
export const STATUS_USAGE = `usage: database status

Prints the target, the PostgreSQL and pgvector versions, how many migrations are applied and
pending, and each table with its row count and row-level security. Changes nothing (an embedded
store that does not exist is not created). Exit 1 when an applied migration file changed or is gone.`;

/** Runs `database status ARGS…`; resolves to the exit code. */
export async function runStatus(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(args, {}, STATUS_USAGE);
  if (values.help) {
    console.log(STATUS_USAGE);
    return EXIT.ok;
  }
  noExtraArguments(positionals, 0, STATUS_USAGE);
  const config = loadConfig();
  console.log(describeTarget(config));
  if (embeddedStoreMissing(config)) {
    console.log('the embedded store does not exist yet: `database start` (or `database migrate`) creates it');
    return EXIT.ok;
  }
  const db = createDb(config);
  try {
    return await printStatus(db);
  } finally {
    await db.destroy();
  }
}

/**
 * Prints the status lines after the target line (also `database start`'s); `justApplied` is how
 * many migrations the caller just applied. Resolves to 1 when an applied migration changed or is gone.
 */
export async function printStatus(db: Kysely<any>, justApplied?: number, seedLine?: string): Promise<number> {
  const health = await checkHealth(db);
  if (!health.ok) throw new Error(health.error);
  const migrations = await migrationStatus(db);
  const tables = await tableStatus(db);
  const count = (state: string) => migrations.filter((m) => m.state === state).length;
  console.log(`postgres ${health.serverVersion}, pgvector ${health.pgvector ?? 'not installed'}`);
  const pending = count('pending');
  console.log(
    `migrations: ${count('applied')} of ${migrations.length} applied` +
      (justApplied === undefined ? '' : ` (${justApplied} just now)`) +
      (pending === 0 ? '' : `, ${pending} pending (run \`database migrate\`)`),
  );
  const broken = migrations.filter((m) => m.state === 'changed' || m.state === 'missing');
  for (const m of broken) {
    console.log(`  ${m.state} ${m.name}: ${m.state === 'changed' ? 'edited after it was applied' : 'applied, but its file is gone'}`);
  }
  if (seedLine !== undefined) console.log(seedLine);
  console.log('');
  if (tables.length === 0) {
    console.log('no tables yet');
  } else {
    console.log(`${'table'.padEnd(16)} ${'rows'.padStart(8)}  rls`);
    for (const t of tables) {
      const rls = t.rlsForced ? 'forced' : t.rlsEnabled ? 'enabled (not forced)' : 'off';
      console.log(`${t.name.padEnd(16)} ${String(t.rows).padStart(8)}  ${rls}`);
    }
  }
  return broken.length > 0 ? EXIT.failed : EXIT.ok;
}
