/**
 * What the studio knows of a table, read from the catalog: its columns with their types and
 * comments, its primary key, its indexes. Table and column names that reach SQL are always names
 * found here (then quoted as identifiers), never text from a request.
 */
import { sql, type Kysely } from 'kysely';
import { LEDGER_TABLE } from '../db/migrator.ts';

/** How the table browser shows a column's values. */
export type ColumnKind = 'vector' | 'json' | 'bytea' | 'secret' | 'text';

/** One column of a table, as the catalog describes it. */
export interface ColumnInfo {
  name: string;
  /** format_type(): `uuid`, `vector(1536)`, `timestamp with time zone`, … */
  type: string;
  notNull: boolean;
  default: string | null;
  comment: string | null;
  kind: ColumnKind;
  /** The current role may read it (column grants: a service role may see only some columns). */
  readable: boolean;
}

/** A table of the public schema. */
export interface TableInfo {
  name: string;
  comment: string | null;
  columns: ColumnInfo[];
  /** The primary key's columns in key order (empty when the table has none: the browser pages by ctid). */
  primaryKey: string[];
  rlsEnabled: boolean;
  rlsForced: boolean;
  /** The planner's estimate (pg_class.reltuples); null when the table was never analyzed. */
  estimatedRows: number | null;
  indexes: { name: string; definition: string }[];
}

/**
 * Columns whose stored values the studio never shows, only their length: secrets at rest and the
 * hashes that stand for them, which a screen share or a screenshot must not carry.
 */
export const SECRET_COLUMNS: ReadonlySet<string> = new Set(['providers.api_key', 'users.api_key_hash', 'user_tools.credential']);

/** Names of the public schema's tables (the migrator's ledger excepted: the overview lists migrations). */
export async function listTableNames(db: Kysely<any>): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`
    select c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public' and c.relkind in ('r', 'p') and c.relname <> ${LEDGER_TABLE}
    order by c.relname`.execute(db.withoutPlugins());
  return rows.map((r) => r.name);
}

/** The table named `name` in the public schema, or undefined when there is none. */
export async function findTable(db: Kysely<any>, name: string): Promise<TableInfo | undefined> {
  const conn = db.withoutPlugins();
  const { rows: tables } = await sql<{
    oid: string;
    comment: string | null;
    rls_enabled: boolean;
    rls_forced: boolean;
    reltuples: number | string;
  }>`
    select c.oid::text as oid, obj_description(c.oid, 'pg_class') as comment, c.relrowsecurity as rls_enabled,
           c.relforcerowsecurity as rls_forced, c.reltuples
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public' and c.relkind in ('r', 'p') and c.relname = ${name} and c.relname <> ${LEDGER_TABLE}`.execute(conn);
  const table = tables[0];
  if (table === undefined) return undefined;
  // One after the other: a transaction is one connection.
  const columns = await sql<{
    name: string;
    type: string;
    typname: string;
    not_null: boolean;
    default: string | null;
    comment: string | null;
    readable: boolean;
  }>`
      select a.attname as name, format_type(a.atttypid, a.atttypmod) as type, t.typname, a.attnotnull as not_null,
             pg_get_expr(d.adbin, d.adrelid) as default, col_description(a.attrelid, a.attnum) as comment,
             has_column_privilege(a.attrelid, a.attnum, 'SELECT') as readable
      from pg_attribute a
      join pg_type t on t.oid = a.atttypid
      left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
      where a.attrelid = ${table.oid}::oid and a.attnum > 0 and not a.attisdropped
      order by a.attnum`.execute(conn);
  const key = await sql<{ name: string }>`
      select a.attname as name
      from pg_constraint k
      cross join lateral unnest(k.conkey) with ordinality as u(attnum, position)
      join pg_attribute a on a.attrelid = k.conrelid and a.attnum = u.attnum
      where k.conrelid = ${table.oid}::oid and k.contype = 'p'
      order by u.position`.execute(conn);
  const indexes = await sql<{ name: string; definition: string }>`
      select c.relname as name, pg_get_indexdef(i.indexrelid) as definition
      from pg_index i join pg_class c on c.oid = i.indexrelid
      where i.indrelid = ${table.oid}::oid
      order by c.relname`.execute(conn);
  const reltuples = Number(table.reltuples);
  return {
    name,
    comment: table.comment,
    columns: columns.rows.map((c) => ({
      name: c.name,
      type: c.type,
      notNull: c.not_null,
      default: c.default,
      comment: c.comment,
      kind: columnKind(name, c.name, c.typname),
      readable: c.readable,
    })),
    primaryKey: key.rows.map((k) => k.name),
    rlsEnabled: table.rls_enabled,
    rlsForced: table.rls_forced,
    estimatedRows: reltuples < 0 ? null : reltuples,
    indexes: indexes.rows,
  };
}

function columnKind(table: string, column: string, typname: string): ColumnKind {
  if (SECRET_COLUMNS.has(`${table}.${column}`)) return 'secret';
  if (typname === 'vector') return 'vector';
  if (typname === 'json' || typname === 'jsonb') return 'json';
  if (typname === 'bytea') return 'bytea';
  return 'text';
}
