import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { postgresConfig } from '../../src/db/config.ts';
import { createDb } from '../../src/db/create-db.ts';
import { ConfigError } from '../../src/db/errors.ts';
import { migrate } from '../../src/db/migrator.ts';
import { closeDb, getDb } from '../../src/lifecycle/get-db.ts';
import { onServer, openTestDb, testBackend, type TestDb } from '../support/test-db.ts';

// A service's login, as the README tells operators to create it: a member of app_user, nothing more.
// Roles are global to the server: a unique name, dropped afterwards.
const role = `database_test_service_${randomBytes(4).toString('hex')}`;
const password = randomBytes(12).toString('hex');
let migrated: TestDb;
let empty: TestDb;

function asRole(url: string): string {
  const parsed = new URL(url);
  parsed.username = role;
  parsed.password = password;
  return parsed.toString();
}

async function admin<T>(fn: (db: Kysely<any>) => Promise<T>): Promise<T> {
  const backend = testBackend();
  if (backend.kind !== 'postgres') throw new Error('server only');
  const db = createDb(postgresConfig({ connectionString: backend.adminUrl, poolMax: 1 })).withoutPlugins();
  try {
    return await fn(db);
  } finally {
    await db.destroy();
  }
}

async function ledger(db: Kysely<any>): Promise<string[] | undefined> {
  const { rows } = await sql<{ present: boolean }>`select to_regclass('schema_migrations') is not null as present`.execute(db.withoutPlugins());
  if (!rows[0]!.present) return undefined;
  const names = await sql<{ name: string }>`select name from schema_migrations order by name`.execute(db.withoutPlugins());
  return names.rows.map((r) => r.name);
}

const saved = { ...process.env };
beforeAll(async () => {
  if (!onServer) return;
  await admin((db) => sql`create role ${sql.id(role)} login password ${sql.lit(password)} noinherit in role app_user`.execute(db));
  migrated = await openTestDb();
  empty = await openTestDb({ migrated: false });
});
afterEach(async () => {
  await closeDb();
  process.env = { ...saved };
});
afterAll(async () => {
  if (!onServer) return;
  await migrated?.close();
  await empty?.close();
  await admin((db) => sql`drop role if exists ${sql.id(role)}`.execute(db));
});

describe.runIf(onServer)('a role that cannot migrate', () => {
  it('gets a ConfigError from getDb() naming the role, what it lacks and DB_SKIP_SYNC, before anything runs', async () => {
    const before = await ledger(migrated.db);
    for (const name of ['PGHOST', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGPASSWORD', 'DB_SKIP_SYNC']) delete process.env[name];
    process.env.DATABASE_URL = asRole(migrated.url!);
    process.env.DB_HANDLE_SIGNALS = 'false';
    const attempt = getDb();
    await expect(attempt).rejects.toBeInstanceOf(ConfigError);
    const error = (await attempt.catch((e: unknown) => e)) as ConfigError;
    expect(error.message).toContain(`role ${role} cannot migrate database`);
    expect(error.message).toContain('lacks CREATE on schema public');
    expect(error.message).toMatch(/not the owner of schema_migrations \(owned by \w+\)/);
    expect(error.message).toContain('DB_SKIP_SYNC=true');
    expect(await ledger(migrated.db)).toEqual(before);
    // The same login with DB_SKIP_SYNC=true joins the initialized database.
    process.env.DB_SKIP_SYNC = 'true';
    const db = await getDb();
    const { rows } = await sql<{ who: string }>`select current_user as who`.execute(db);
    expect(rows[0]!.who).toBe(role);
  });

  it('on an empty database, is refused for lacking CREATE on the database, and nothing is created', async () => {
    // With CREATE on schema public, the ledger itself could be created: the check must come first.
    await sql`grant create on schema public to ${sql.id(role)}`.execute(empty.db.withoutPlugins());
    const db = createDb(postgresConfig({ connectionString: asRole(empty.url!), poolMax: 1 }));
    try {
      await expect(migrate(db)).rejects.toThrow(new RegExp(`role ${role} cannot migrate database \\w+: it lacks CREATE on database`));
    } finally {
      await db.destroy();
      await sql`revoke create on schema public from ${sql.id(role)}`.execute(empty.db.withoutPlugins());
    }
    expect(await ledger(empty.db)).toBeUndefined();
  });
});
