/**
 * The tables that hold a tenant's rows, read from the migrated database's catalog so that a table
 * added by a later migration is exported, imported and deleted the day it exists: every table of
 * public with a `tenant_id` column (the tenant-scoped tables, and the shared-or-owned agents,
 * prompts and tools, whose global rows have none), `tenants` itself, and `agent_tools`, whose rows
 * belong to the tenant's agents. Not the catalog (roles, models, providers, …: shared by every
 * tenant) nor the migrator's ledger, nor the tables a trigger derives from another owned table
 * (DERIVED_TABLES). In foreign-key order, parents first; shared by exportTenant, importTenant and
 * deleteTenant.
 */
import { sql, type Kysely, type RawBuilder } from 'kysely';
import { TenantTransferError } from './errors.ts';
import { LEDGER_TABLE } from './migrator.ts';

/** One table holding rows of a tenant. */
export interface OwnedTable {
  /** Its SQL name in schema public. */
  name: string;
  /** Its columns in table order, without generated ones (PostgreSQL computes those again). */
  columns: string[];
  /** Its primary key: keyset order of the export and the delete batches. */
  key: { column: string; type: string }[];
}

/** Tables without tenant_id whose rows belong to a tenant through a parent: agent_tools through its agent. */
const THROUGH_PARENT: Record<string, { column: string; parent: string }> = {
  agent_tools: { column: 'agent_id', parent: 'agents' },
};

/**
 * Tables kept by a trigger from the rows of another owned table, by the table they are derived
 * from: usage_rollups (migration 0021) and usage_day_rollups (0025) from usage. Not exported (the
 * source rows are) nor imported (loading the source rows rebuilds them, exactly) nor deleted by
 * deleteTenant (deleting the source rows takes them away; a user's usage_rollups rows also go by
 * the cascade from users).
 */
export const DERIVED_TABLES: Readonly<Record<string, string>> = { usage_rollups: 'usage', usage_day_rollups: 'usage' };

/** `db` without plugins: these statements name SQL identifiers as they are (snake_case). */
function raw(db: Kysely<any>): Kysely<any> {
  return db.withoutPlugins();
}

/**
 * The tables that hold a tenant's rows, parents before children. Foreign keys that are
 * DEFERRABLE (a message's parent, a conversation's summary message: migration 0014) do not order
 * the tables: importTenant defers them. A cycle of foreign keys none of which is deferrable →
 * TenantTransferError naming the tables (make one of them deferrable).
 */
export async function ownedTables(db: Kysely<any>): Promise<OwnedTable[]> {
  const { rows } = await sql<{ table: string; column: string; generated: boolean; key_position: number | null; type: string }>`
    select c.relname::text as table, a.attname::text as column, a.attgenerated <> '' as generated,
           array_position(k.conkey, a.attnum) as key_position, format_type(a.atttypid, a.atttypmod) as type
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
    left join pg_constraint k on k.conrelid = c.oid and k.contype = 'p'
    where n.nspname = 'public' and c.relkind in ('r', 'p') and c.relname <> ${LEDGER_TABLE}
      and c.relname <> all(${Object.keys(DERIVED_TABLES)}::text[])
      and (c.relname = any(${['tenants', ...Object.keys(THROUGH_PARENT)]}::text[])
           or exists (select from pg_attribute t where t.attrelid = c.oid and t.attname = 'tenant_id' and not t.attisdropped))
    order by c.relname, a.attnum`.execute(raw(db));
  const tables = new Map<string, OwnedTable>();
  const keys = new Map<string, { column: string; type: string; position: number }[]>();
  for (const row of rows) {
    const table = tables.get(row.table) ?? { name: row.table, columns: [], key: [] };
    tables.set(row.table, table);
    if (!row.generated) table.columns.push(row.column);
    if (row.key_position !== null) {
      keys.set(row.table, [...(keys.get(row.table) ?? []), { column: row.column, type: row.type, position: Number(row.key_position) }]);
    }
  }
  for (const [name, table] of tables) {
    const key = (keys.get(name) ?? []).sort((a, b) => a.position - b.position);
    if (key.length === 0) throw new TenantTransferError(`table ${name} holds tenant rows but has no primary key: it cannot be read in batches`);
    table.key = key.map(({ column, type }) => ({ column, type }));
  }
  const edges = await sql<{ child: string; parent: string }>`
    select distinct c.conrelid::regclass::text as child, c.confrelid::regclass::text as parent
    from pg_constraint c
    where c.contype = 'f' and not c.condeferrable and c.conrelid <> c.confrelid
      and c.conrelid::regclass::text = any(${[...tables.keys()]}::text[])
      and c.confrelid::regclass::text = any(${[...tables.keys()]}::text[])`.execute(raw(db));
  return foreignKeyOrder([...tables.values()], edges.rows);
}

