import { sql, type Kysely, type RawBuilder } from 'kysely';
import { sqlState } from '../db/errors.ts';
import type { ColumnInfo, TableInfo } from './columns.ts';
import type { SeedProblem } from './errors.ts';
import type { LoadedFile, SeedRow } from './load.ts';

/** What the upsert of one file did to its rows. */
export interface UpsertCounts {
  inserted: number;
  updated: number;
  unchanged: number;
}

// Bind parameters per statement stay far below PostgreSQL's 65,535.
const PARAMETERS_PER_BATCH = 10_000;
const MAX_ROWS_PER_BATCH = 500;

/**
 * Upserts a loaded file's rows by primary key inside the caller's transaction:
 * `insert … on conflict (pk) do update set … where (row) is distinct from (excluded)`, so a row
 * equal to its file line is not rewritten (its updated_at and xmin stay). Rows go in batches, each
 * under a savepoint; a batch the database refuses is retried row by row, so every refused row is
 * appended to `problems` with its line and column. The caller rolls back when there are problems.
 */
export async function upsertRows(tx: Kysely<any>, loaded: LoadedFile, problems: SeedProblem[]): Promise<UpsertCounts> {
  const counts: UpsertCounts = { inserted: 0, updated: 0, unchanged: 0 };
  const size = Math.max(1, Math.min(MAX_ROWS_PER_BATCH, Math.floor(PARAMETERS_PER_BATCH / Math.max(1, loaded.columns.length))));
  for (let start = 0; start < loaded.rows.length; start += size) {
    const batch = loaded.rows.slice(start, start + size);
    await sql`savepoint seed_batch`.execute(tx);
    try {
      add(counts, batch.length, await upsertStatement(loaded.table, loaded.columns, batch).execute(tx));
      await sql`release savepoint seed_batch`.execute(tx);
      continue;
    } catch (error) {
      if (rowProblem(error) === undefined) throw error;
      await sql`rollback to savepoint seed_batch`.execute(tx);
      await sql`release savepoint seed_batch`.execute(tx);
    }
    for (const row of batch) {
      await sql`savepoint seed_row`.execute(tx);
      try {
        add(counts, 1, await upsertStatement(loaded.table, loaded.columns, [row]).execute(tx));
        await sql`release savepoint seed_row`.execute(tx);
      } catch (error) {
        const problem = rowProblem(error);
        if (problem === undefined) throw error;
        await sql`rollback to savepoint seed_row`.execute(tx);
        await sql`release savepoint seed_row`.execute(tx);
        problems.push(locate(problem, loaded, row));
      }
    }
  }
  return counts;
}

function add(counts: UpsertCounts, total: number, result: { rows: { inserted: boolean }[] }): void {
  const inserted = result.rows.filter((r) => r.inserted).length;
  counts.inserted += inserted;
  counts.updated += result.rows.length - inserted;
  counts.unchanged += total - result.rows.length;
}

/**
 * The upsert of `rows`. Values are bound as text and cast to the column's type by the server
 * (`$1::text::numeric`): exact for numerics, and the same on pg and PGlite. Returned rows are
 * the inserted (`xmax = 0`) and updated ones; rows the WHERE skipped are unchanged. Columns are
 * compared as text, which is exact for numerics (0.0030 ≠ 0.003) and works for types without `=`.
 */
function upsertStatement(table: TableInfo, columns: ColumnInfo[], rows: SeedRow[]): RawBuilder<{ inserted: boolean }> {
  const names = sql.join(columns.map((c) => sql.id(c.name)));
  const values = sql.join(
    rows.map(
      (row) =>
        sql`(${sql.join(row.values.map((v, i) => (v === null ? sql`null` : sql`${v}::text::${sql.raw(columns[i]!.castType)}`)))})`,
    ),
  );
  const rest = columns.filter((c) => !table.primaryKey.includes(c.name));
  const action =
    rest.length === 0
      ? sql`do nothing`
      : sql`do update set ${sql.join(rest.map((c) => sql`${sql.id(c.name)} = excluded.${sql.id(c.name)}`))}
            where (${sql.join(rest.map((c) => sql`cur.${sql.id(c.name)}::text`))})
                  is distinct from (${sql.join(rest.map((c) => sql`excluded.${sql.id(c.name)}::text`))})`;
  const overriding = columns.some((c) => c.identity === 'a') ? sql`overriding system value` : sql``;
  return sql<{ inserted: boolean }>`
    insert into ${sql.table(table.name)} as cur (${names}) ${overriding}
    values ${values}
    on conflict (${sql.join(table.primaryKey.map((c) => sql.id(c)))}) ${action}
    returning (xmax = 0) as inserted`;
}

interface DbProblem {
  code: string;
  message: string;
  constraint: string | undefined;
  column: string | undefined;
}

/** A database error that concerns the row (bad data, a constraint, row-level security), else undefined. */
function rowProblem(error: unknown): DbProblem | undefined {
  const code = sqlState(error);
  if (code === undefined || !/^(22|23|44|P0)|^42501$/.test(code)) return undefined;
  const e = error as { message: string; detail?: string; constraint?: string; column?: string; table?: string };
  const hint =
    code === '42501'
      ? ' (the seed writes past row-level security: run it as a superuser or a role with BYPASSRLS)'
      : '';
  return {
    code,
    message: `${e.message}${e.detail ? ` (${e.detail.replace(/\.$/, '')})` : ''}${hint}`,
    constraint: e.constraint || undefined,
    column: e.column || undefined,
  };
}

/** The problem at the row's line, on the column the error names, or the first column of its constraint. */
function locate(problem: DbProblem, loaded: LoadedFile, row: SeedRow): SeedProblem {
  const names = loaded.columns.map((c) => c.name);
  const candidates = [
    ...(problem.column === undefined ? [] : [problem.column]),
    ...(problem.constraint === undefined ? [] : (loaded.table.constraintColumns.get(problem.constraint) ?? [])),
  ];
  const column = candidates.find((c) => names.includes(c)) ?? '';
  const line = column === '' ? row.line : row.lines[names.indexOf(column)]!;
  return { file: loaded.file.display, line, column, message: `${problem.message} (SQLSTATE ${problem.code})` };
}
