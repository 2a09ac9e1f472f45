import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { postgresConfig, type AppRole } from '../../src/db/config.ts';
import { createDb } from '../../src/db/create-db.ts';
import type { DB } from '../../src/db/schema.generated.ts';
import type { TestDb } from './test-db.ts';

/** A service's login role, created exactly as the README says, and a database handle logged in as it. */
export interface LoginRole {
  name: string;
  /** The test database's URL with this role's name and password. */
  url: string;
  /** A pool logged in as the role, with DB_APP_ROLE = `role` (one connection unless told otherwise). */
  open(poolMax?: number): Kysely<DB>;
  /** Closes the pools it opened and drops the role. */
  drop(): Promise<void>;
}

/**
 * `create role X login password '…' noinherit in role <role>` (server only: roles are global to
 * the server, so the name is unique). The password is real: a server with password
 * authentication (the Testcontainers image) checks it.
 */
export async function createLoginRole(t: TestDb, role: AppRole): Promise<LoginRole> {
  const name = `login_${role}_${randomBytes(4).toString('hex')}`;
  const password = randomBytes(12).toString('hex');
  const admin = t.db.withoutPlugins();
  await sql`create role ${sql.id(name)} login password ${sql.lit(password)} nosuperuser nobypassrls noinherit in role ${sql.id(role)}`.execute(admin);
  const url = new URL(t.url!);
  url.username = name;
  url.password = password;
  const handles: Kysely<DB>[] = [];
  return {
    name,
    url: url.toString(),
    open(poolMax = 1) {
      const db = createDb(postgresConfig({ connectionString: url.toString(), poolMax, appRole: role }));
      handles.push(db);
      return db;
    },
    async drop() {
      await Promise.all(handles.map((h) => h.destroy()));
      await sql`drop role if exists ${sql.id(name)}`.execute(admin);
    },
  };
}
