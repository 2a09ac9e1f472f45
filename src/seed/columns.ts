import { sql, type Kysely } from 'kysely';

/** A column of a table, as the catalog (pg_attribute, pg_type) describes it. */
export interface ColumnInfo {
  name: string;
  /** The column's type as a cast target, without its modifier: `integer`, `numeric`, `jsonb`, `vector`, a domain. */
  castType: string;
  /** The column's full type with its modifier, as format_type prints it: `numeric(10,2)`, `vector(1536)`, `text`. */
  fullType: string;
  /** pg_type name of the base type (a domain's base): `int4`, `numeric`, `jsonb`, `uuid`, `vector`, `_text`, … */
  baseType: string;
  /** typcategory of the base type: `A` array, `E` enum, `N` numeric, `S` string, `B` boolean, `U` user-defined, … */
  category: string;
  /** The type modifier: vector dimensions, varchar/char length + 4; -1 when none. */
  typmod: number;
  notNull: boolean;
  hasDefault: boolean;
  /** `a` generated always as identity, `d` by default, '' not an identity column. */
  identity: '' | 'a' | 'd';
  /** A stored generated column: never written. */
  generated: boolean;
  /** The sequence of an identity or serial column (a qualified, quoted name), else null. */
  sequence: string | null;
  /** The labels of an enum type, else null. */
  enumLabels: string[] | null;
}

/** A foreign key of a table: its columns, and the table and columns (with their types) it references. */
export interface ForeignKeyInfo {
  name: string;
  columns: string[];
  refTable: string;
  refColumns: string[];
  refCastTypes: string[];
}

/** What the seed needs to know about a table to convert, check and upsert its rows. */
export interface TableInfo {
  name: string;
  /** In column order. */
  columns: Map<string, ColumnInfo>;
  primaryKey: string[];
  /** Unique indexes without expressions or predicates, the primary key among them. */
  uniqueKeys: { name: string; columns: string[] }[];
  foreignKeys: ForeignKeyInfo[];
  /** Columns of every constraint and unique index by name: maps a database error back to a column. */
  constraintColumns: Map<string, string[]>;
}

interface ColumnRow {
  table_name: string;
  name: string;
  cast_type: string;
  full_type: string;
  base_type: string;
  category: string;
  typmod: number;
  not_null: boolean;
  has_default: boolean;
  identity: '' | 'a' | 'd';
  generated: boolean;
  sequence: string | null;
  enum_labels: string[] | null;
}

interface ConstraintRow {
  table_name: string;
  name: string;
  type: string;
  columns: string[];
  ref_table: string | null;
  ref_columns: string[];
  ref_cast_types: string[];
}

interface IndexRow {
  table_name: string;
  name: string;
  is_primary: boolean;
  columns: string[];
}

/**
 * Reads the columns, keys and constraints of `tables` from the catalog. Names are resolved like the
 * seed's unqualified SQL resolves them (through the search_path); a table that does not exist is
 * absent from the result.
 */
export async function readTables(db: Kysely<any>, tables: readonly string[]): Promise<Map<string, TableInfo>> {
  const conn = db.withoutPlugins();
  const result = new Map<string, TableInfo>();
  if (tables.length === 0) return result;
  const wanted = sql`(select to_regclass(quote_ident(x.name)) as oid, x.name
                      from (values ${sql.join(tables.map((t) => sql`(${t}::text)`))}) as x(name))`;

  const { rows: columns } = await sql<ColumnRow>`
    with wanted as ${wanted}
    select w.name as table_name,
           a.attname::text as name,
           a.atttypid::regtype::text as cast_type,
           format_type(a.atttypid, a.atttypmod) as full_type,
           base.typname::text as base_type,
           base.typcategory::text as category,
           a.atttypmod as typmod,
           a.attnotnull as not_null,
           a.atthasdef as has_default,
           a.attidentity::text as identity,
           a.attgenerated <> '' as generated,
           pg_get_serial_sequence(w.oid::regclass::text, a.attname) as sequence,
           case when base.typtype = 'e' then
             array(select e.enumlabel::text from pg_enum e where e.enumtypid = base.oid order by e.enumsortorder)
           end as enum_labels
    from wanted w
    join pg_attribute a on a.attrelid = w.oid and a.attnum > 0 and not a.attisdropped
    join pg_type t on t.oid = a.atttypid
    join pg_type base on base.oid = case when t.typtype = 'd' then t.typbasetype else t.oid end
    order by w.name, a.attnum`.execute(conn);

  const { rows: constraints } = await sql<ConstraintRow>`
    with wanted as ${wanted}
    select w.name as table_name,
           c.conname::text as name,
           c.contype::text as type,
           array(select a.attname::text from unnest(c.conkey) with ordinality k(num, i)
                 join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.num order by k.i) as columns,
           case when c.contype = 'f' then c.confrelid::regclass::text end as ref_table,
           array(select a.attname::text from unnest(coalesce(c.confkey, '{}')) with ordinality k(num, i)
                 join pg_attribute a on a.attrelid = c.confrelid and a.attnum = k.num order by k.i) as ref_columns,
           array(select a.atttypid::regtype::text from unnest(coalesce(c.confkey, '{}')) with ordinality k(num, i)
                 join pg_attribute a on a.attrelid = c.confrelid and a.attnum = k.num order by k.i) as ref_cast_types
    from wanted w
    join pg_constraint c on c.conrelid = w.oid
    order by w.name, c.conname`.execute(conn);

  const { rows: indexes } = await sql<IndexRow>`
    with wanted as ${wanted}
    select w.name as table_name,
           (select ic.relname::text from pg_class ic where ic.oid = i.indexrelid) as name,
           i.indisprimary as is_primary,
           array(select a.attname::text from unnest(i.indkey::int2[]) with ordinality k(num, n)
                 join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.num order by k.n) as columns
    from wanted w
    join pg_index i on i.indrelid = w.oid
    where i.indisunique and i.indpred is null and 0 <> all (i.indkey::int2[])
    order by w.name, i.indisprimary desc, 2`.execute(conn);

  for (const row of columns) {
    let table = result.get(row.table_name);
    if (table === undefined) {
      table = {
        name: row.table_name,
        columns: new Map(),
        primaryKey: [],
        uniqueKeys: [],
        foreignKeys: [],
        constraintColumns: new Map(),
      };
      result.set(row.table_name, table);
    }
    table.columns.set(row.name, {
      name: row.name,
      castType: row.cast_type,
      fullType: row.full_type,
      baseType: row.base_type,
      category: row.category,
      typmod: row.typmod,
      notNull: row.not_null,
      hasDefault: row.has_default,
      identity: row.identity,
      generated: row.generated,
      sequence: row.sequence,
      enumLabels: row.enum_labels,
    });
  }
  for (const row of constraints) {
    const table = result.get(row.table_name);
    if (table === undefined) continue;
    table.constraintColumns.set(row.name, row.columns);
    if (row.type === 'p') table.primaryKey = row.columns;
    if (row.type === 'f' && row.ref_table !== null) {
      table.foreignKeys.push({
        name: row.name,
        columns: row.columns,
        refTable: row.ref_table,
        refColumns: row.ref_columns,
        refCastTypes: row.ref_cast_types,
      });
    }
  }
  for (const row of indexes) {
    const table = result.get(row.table_name);
    if (table === undefined) continue;
    table.constraintColumns.set(row.name, row.columns);
    table.uniqueKeys.push({ name: row.name, columns: row.columns });
    if (row.is_primary && table.primaryKey.length === 0) table.primaryKey = row.columns;
  }
  return result;
}
