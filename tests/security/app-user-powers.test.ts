import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresConfig } from '../../src/db/config.ts';
import { createDb } from '../../src/db/create-db.ts';
import { TenantContextError } from '../../src/db/errors.ts';
import { migrate } from '../../src/db/migrator.ts';
import type { DB } from '../../src/db/schema.generated.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { insertCatalog, insertTenant } from '../support/fixtures.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let tenantId: string;
beforeAll(async () => {
  t = await openTestDb();
  const { roleId } = await insertCatalog(t.db);
  ({ tenantId } = await insertTenant(t.db, roleId));
});
afterAll(() => t?.close());

/** Runs one statement inside withTenant (as app_user) and returns its SQLSTATE, or 'ok'. */
async function attempt(statement: ReturnType<typeof sql.raw>): Promise<string> {
  try {
    await withTenant(t.db, tenantId, (tx) => statement.execute(tx));
    return 'ok';
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

describe('what app_user cannot do, even inside its own tenant', () => {
  it.each([
    ['truncate a tenant table', 'truncate users cascade'],
    ['truncate a catalog table', 'truncate models cascade'],
    ['alter a table', 'alter table users add column backdoor text'],
    ['drop a table', 'drop table vectors'],
    ['disable row-level security', 'alter table users disable row level security'],
    ['drop a policy', 'drop policy users_select on users'],
    ['replace the tenant function', "create or replace function app.current_tenant_id() returns uuid language sql as $$ select null::uuid $$"],
    ['create a table in public', 'create table stash (x text)'],
    ['write to the catalog', "update models set cost_1k_input = 0"],
    ['read the migration ledger', 'select * from schema_migrations'],
    ['read provider api keys', 'select api_key from providers'],
  ])('cannot %s', async (_, statement) => {
    expect(await attempt(sql.raw(statement))).toBe('42501'); // insufficient_privilege
  });

  it('left every table as it was', async () => {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from users`.execute(t.db);
    expect(rows[0]!.n).toBe(1);
    const columns = await sql<{ column_name: string }>`
      select column_name from information_schema.columns where table_name = 'users' and column_name = 'backdoor'`.execute(t.db);
    expect(columns.rows).toEqual([]);
  });
});

// SET ROLE is checked against the session's login role, not the current role: a superuser login
// can always switch back. So the wall against `set role` is the login role itself: services log
// in as a role that is only a member of app_user (README, "Production roles").
describe.runIf(onServer)('a login role that is only a member of app_user', () => {
  it('cannot SET ROLE to anything with more rights, and withTenant works for it', async () => {
    const login = `app_login_${Math.random().toString(36).slice(2, 10)}`;
    // A password: a server may want one for host connections (the Testcontainers image: scram).
    const password = Math.random().toString(36).slice(2);
    const admin = t.db.withoutPlugins();
    // The superuser the tests log in as (postgres on the CI server, test in the container).
    const { rows } = await sql<{ name: string }>`select current_user as name`.execute(admin);
    const superuser = rows[0]!.name;
    await sql`create role ${sql.id(login)} login password ${sql.lit(password)} nosuperuser nobypassrls noinherit in role app_user`.execute(admin);
    const url = new URL(t.url!);
    url.username = login;
    url.password = password;
    const db = createDb(postgresConfig({ connectionString: url.toString(), poolMax: 1, appRole: 'app_user' }));
    try {
      const users = await withTenant(db, tenantId, (tx) => tx.selectFrom('users').select('tenantId').execute());
      expect(users).toEqual([{ tenantId }]);
      for (const target of [superuser, 'pg_read_all_data', 'pg_write_all_data']) {
        const code = await withTenant(db, tenantId, (tx) => sql.raw(`set role ${target}`).execute(tx)).then(
          () => 'ok',
          (error: { code?: string }) => error.code,
        );
        expect(code, target).toBe('42501');
      }
      // Outside withTenant it acts as app_user (DB_APP_ROLE, a startup setting) with no tenant: no row.
      await expect(db.selectFrom('users').select('id').execute()).resolves.toEqual([]);
      await expect(sql`select current_user::text as role`.execute(db)).resolves.toMatchObject({ rows: [{ role: 'app_user' }] });
    } finally {
      await db.destroy();
      await sql`drop role ${sql.id(login)}`.execute(admin);
    }
  });
});

describe('app.search_text (the SECURITY DEFINER full-text leg)', () => {
  it("returns the current tenant's matches only, and nothing without a tenant context", async () => {
    const { roleId } = await insertCatalog(t.db);
    const other = await insertTenant(t.db, roleId);
    const embedding = `[${Array.from({ length: 1536 }, (_, i) => (i === 0 ? 1 : 0)).join(',')}]`;
    await sql`insert into vectors (tenant_id, content, embedding) values (${tenantId}, 'the launch codes are secret', ${embedding}::vector)`.execute(t.db);
    const search = (tx: Kysely<DB>) =>
      sql<{ id: string }>`select id from app.search_text(websearch_to_tsquery('english', 'launch codes'), 10)`.execute(tx).then((r) => r.rows.length);
    expect(await withTenant(t.db, tenantId, search)).toBe(1);
    expect(await withTenant(t.db, other.tenantId, search)).toBe(0);
    const withoutTenant = await t.db.transaction().execute(async (tx) => {
      await sql`select set_config('role', 'app_user', true)`.execute(tx); // not SET LOCAL ROLE: Citus would send it to the workers, where it would also bind the SECURITY DEFINER functions' connections
      return search(tx);
    });
    expect(withoutTenant).toBe(0);
  });
});

describe('views', () => {
  it('every view in public or app is security_invoker (none bypass row-level security)', async () => {
    // Not an extension's own views (Citus puts citus_tables and citus_schemas in public).
    const { rows } = await sql<{ view: string; options: string[] | null }>`
      select n.nspname || '.' || c.relname as view, c.reloptions as options
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.relkind in ('v', 'm') and n.nspname in ('public', 'app')
        and not exists (select from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e')`.execute(t.db.withoutPlugins());
    const unsafe = rows.filter((r) => !(r.options ?? []).includes('security_invoker=true'));
    expect(unsafe).toEqual([]);
  });
});

// Changing app_user's attributes on a shared server would affect every other test database
// (roles are global to a server): this one runs on PGlite, a server of its own.
describe.runIf(!onServer)('withTenant refuses to run when row-level security would be bypassed', () => {
  it('app_user with BYPASSRLS → TenantContextError, before fn runs', async () => {
    const db = createDb({ kind: 'pglite', storage: 'memory://' });
    try {
      await migrate(db);
      await sql`alter role app_user bypassrls`.execute(db);
      let ran = false;
      await expect(
        withTenant(db, '00000000-0000-4000-8000-000000000001', async () => {
          ran = true;
        }),
      ).rejects.toThrow(new TenantContextError('role app_user is SUPERUSER or BYPASSRLS: row-level security would not apply; refusing'));
      expect(ran).toBe(false);
    } finally {
      await db.destroy();
    }
  });
});
