import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { closeDb, getDb } from '../../src/lifecycle/get-db.ts';

// getDb() reads the process environment: point it at a fresh in-memory PGlite for each test.
const saved = { ...process.env };
beforeEach(() => {
  for (const name of ['DATABASE_URL', 'PGHOST', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGPASSWORD', 'DB_SKIP_SYNC']) delete process.env[name];
  process.env.DB_STORAGE = 'memory://';
});
afterEach(async () => {
  await closeDb();
  process.env = { ...saved };
});

async function ledgerPresent(): Promise<boolean> {
  const db = await getDb();
  const { rows } = await sql<{ present: boolean }>`select to_regclass('schema_migrations') is not null as present`.execute(db);
  return rows[0]!.present;
}

describe('getDb', () => {
  it('migrates on first use and hands every caller the same database', async () => {
    const [first, second] = await Promise.all([getDb(), getDb()]);
    expect(first).toBe(second);
    expect(await getDb()).toBe(first);
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from schema_migrations`.execute(first);
    expect(rows[0]!.n).toBeGreaterThanOrEqual(5);
  });

  it('does not migrate with DB_SKIP_SYNC=true', async () => {
    process.env.DB_SKIP_SYNC = 'true';
    expect(await ledgerPresent()).toBe(false);
  });

  it('opens a new database after closeDb()', async () => {
    const first = await getDb();
    await closeDb();
    const second = await getDb();
    expect(second).not.toBe(first);
  });

  it('does not cache a failed start-up', async () => {
    process.env.DATABASE_URL = 'mysql://not-postgres';
    await expect(getDb()).rejects.toThrow(/DATABASE_URL must start with postgres/);
    delete process.env.DATABASE_URL;
    expect(await ledgerPresent()).toBe(true);
  });
});
