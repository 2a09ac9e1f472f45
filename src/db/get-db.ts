import type { Kysely } from 'kysely';
import { boolEnv } from './config.ts';
import { createDb } from './create-db.ts';
import { migrate, type MigratorOptions } from './migrator.ts';
import type { DB } from './schema.generated.ts';
import { seed, type SeedSummary } from '../seed/seed.ts';

let instance: Promise<Kysely<DB>> | undefined;

/**
 * Brings a database to the state the package expects: applies pending migrations, then loads the
 * seed data of `data/` (and the test admin when TEST_API_KEY is set). Both steps are idempotent.
 */
export async function syncDatabase(
  db: Kysely<DB>,
  options: MigratorOptions = {},
): Promise<{ migrated: string[]; seeded: SeedSummary }> {
  const migrated = await migrate(db, options);
  const seeded = await seed(db, options.log === undefined ? {} : { log: options.log });
  return { migrated, seeded };
}

/**
 * The process-wide database, created from the environment on first use and synced (migrated, then
 * seeded; see syncDatabase) unless DB_SKIP_SYNC=true. Concurrent first calls share one start-up; a failed start-up is not
 * cached, so the next call tries again.
 *
 * @example
 * const db = await getDb();
 * process.on('SIGTERM', () => void closeDb());
 */
export function getDb(): Promise<Kysely<DB>> {
  instance ??= (async () => {
    const db = createDb();
    try {
      if (!boolEnv(process.env, 'DB_SKIP_SYNC')) await syncDatabase(db);
      return db;
    } catch (error) {
      await db.destroy().catch(() => {});
      throw error;
    }
  })();
  instance.catch(() => {
    instance = undefined;
  });
  return instance;
}

/** Closes the process-wide database (waits for queries in flight); the next getDb() opens a new one. */
export async function closeDb(): Promise<void> {
  const current = instance;
  instance = undefined;
  if (current === undefined) return;
  const db = await current.catch(() => undefined);
  await db?.destroy();
}
