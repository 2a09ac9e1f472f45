/**
 * The start-up lifecycle of a service: the process-wide database, brought to the expected state
 * (migrations, then seed data) on first use, and closed gracefully on SIGTERM/SIGINT. It sits
 * above src/db and src/seed: neither imports it, and src/db imports nothing of src/seed.
 */
import type { Kysely } from 'kysely';
import { boolEnv, intEnv } from '../db/config.ts';
import { closeGracefully, createDb } from '../db/create-db.ts';
import { migrate, type MigratorOptions } from '../db/migrator.ts';
import type { DB } from '../db/schema.generated.ts';
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
 * seeded; see syncDatabase) unless DB_SKIP_SYNC=true. Concurrent first calls share one start-up;
 * a failed start-up is not cached, so the next call tries again.
 *
 * Graceful shutdown: on SIGTERM or SIGINT, when the process has no handler of its own for that
 * signal, the database lets the calls in flight finish, closes its pool and the process exits 0.
 * A process with its own handler calls closeDb() itself (DB_HANDLE_SIGNALS=false turns this off).
 *
 * @example
 * const db = await getDb();
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
  if (process.env.DB_HANDLE_SIGNALS?.trim().toLowerCase() !== 'false') handleSignals();
  return instance;
}

/**
 * Closes the process-wide database after the calls in flight have finished (at most
 * DB_SHUTDOWN_TIMEOUT_MS, default 10,000 ms); the next getDb() opens a new one.
 */
export async function closeDb(): Promise<void> {
  const current = instance;
  instance = undefined;
  if (current === undefined) return;
  const db = await current.catch(() => undefined);
  if (db !== undefined) await closeGracefully(db, { timeoutMs: intEnv(process.env, 'DB_SHUTDOWN_TIMEOUT_MS', 10_000, 0) });
}

const SIGNALS = ['SIGTERM', 'SIGINT'] as const;
let signalsHandled = false;

function handleSignals(): void {
  if (signalsHandled) return;
  signalsHandled = true;
  for (const signal of SIGNALS) {
    process.once(signal, () => {
      // Someone else listens too: the process has its own shutdown, which calls closeDb().
      if (process.listenerCount(signal) > 0) return;
      closeDb().then(
        () => process.exit(0),
        (error: unknown) => {
          console.error(`database: closing on ${signal} failed: ${error instanceof Error ? error.message : String(error)}`);
          process.exit(1);
        },
      );
    });
  }
}
