/**
 * The table browser's query: one page of a table in primary-key order, keyset-paginated (the
 * page after or before the key of a row; never OFFSET, never count(*)), optionally filtered on one
 * column. Identifiers come from the catalog (see catalog.ts) and are quoted; values are bound
 * parameters whose type PostgreSQL infers from the column they are compared with.
 */
import { sql, type Kysely, type RawBuilder } from 'kysely';
import { ValidationError } from '../db/errors.ts';
import { ColumnPermissionError } from './errors.ts';
import type { ColumnInfo, TableInfo } from './catalog.ts';

/** How a filter compares a column with its value. */
export const FILTER_OPS = ['eq', 'contains', 'null', 'notnull'] as const;
/** One of {@link FILTER_OPS}. */
export type FilterOp = (typeof FILTER_OPS)[number];

/** Rows on one page by default. */
export const DEFAULT_PAGE_SIZE = 50;
/** Most rows on one page (`limit`). */
export const MAX_PAGE_SIZE = 500;
/** Longest text shown of one value (the rest is counted, not fetched). */
export const MAX_VALUE_CHARS = 4000;
/** How many leading components of a vector are shown. */
export const VECTOR_HEAD = 6;

/** A filter on one column of the table. */
export interface RowFilter {
  column: string;
  op: FilterOp;
  /** The value for `eq` (equality, in the column's type) and `contains` (case-insensitive, on its text). */
  value: string;
}

/** What to fetch. */
export interface RowsQuery {
  limit: number;
  /** The page after the row with this key (values as text, in key order). */
  after?: string[] | undefined;
  /** The page before the row with this key. */
  before?: string[] | undefined;
  filter?: RowFilter | undefined;
}

/** One value as the browser shows it. */
export type Cell =
  | { kind: 'null' }
  | { kind: 'text'; text: string; length: number }
  | { kind: 'json'; text: string; length: number }
  | { kind: 'vector'; dimensions: number; norm: number; head: number[] }
  | { kind: 'bytea'; bytes: number; headHex: string }
  | { kind: 'secret'; length: number }
  /** The role may not read this column (column grants). */
  | { kind: 'denied' };

/** One page of rows, with the keys to ask for the pages around it. */
export interface RowPage {
  /** The columns paged by: the primary key, or `ctid` for a table without one. */
  keyColumns: string[];
  rows: { key: string[]; cells: Cell[] }[];
  /** Key of the first and last row of the page (null when the page is empty). */
  firstKey: string[] | null;
  lastKey: string[] | null;
  hasNext: boolean;
  hasPrevious: boolean;
}

/** A keyset cursor as it travels in a URL: base64url of a JSON array of strings. */
export function encodeKey(key: string[]): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
}

/** Reads a cursor made by {@link encodeKey} for a key of `width` columns; ValidationError(`field`) otherwise. */
export function decodeKey(field: string, text: string, width: number): string[] {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    throw new ValidationError(field, 'is not a cursor of this table (follow the page links)');
  }
  if (!Array.isArray(value) || value.length !== width || !value.every((v) => typeof v === 'string')) {
    throw new ValidationError(field, 'is not a cursor of this table (follow the page links)');
  }
  return value as string[];
}

/** Checks a filter against the table's columns; ValidationError naming what is wrong. */
export function checkFilter(table: TableInfo, filter: { column: string; op: string; value: string }): RowFilter {
  const column = table.columns.find((c) => c.name === filter.column);
  if (column === undefined) {
    throw new ValidationError('column', `table ${table.name} has no column ${JSON.stringify(filter.column)}`);
  }
  if (!(FILTER_OPS as readonly string[]).includes(filter.op)) {
    throw new ValidationError('op', `must be one of ${FILTER_OPS.join(', ')}, got ${JSON.stringify(filter.op)}`);
  }
  if (!column.readable) {
    throw new ValidationError('column', `this role may not read ${table.name}.${column.name}`);
  }
  if (column.kind === 'secret' && (filter.op === 'eq' || filter.op === 'contains')) {
    throw new ValidationError('column', `${table.name}.${column.name} holds a secret: it can be filtered on null / not null only`);
  }
  return { column: column.name, op: filter.op as FilterOp, value: filter.value };
}

