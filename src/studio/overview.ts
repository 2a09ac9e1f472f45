/**
 * The overview page's data, read as the owner: versions, migrations, every table with its row
 * count, size and row-level security, and the roles with what each may do.
 */
import { sql, type Kysely } from 'kysely';
import { APP_ROLES } from '../db/config.ts';
import { LEDGER_TABLE, migrationStatus, type MigrationStatus } from '../db/migrator.ts';
import { FUNCTION_ROLES, type ServiceRole } from '../db/service-roles.ts';

/**
 * Tables up to this size (pg_table_size) are counted exactly; bigger ones show the planner's
 * estimate, so that the overview stays fast on a table of millions of rows.
 */
export const EXACT_COUNT_MAX_BYTES = 64 * 1024 * 1024;

/** One table on the overview. */
export interface TableSummary {
  name: string;
  /** Exact count, or the planner's estimate for a big table (`exact` false); null: big and never analyzed. */
  rows: number | null;
  exact: boolean;
  /** Table, indexes and TOAST (pg_total_relation_size), in bytes. */
  bytes: number;
  rlsEnabled: boolean;
  rlsForced: boolean;
  policies: number;
}

/** What one role may do. */
export interface RoleSummary {
  name: string;
  exists: boolean;
  login: boolean;
  superuser: boolean;
  bypassRls: boolean;
  memberOf: string[];
  /** Per table: `SIUD` letters held (lower case: on some columns only), `-` for none. */
  privileges: Record<string, string>;
  /** The package functions this service role may call (FUNCTION_ROLES); all of them for app_user. */
  functions: string[];
}

/** Everything the overview shows. */
export interface Overview {
  serverVersion: string;
  pgvector: string | null;
  currentUser: string;
  migrations: MigrationStatus[];
  tables: TableSummary[];
  roles: RoleSummary[];
}

/** Reads the overview (run it in a read-only transaction as the owner). */
export async function readOverview(db: Kysely<any>): Promise<Overview> {
  const conn = db.withoutPlugins();
  const { rows: versions } = await sql<{ server_version: string; pgvector: string | null; current_user: string }>`
    select current_setting('server_version') as server_version,
           (select extversion from pg_extension where extname = 'vector') as pgvector,
           current_user::text as current_user`.execute(conn);
  const migrations = await migrationStatus(conn);
  const tables = await tableSummaries(conn);
  const roles = await roleSummaries(conn, [...APP_ROLES, versions[0]!.current_user], tables.map((t) => t.name));
  return {
    serverVersion: versions[0]!.server_version,
    pgvector: versions[0]!.pgvector,
    currentUser: versions[0]!.current_user,
    migrations,
    tables,
    roles,
  };
}

async function tableSummaries(conn: Kysely<any>): Promise<TableSummary[]> {
  const { rows: tables } = await sql<{
    name: string;
    table_bytes: number | string;
    total_bytes: number | string;
    reltuples: number | string;
    rls_enabled: boolean;
    rls_forced: boolean;
    policies: number;
  }>`
    select c.relname as name, pg_table_size(c.oid) as table_bytes, pg_total_relation_size(c.oid) as total_bytes,
           c.reltuples, c.relrowsecurity as rls_enabled, c.relforcerowsecurity as rls_forced,
           (select count(*)::int from pg_policy p where p.polrelid = c.oid) as policies
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public' and c.relkind in ('r', 'p') and c.relname <> ${LEDGER_TABLE}
    order by c.relname`.execute(conn);
  const small = tables.filter((t) => Number(t.table_bytes) <= EXACT_COUNT_MAX_BYTES);
  const counts = new Map<string, number>();
  if (small.length > 0) {
    const union = sql.join(
      small.map((t) => sql`select ${t.name}::text as name, count(*)::bigint as rows from ${sql.id(t.name)}`),
      sql` union all `,
    );
    const { rows } = await sql<{ name: string; rows: number | string }>`${union}`.execute(conn);
    for (const r of rows) counts.set(r.name, Number(r.rows));
  }
  return tables.map((t) => {
    const exact = counts.get(t.name);
    const estimate = Number(t.reltuples);
    return {
      name: t.name,
      rows: exact ?? (estimate < 0 ? null : Math.round(estimate)),
      exact: exact !== undefined,
      bytes: Number(t.total_bytes),
      rlsEnabled: t.rls_enabled,
      rlsForced: t.rls_forced,
      policies: t.policies,
    };
  });
}

async function roleSummaries(conn: Kysely<any>, names: string[], tables: string[]): Promise<RoleSummary[]> {
  const unique = [...new Set(names)];
  const { rows: roles } = await sql<{ name: string; login: boolean; superuser: boolean; bypass_rls: boolean; member_of: string | null }>`
    select r.rolname as name, r.rolcanlogin as login, r.rolsuper as superuser, r.rolbypassrls as bypass_rls,
           (select string_agg(b.rolname, ',' order by b.rolname) from pg_auth_members m join pg_roles b on b.oid = m.roleid
            where m.member = r.oid) as member_of
    from pg_roles r where r.rolname in (${sql.join(unique)})`.execute(conn);
  const { rows: grants } = tables.length === 0 || roles.length === 0 ? { rows: [] } : await sql<{
    role: string;
    table: string;
    s: boolean;
    some_s: boolean;
    i: boolean;
    some_i: boolean;
    u: boolean;
    some_u: boolean;
    d: boolean;
  }>`
    select r.rolname as role, c.relname as table,
           has_table_privilege(r.oid, c.oid, 'SELECT') as s, has_any_column_privilege(r.oid, c.oid, 'SELECT') as some_s,
           has_table_privilege(r.oid, c.oid, 'INSERT') as i, has_any_column_privilege(r.oid, c.oid, 'INSERT') as some_i,
           has_table_privilege(r.oid, c.oid, 'UPDATE') as u, has_any_column_privilege(r.oid, c.oid, 'UPDATE') as some_u,
           has_table_privilege(r.oid, c.oid, 'DELETE') as d
    from pg_roles r
    cross join pg_class c join pg_namespace n on n.oid = c.relnamespace
    where r.rolname in (${sql.join(roles.map((r) => r.name))})
      and n.nspname = 'public' and c.relkind in ('r', 'p') and c.relname in (${sql.join(tables)})`.execute(conn);
  const found = new Map(roles.map((r) => [r.name, r]));
  return unique.map((name) => {
    const role = found.get(name);
    const privileges: Record<string, string> = {};
    for (const g of grants.filter((g) => g.role === name)) {
      const letters = `${g.s ? 'S' : g.some_s ? 's' : ''}${g.i ? 'I' : g.some_i ? 'i' : ''}${g.u ? 'U' : g.some_u ? 'u' : ''}${g.d ? 'D' : ''}`;
      privileges[g.table] = letters === '' ? '-' : letters;
    }
    return {
      name,
      exists: role !== undefined,
      login: role?.login ?? false,
      superuser: role?.superuser ?? false,
      bypassRls: role?.bypass_rls ?? false,
      memberOf: role?.member_of?.split(',') ?? [],
      privileges,
      functions: functionsOf(name),
    };
  });
}

/** The package functions `role` may call, from FUNCTION_ROLES (none listed for a role that is no service role). */
function functionsOf(role: string): string[] {
  if (role === 'app_user') return Object.keys(FUNCTION_ROLES);
  return Object.entries(FUNCTION_ROLES)
    .filter(([, roles]) => (roles as readonly string[]).includes(role as ServiceRole))
    .map(([name]) => name);
}
