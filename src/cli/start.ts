/**
 * npm start: brings the configured database (embedded PGlite at .data/pglite by default) to the
 * latest schema, loads the seed data (data/) and prints a short status: migrations, the seed, tables
 * with row counts and their row-level security, the PostgreSQL and pgvector versions.
 */
import { loadConfig } from '../db/config.ts';
import { createDb } from '../db/create-db.ts';
import { syncDatabase } from '../db/get-db.ts';
import { checkHealth } from '../db/health.ts';
import { migrationStatus } from '../db/migrator.ts';
import { tableStatus } from '../db/status.ts';
import { formatSeedSummary } from '../seed/seed.ts';
import { runCli } from './run-cli.ts';

runCli('start', async () => {
  const config = loadConfig();
  const db = createDb(config);
  try {
    const { migrated, seeded } = await syncDatabase(db);
    const health = await checkHealth(db);
    if (!health.ok) throw new Error(`database unreachable after migrating: ${health.error}`);
    const migrations = await migrationStatus(db);
    const tables = await tableStatus(db);

    console.log(config.kind === 'postgres' ? 'database: PostgreSQL server' : `database: embedded PGlite at ${config.storage}`);
    console.log(`postgres ${health.serverVersion}, pgvector ${health.pgvector ?? 'not installed'}`);
    const applied = migrations.filter((m) => m.state === 'applied').length;
    console.log(`migrations: ${applied} of ${migrations.length} applied (${migrated.length} just now)`);
    console.log(formatSeedSummary(seeded));
    console.log('');
    console.log(`${'table'.padEnd(16)} ${'rows'.padStart(8)}  rls`);
    for (const t of tables) {
      const rls = t.rlsForced ? 'forced' : t.rlsEnabled ? 'enabled (not forced)' : 'off';
      console.log(`${t.name.padEnd(16)} ${String(t.rows).padStart(8)}  ${rls}`);
    }
  } finally {
    await db.destroy();
  }
});
