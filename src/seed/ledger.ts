import { sql, type Kysely, type RawBuilder } from 'kysely';

/**
 * The seed's ledger (migration 0008): per seeded row, a sha256 of each value the seed last wrote
 * to it. A row whose values still hash as recorded is the seed's to update; one that does not was
 * changed since by someone else, and is kept.
 */
export const SEED_LEDGER_TABLE = 'app.seed_rows';

/** Column name → sha256 hex of the value's text form as stored, null for NULL. */
export type RowHashes = Record<string, string | null>;

/** A ledger entry: the row's table, its primary key values as text, and the hashes. */
export interface LedgerEntry {
  table: string;
  key: string[];
  hashes: RowHashes;
}

/**
 * SQL for the sha256 hex of a value's text form (NULL stays NULL). The text form is what `::text`
 * prints, which is exact for the catalog's types (numeric keeps its scale, jsonb is normalized);
 * types whose text depends on session settings (timestamptz on TimeZone, floats on
 * extra_float_digits) would hash differently under other settings — the seed tables have none.
 */
export function hashOf(value: RawBuilder<unknown>): RawBuilder<string | null> {
  return sql<string | null>`encode(sha256(convert_to(${value}, 'UTF8')), 'hex')`;
}

/** SQL for a text[] of the given expressions (`'{}'` when there are none). */
export function textArray(items: RawBuilder<unknown>[]): RawBuilder<string[]> {
  return items.length === 0 ? sql<string[]>`'{}'::text[]` : sql<string[]>`array[${sql.join(items)}]::text[]`;
}

/** The ledger entry of the row `key` joined to a query: `left join app.seed_rows as l on …`. */
export function ledgerJoin(table: string, key: RawBuilder<string[]>, alias: string): RawBuilder<unknown> {
  return sql`left join ${sql.raw(SEED_LEDGER_TABLE)} as ${sql.id(alias)}
             on ${sql.id(alias)}.table_name = ${table} and ${sql.id(alias)}.row_key = ${key}`;
}

const ENTRIES_PER_STATEMENT = 500;

/**
 * Writes ledger entries (insert, or replace the hashes of an existing entry when they differ), in
 * the caller's transaction: an entry already as given is not rewritten.
 */
export async function recordRows(tx: Kysely<any>, entries: LedgerEntry[]): Promise<void> {
  for (let start = 0; start < entries.length; start += ENTRIES_PER_STATEMENT) {
    const chunk = entries.slice(start, start + ENTRIES_PER_STATEMENT);
    const values = sql.join(
      chunk.map((e) => sql`(${e.table}, ${textArray(e.key.map((k) => sql`${k}::text`))}, ${JSON.stringify(e.hashes)}::jsonb)`),
    );
    await sql`
      insert into ${sql.raw(SEED_LEDGER_TABLE)} as cur (table_name, row_key, hashes)
      values ${values}
      on conflict (table_name, row_key) do update set hashes = excluded.hashes
      where cur.hashes is distinct from excluded.hashes`.execute(tx);
  }
}

/** True when the ledger table exists (migration 0008 applied). */
export async function ledgerExists(tx: Kysely<any>): Promise<boolean> {
  const { rows } = await sql<{ found: boolean }>`select to_regclass(${SEED_LEDGER_TABLE}) is not null as found`.execute(tx);
  return rows[0]?.found === true;
}