/** Kahn's algorithm, ties by name: parents before children, the same order every time. */
function foreignKeyOrder(tables: OwnedTable[], edges: { child: string; parent: string }[]): OwnedTable[] {
  const parentsOf = new Map(tables.map((t) => [t.name, new Set<string>()]));
  for (const { child, parent } of edges) parentsOf.get(child)?.add(parent);
  const ordered: OwnedTable[] = [];
  const left = new Map(tables.map((t) => [t.name, t]));
  while (left.size > 0) {
    const ready = [...left.values()]
      .filter((t) => [...parentsOf.get(t.name)!].every((p) => !left.has(p)))
      .sort((a, b) => a.name.localeCompare(b.name));
    if (ready.length === 0) {
      throw new TenantTransferError(
        `the foreign keys of ${[...left.keys()].sort().join(', ')} form a cycle with no DEFERRABLE foreign key: ` +
          'a tenant cannot be loaded table by table (make one of them DEFERRABLE INITIALLY IMMEDIATE in a migration)',
      );
    }
    for (const t of ready) {
      ordered.push(t);
      left.delete(t.name);
    }
  }
  return ordered;
}

/** The DEFERRABLE foreign keys among the owned tables, schema-qualified, for `SET CONSTRAINTS … DEFERRED`. */
export async function deferrableForeignKeys(db: Kysely<any>, tables: OwnedTable[]): Promise<string[]> {
  const names = tables.map((t) => t.name);
  const { rows } = await sql<{ name: string }>`
    select format('%I.%I', n.nspname, c.conname) as name from pg_constraint c join pg_namespace n on n.oid = c.connamespace
    where c.contype = 'f' and c.condeferrable
      and c.conrelid::regclass::text = any(${names}::text[]) and c.confrelid::regclass::text = any(${names}::text[])
    order by 1`.execute(raw(db));
  return rows.map((r) => r.name);
}

/** The condition "this row of `table` (aliased `alias`, or unqualified) belongs to the tenant". */
export function rowsOfTenant(table: string, tenantId: string, alias?: string): RawBuilder<boolean> {
  const col = (name: string) => (alias === undefined ? sql.id(name) : sql.id(alias, name));
  if (table === 'tenants') return sql<boolean>`${col('id')} = ${tenantId}::uuid`;
  const through = THROUGH_PARENT[table];
  if (through !== undefined) {
    return sql<boolean>`${col(through.column)} in (select p.id from ${sql.table(through.parent)} p where p.tenant_id = ${tenantId}::uuid)`;
  }
  return sql<boolean>`${col('tenant_id')} = ${tenantId}::uuid`;
}

/**
 * Throws unless `db` is the database itself (not a transaction), connected as a role that reads
 * past row-level security (a superuser or BYPASSRLS: the owner that migrates), for `operation`.
 */
export async function assertOwnerPath(db: Kysely<any>, operation: string): Promise<void> {
  if (db.isTransaction) {
    throw new TenantTransferError(`${operation} needs the database, not a transaction: it runs its own transactions`);
  }
  const { rows } = await sql<{ bypass: boolean; role: string }>`
    select r.rolsuper or r.rolbypassrls as bypass, current_user::text as role from pg_roles r where r.rolname = current_user`.execute(raw(db));
  if (rows[0]?.bypass !== true) {
    throw new TenantTransferError(
      `role ${rows[0]?.role ?? '?'} cannot run ${operation}: it reads and writes one tenant's rows past row-level security. ` +
        'Run it as the owner that migrates (a superuser or a role with BYPASSRLS), without DB_APP_ROLE',
    );
  }
}

/** The migrations applied to the database, by name, in order. */
export async function appliedMigrations(db: Kysely<any>): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`select name from ${sql.table(LEDGER_TABLE)} order by name`.execute(raw(db));
  return rows.map((r) => r.name);
}