/** One page of `table` (run it in a read-only transaction: as the owner, or as a tenant). */
export async function fetchRows(db: Kysely<any>, table: TableInfo, query: RowsQuery): Promise<RowPage> {
  const keyColumns = table.primaryKey.length > 0 ? table.primaryKey : ['ctid'];
  if (!table.columns.some((c) => c.readable)) {
    throw new ColumnPermissionError(table.name, `this role holds no SELECT on table ${table.name}, on none of its columns`);
  }
  const hidden = keyColumns.filter((k) => table.columns.some((c) => c.name === k && !c.readable));
  if (hidden.length > 0) {
    throw new ColumnPermissionError(table.name, `this role may not read ${hidden.join(', ')} of ${table.name}, its key: rows cannot be paged`);
  }
  const backwards = query.before !== undefined;
  const cursor = query.before ?? query.after;
  const keys = sql.join(keyColumns.map((k) => sql.id(k)));
  const where: RawBuilder<unknown>[] = [];
  if (cursor !== undefined) {
    const values = sql.join(cursor.map((v) => sql`${v}`));
    where.push(backwards ? sql`(${keys}) < (${values})` : sql`(${keys}) > (${values})`);
  }
  if (query.filter !== undefined) where.push(filterCondition(query.filter));
  const direction = backwards ? sql`desc` : sql`asc`;
  const selectList = sql.join([
    ...keyColumns.map((k, i) => sql`${sql.id(k)}::text as ${sql.id(`k${i}`)}`),
    ...table.columns.flatMap((c, i) => columnSelect(c, i)),
  ]);
  const { rows } = await sql<Record<string, unknown>>`
    select ${selectList}
    from ${sql.id(table.name)}
    ${where.length === 0 ? sql`` : sql`where ${sql.join(where, sql` and `)}`}
    order by ${sql.join(keyColumns.map((k) => sql`${sql.id(k)} ${direction}`))}
    limit ${query.limit + 1}`.execute(db.withoutPlugins());

  const more = rows.length > query.limit;
  const page = rows.slice(0, query.limit);
  if (backwards) page.reverse();
  const result = page.map((row) => ({
    key: keyColumns.map((_, i) => String(row[`k${i}`])),
    cells: table.columns.map((c, i) => readCell(c, i, row)),
  }));
  return {
    keyColumns,
    rows: result,
    firstKey: result[0]?.key ?? null,
    lastKey: result.at(-1)?.key ?? null,
    hasNext: backwards ? true : more,
    hasPrevious: backwards ? more : cursor !== undefined,
  };
}

function filterCondition(filter: RowFilter): RawBuilder<unknown> {
  const column = sql.id(filter.column);
  switch (filter.op) {
    case 'eq':
      // An untyped parameter: PostgreSQL reads it as the column's type (so an index on it serves).
      return sql`${column} = ${filter.value}`;
    case 'contains':
      return sql`${column}::text ilike ${`%${filter.value.replace(/[\\%_]/g, (c) => `\\${c}`)}%`}`;
    case 'null':
      return sql`${column} is null`;
    case 'notnull':
      return sql`${column} is not null`;
  }
}

/** The select-list items of column `i`: only what is shown is fetched (a vector's head, a text's start). */
function columnSelect(column: ColumnInfo, i: number): RawBuilder<unknown>[] {
  if (!column.readable) return [];
  const ref = sql.id(column.name);
  const as = (prefix: string) => sql.id(`${prefix}${i}`);
  switch (column.kind) {
    case 'vector':
      return [
        sql`vector_dims(${ref}) as ${as('d')}`,
        sql`vector_norm(${ref}) as ${as('n')}`,
        sql`subvector(${ref}, 1, least(vector_dims(${ref}), ${sql.lit(VECTOR_HEAD)}))::text as ${as('v')}`,
      ];
    case 'bytea':
      return [sql`length(${ref}) as ${as('l')}`, sql`encode(substring(${ref} from 1 for 16), 'hex') as ${as('v')}`];
    case 'secret':
      return [sql`length(${ref}::text) as ${as('l')}`];
    default:
      return [sql`left(${ref}::text, ${sql.lit(MAX_VALUE_CHARS)}) as ${as('v')}`, sql`length(${ref}::text) as ${as('l')}`];
  }
}

function readCell(column: ColumnInfo, i: number, row: Record<string, unknown>): Cell {
  if (!column.readable) return { kind: 'denied' };
  switch (column.kind) {
    case 'vector': {
      const head = row[`v${i}`];
      if (head === null || head === undefined) return { kind: 'null' };
      const inner = String(head).slice(1, -1);
      return {
        kind: 'vector',
        dimensions: Number(row[`d${i}`]),
        norm: Number(row[`n${i}`]),
        head: inner === '' ? [] : inner.split(',').map(Number),
      };
    }
    case 'bytea':
      return row[`l${i}`] === null ? { kind: 'null' } : { kind: 'bytea', bytes: Number(row[`l${i}`]), headHex: String(row[`v${i}`]) };
    case 'secret':
      return row[`l${i}`] === null ? { kind: 'null' } : { kind: 'secret', length: Number(row[`l${i}`]) };
    default: {
      const value = row[`v${i}`];
      if (value === null || value === undefined) return { kind: 'null' };
      return { kind: column.kind === 'json' ? 'json' : 'text', text: String(value), length: Number(row[`l${i}`]) };
    }
  }
}
