import { sql, type Kysely } from 'kysely';
import type { SeedProblem } from './errors.ts';
import type { LoadedFile } from './load.ts';

const KEYS_PER_QUERY = 1000;

/**
 * Checks the foreign keys of a loaded file before anything is written: the row each one references
 * must be in the seed data loaded up to this file (`seeded`, this file included) or already in the
 * database. Appends one problem per row whose referenced row is in neither. A key with a NULL part
 * is not checked (MATCH SIMPLE, as PostgreSQL does).
 */
export async function checkForeignKeys(
  db: Kysely<any>,
  loaded: LoadedFile,
  seeded: LoadedFile[],
  problems: SeedProblem[],
): Promise<void> {
  const byTable = new Map(seeded.map((f) => [f.table.name, f]));
  const names = loaded.columns.map((c) => c.name);
  for (const fk of loaded.table.foreignKeys) {
    const positions = fk.columns.map((c) => names.indexOf(c));
    if (positions.some((p) => p === -1)) continue; // not given: the column default applies

    const inSeed = seedKeys(byTable.get(fk.refTable), fk.refColumns);
    const unresolved = new Map<string, { values: string[]; shown: string[]; rows: { line: number; column: string }[] }>();
    for (const row of loaded.rows) {
      if (positions.some((p) => row.failed.has(p) || row.values[p] === null)) continue;
      const values = positions.map((p) => row.values[p]!);
      const id = JSON.stringify(values);
      if (inSeed.has(id)) continue;
      // A value from env: is shown as its reference, never as itself.
      const entry = unresolved.get(id) ?? { values, shown: positions.map((p, i) => row.secrets.get(p) ?? values[i]!), rows: [] };
      entry.rows.push({ line: row.lines[positions[0]!]!, column: fk.columns[0]! });
      unresolved.set(id, entry);
    }
    if (unresolved.size === 0) continue;

    const found = await keysInDatabase(db, fk.refTable, fk.refColumns, fk.refCastTypes, [...unresolved.values()].map((e) => e.values));
    [...unresolved.values()].forEach((entry, index) => {
      if (found.has(index)) return;
      const what = fk.refColumns.map((c, i) => `${c} = ${entry.shown[i]}`).join(' and ');
      const refFile = byTable.get(fk.refTable)?.file.name;
      for (const row of entry.rows) {
        problems.push({
          file: loaded.file.display,
          line: row.line,
          column: row.column,
          message: `no ${fk.refTable} row with ${what}, neither in ${refFile ?? 'the seed files'} nor in the database (foreign key ${fk.name})`,
        });
      }
    });
  }
}

/** The keys `columns` of a loaded file's rows, as JSON arrays of their converted values. */
function seedKeys(loaded: LoadedFile | undefined, columns: string[]): Set<string> {
  const keys = new Set<string>();
  if (loaded === undefined) return keys;
  const positions = columns.map((c) => loaded.columns.findIndex((col) => col.name === c));
  if (positions.some((p) => p === -1)) return keys;
  for (const row of loaded.rows) {
    if (positions.some((p) => row.failed.has(p))) continue;
    keys.add(JSON.stringify(positions.map((p) => row.values[p])));
  }
  return keys;
}

/** Indexes (into `keys`) of the keys that some row of `table` has. */
async function keysInDatabase(
  db: Kysely<any>,
  table: string,
  columns: string[],
  castTypes: string[],
  keys: string[][],
): Promise<Set<number>> {
  const found = new Set<number>();
  for (let start = 0; start < keys.length; start += KEYS_PER_QUERY) {
    const chunk = keys.slice(start, start + KEYS_PER_QUERY);
    const values = sql.join(
      chunk.map(
        (key, i) => sql`(${sql.lit(start + i)}, ${sql.join(key.map((v, c) => sql`${v}::text::${sql.raw(castTypes[c]!)}`))})`,
      ),
    );
    const aliases = columns.map((_, i) => sql.id(`k${i}`));
    const match = sql.join(
      columns.map((c, i) => sql`r.${sql.id(c)} = k.${aliases[i]!}`),
      sql` and `,
    );
    const { rows } = await sql<{ i: number }>`
      select k.i from (values ${values}) as k(i, ${sql.join(aliases)})
      where exists (select from ${sql.raw(table)} as r where ${match})`.execute(db);
    for (const row of rows) found.add(Number(row.i));
  }
  return found;
}
