import { createHash } from 'node:crypto';
import { sql, type Kysely, type RawBuilder } from 'kysely';
import { constraintOf, sqlState } from '../db/errors.ts';
import type { ColumnInfo } from './columns.ts';
import type { SeedProblem } from './errors.ts';
import { hashOf, ledgerJoin, recordRows, textArray, type LedgerEntry, type RowHashes } from './ledger.ts';
import type { LoadedFile, SeedRow } from './load.ts';
import { compareSealed, sealSecret, takeSealedFields } from './sealed-columns.ts';

/** A catalog row the seed did not write as its file gives it (kept), or overwrote with `force`. */
export interface SeedRowRef {
  table: string;
  /** The row's primary key as the summary shows it: `5`, or `(1, 3)` for a composite key. */
  key: string;
  /** The seed file and the line the row is on. */
  file: string;
  line: number;
  /**
   * `changed`: its values differ from what the seed last wrote (the ledger); `unrecorded`: the
   * ledger has no record of the seed writing it (a database seeded before the ledger existed, or a
   * row someone else created) and it differs from its line.
   */
  reason: 'changed' | 'unrecorded';
  /** The columns concerned: changed since the last seed (`changed`), or differing from the line (`unrecorded`). */
  columns: string[];
}

/** An `env:` field whose variable is unset or empty. */
export interface AbsentField {
  file: string;
  line: number;
  column: string;
  table: string;
  variable: string;
  why: 'not set' | 'empty';
  /** `kept`: the stored value stays; `null`: a new row, written with NULL. */
  outcome: 'kept' | 'null';
}

/** What writing one file did to its rows. */
export interface WriteOutcome {
  inserted: number;
  updated: number;
  /** Rows equal to their line, not rewritten. */
  unchanged: number;
  /** Rows found equal to their line with no (or an outdated) ledger entry: only the entry was written. */
  recorded: number;
  kept: SeedRowRef[];
  overwritten: SeedRowRef[];
  absent: AbsentField[];
}

// Bind parameters per statement stay far below PostgreSQL's 65,535.
const PARAMETERS_PER_BATCH = 10_000;
const MAX_ROWS_PER_BATCH = 500;

/** What the database and the ledger hold for one row of the file. */
interface RowState {
  /** The row's key as the database prints it. */
  key: string[];
  exists: boolean;
  /** Per data column (non-key, in file order): hash of the stored value, and of the line's value. */
  db: (string | null)[];
  csv: (string | null)[];
  ledger: RowHashes | null;
  /** Per sealed column (in the order asked for): the stored text, to compare by its plaintext. */
  stored: (string | null)[];
}

/**
 * Writes a loaded file's rows in the caller's transaction without clobbering (README, "Seed
 * data"). Each row is compared with the database and with the ledger, what the seed last wrote:
 * - not in the database: inserted;
 * - as the seed last wrote it (every recorded value unchanged): updated when its line differs;
 * - changed since (or never recorded and different from its line): kept and reported, unless
 *   `force`, which overwrites it;
 * - equal to its line: not rewritten (its xmin and updated_at stay); only a missing or outdated
 *   ledger entry is written.
 * An `env:` field whose variable is unset keeps the stored value (a new row gets NULL). Existing
 * rows are locked (`for update`) before they are compared, so nobody changes them in between.
 * Statements go in batches, each under a savepoint; a batch the database refuses is retried row by
 * row, so every refused row is appended to `problems` with its line and column (and `env:` values
 * masked). The caller rolls back when there are problems.
 */
export async function writeRows(tx: Kysely<any>, loaded: LoadedFile, options: { force: boolean }, problems: SeedProblem[]): Promise<WriteOutcome> {
  const outcome: WriteOutcome = { inserted: 0, updated: 0, unchanged: 0, recorded: 0, kept: [], overwritten: [], absent: [] };
  const shape = shapeOf(loaded);
  // Encrypted columns (providers.api_key): compared by plaintext here, not by the hash of their
  // random ciphertext in SQL, so that a second run with the same value writes nothing.
  const sealed = takeSealedFields(tx, loaded);
  const states = await readStates(tx, loaded, shape, sealed.fields.map((f) => f.position));

  const stateOf = new Map(loaded.rows.map((row, i) => [row, states[i]!] as const));
  const shownKey = (key: string[]) => (key.length === 1 ? key[0]! : `(${key.join(', ')})`);
  const inserts: SeedRow[] = [];
  const updates = new Map<string, SeedRow[]>(); // by the set of absent columns: one statement shape each
  const ledger = new Map<SeedRow, LedgerEntry>();
  const queueUpdate = (row: SeedRow) => {
    const mask = [...row.absent.keys()].sort((a, b) => a - b).join(',');
    const group = updates.get(mask) ?? [];
    group.push(row);
    updates.set(mask, group);
  };
  loaded.rows.forEach((row, index) => {
    const state = states[index]!;
    let reseal = false;
    sealed.fields.forEach(({ position, binding }, i) => {
      const plaintext = sealed.plaintexts.get(row)?.get(position);
      if (plaintext === undefined) return; // NULL, or an unset env: variable
      const where = binding(state.key);
      if (state.exists) {
        const verdict = compareSealed(sealed.ring!, state.stored[i]!, plaintext, where);
        const at = shape.data.indexOf(position);
        state.csv[at] = verdict === 'differs' ? 'unlike the stored value' : state.db[at]!;
        if (verdict === 'reseal') reseal = true;
      }
      row.values[position] = sealSecret(sealed.ring!, plaintext, where);
    });
    const ref = (reason: SeedRowRef['reason'], columns: string[]): SeedRowRef => ({
      table: loaded.table.name,
      key: shownKey(state.key),
      file: loaded.file.display,
      line: row.line,
      reason,
      columns,
    });
    for (const [position, absent] of row.absent) {
      outcome.absent.push({
        file: loaded.file.display,
        line: row.lines[position]!,
        column: loaded.columns[position]!.name,
        table: loaded.table.name,
        variable: absent.name,
        why: absent.why,
        outcome: state.exists ? 'kept' : 'null',
      });
    }
    if (!state.exists) {
      for (const [position, absent] of row.absent) {
        const column = loaded.columns[position]!;
        if (column.notNull) {
          problems.push({
            file: loaded.file.display,
            line: row.lines[position]!,
            column: column.name,
            message: `${absent.via}: environment variable ${absent.name} is ${absent.why}, and ${column.name} is NOT NULL: a new row needs a value`,
          });
        }
      }
      inserts.push(row);
      return;
    }
    // The columns this run writes: the data columns with a value (an absent env: field keeps what is stored).
    const written = shape.data.filter((p) => !row.absent.has(p));
    const at = (p: number) => shape.data.indexOf(p);
    const name = (p: number) => loaded.columns[p]!.name;
    const differs = written.filter((p) => state.db[at(p)] !== state.csv[at(p)]);
    const recorded = state.ledger;
    const changed = recorded === null ? [] : written.filter((p) => name(p) in recorded && recorded[name(p)] !== state.db[at(p)]);
    const hashesOf = (side: (string | null)[]) => Object.fromEntries(written.map((p) => [name(p), side[at(p)]!]));

    if (differs.length === 0 && reseal) {
      // Equal to its line but stored in plaintext (before migration 0012): encrypted, not a change.
      queueUpdate(row);
      return;
    }
    if (differs.length === 0) {
      const entry = { ...(recorded ?? {}), ...hashesOf(state.db) };
      // A missing entry, or one that lacks a column or holds another hash for it: brought up to date.
      if (recorded === null || written.some((p) => recorded[name(p)] !== entry[name(p)])) {
        ledger.set(row, { table: loaded.table.name, key: state.key, hashes: entry });
        outcome.recorded += 1;
      }
      outcome.unchanged += 1;
      return;
    }
    const conflict = recorded === null ? ref('unrecorded', differs.map(name)) : changed.length > 0 ? ref('changed', changed.map(name)) : undefined;
    if (conflict !== undefined && !options.force) {
      outcome.kept.push(conflict);
      return;
    }
    if (conflict !== undefined) outcome.overwritten.push(conflict);
    queueUpdate(row);
  });
  if (problems.length > 0) return outcome;

  const record = (row: SeedRow, hashes: (string | null)[], columns: number[]) => {
    const state = stateOf.get(row)!;
    const fresh = Object.fromEntries(columns.map((p) => [loaded.columns[p]!.name, hashes[shape.data.indexOf(p)]!]));
    ledger.set(row, { table: loaded.table.name, key: state.key, hashes: { ...(state.ledger ?? {}), ...fresh } });
  };
  const keyOf = (row: SeedRow) => stateOf.get(row)!.key;

  await inBatches(tx, loaded, inserts, keyOf, (batch) => insertStatement(loaded, shape, batch), (row, result) => {
    if (result === undefined) {
      // Created by someone else between the comparison and the insert: theirs, kept.
      const key = shownKey(keyOf(row));
      outcome.kept.push({ table: loaded.table.name, key, file: loaded.file.display, line: row.line, reason: 'unrecorded', columns: [] });
      return;
    }
    outcome.inserted += 1;
    record(row, result.hashes, shape.data);
  }, problems);
  for (const rows of updates.values()) {
    const absent = rows[0]!.absent;
    const written = shape.data.filter((p) => !absent.has(p));
    await inBatches(tx, loaded, rows, keyOf, (batch) => updateStatement(loaded, shape, written, batch), (row, result) => {
      outcome.updated += 1;
      if (result !== undefined) record(row, result.hashes, written);
    }, problems);
  }
  if (problems.length > 0) return outcome;
  await recordRows(tx, loaded.rows.filter((row) => ledger.has(row)).map((row) => ledger.get(row)!));
  return outcome;
}

/** Positions (into loaded.columns) of the primary key columns and of the other (data) columns. */
interface Shape {
  key: number[];
  data: number[];
}

function shapeOf(loaded: LoadedFile): Shape {
  const names = loaded.columns.map((c) => c.name);
  const key = loaded.table.primaryKey.map((c) => names.indexOf(c));
  return { key, data: names.map((_, i) => i).filter((i) => !key.includes(i)) };
}

function batchSize(loaded: LoadedFile): number {
  return Math.max(1, Math.min(MAX_ROWS_PER_BATCH, Math.floor(PARAMETERS_PER_BATCH / Math.max(1, loaded.columns.length))));
}

/** `(values (0, $1::text, …), …) as v(i, c0, c1, …)`: the rows' values as text, by position. */
function valuesOf(loaded: LoadedFile, rows: SeedRow[], first: number): RawBuilder<unknown> {
  const values = sql.join(
    rows.map((row, i) => sql`(${sql.lit(first + i)}, ${sql.join(row.values.map((v) => (v === null ? sql`null::text` : sql`${v}::text`)))})`),
  );
  return sql`(values ${values}) as v(i, ${sql.join(loaded.columns.map((_, p) => sql.id(`c${p}`)))})`;
}

/** `v.cN::type`: a row's value as the column's type. */
function typed(column: ColumnInfo, position: number, type: 'cast' | 'full' = 'cast'): RawBuilder<unknown> {
  return sql`v.${sql.id(`c${position}`)}::${sql.raw(type === 'cast' ? column.castType : column.fullType)}`;
}

function keyMatch(loaded: LoadedFile, shape: Shape): RawBuilder<unknown> {
  return sql.join(
    shape.key.map((p) => sql`cur.${sql.id(loaded.columns[p]!.name)} = ${typed(loaded.columns[p]!, p)}`),
    sql` and `,
  );
}

function storedKey(loaded: LoadedFile, shape: Shape): RawBuilder<string[]> {
  return textArray(shape.key.map((p) => sql`cur.${sql.id(loaded.columns[p]!.name)}::text`));
}

function storedHashes(loaded: LoadedFile, shape: Shape): RawBuilder<(string | null)[]> {
  return textArray(shape.data.map((p) => hashOf(sql`cur.${sql.id(loaded.columns[p]!.name)}::text`)));
}

/**
 * The data columns of a written row as text, for RETURNING: hashed here (the same sha256 of UTF-8
 * that hashOf computes in SQL), not in the statement, because Citus refuses non-IMMUTABLE
 * functions (convert_to) in the RETURNING clause of a write to a distributed or reference table.
 */
function storedTexts(loaded: LoadedFile, shape: Shape): RawBuilder<(string | null)[]> {
  return textArray(shape.data.map((p) => sql`cur.${sql.id(loaded.columns[p]!.name)}::text`));
}

/** What a write returned, with its texts hashed as the ledger stores them. */
function hashed(returned: { key: string[]; texts: (string | null)[] }): Written {
  return { key: returned.key, hashes: returned.texts.map((text) => (text === null ? null : createHash('sha256').update(text, 'utf8').digest('hex'))) };
}

/**
 * Locks the file's rows that exist, then reads, per row: its key as stored, whether it exists, the
 * hashes of its stored values and of its line's values (cast to the column's full type, as a
 * write would store them), and its ledger entry. In load order.
 */
async function readStates(tx: Kysely<any>, loaded: LoadedFile, shape: Shape, sealed: number[]): Promise<RowState[]> {
  const states: RowState[] = [];
  const size = batchSize(loaded);
  const table = sql.table(loaded.table.name);
  for (let start = 0; start < loaded.rows.length; start += size) {
    const batch = loaded.rows.slice(start, start + size);
    // FOR UPDATE cannot lock the nullable side of the outer join below: lock first, then read.
    await sql`select from ${table} as cur join ${valuesOf(loaded, batch, start)} on ${keyMatch(loaded, shape)} for update of cur`.execute(tx);
    const { rows } = await sql<{ i: number; key: string[]; exists: boolean; db: (string | null)[]; csv: (string | null)[]; ledger: RowHashes | null; stored: (string | null)[] }>`
      select v.i::int as i,
             ${textArray(shape.key.map((p) => sql`(${typed(loaded.columns[p]!, p)})::text`))} as key,
             cur.${sql.id(loaded.columns[shape.key[0]!]!.name)} is not null as exists,
             ${storedHashes(loaded, shape)} as db,
             ${textArray(shape.data.map((p) => hashOf(sql`(${typed(loaded.columns[p]!, p, 'full')})::text`)))} as csv,
             l.hashes as ledger,
             ${textArray(sealed.map((p) => sql`cur.${sql.id(loaded.columns[p]!.name)}::text`))} as stored
      from ${valuesOf(loaded, batch, start)}
      left join ${table} as cur on ${keyMatch(loaded, shape)}
      ${ledgerJoin(loaded.table.name, storedKey(loaded, shape), 'l')}
      order by v.i`.execute(tx);
    for (const row of rows) states.push({ key: row.key, exists: row.exists, db: row.db, csv: row.csv, ledger: row.ledger, stored: row.stored });
  }
  return states;
}

/** A written row's key as stored (to match it to its line) and the hashes of its data columns. */
interface Written {
  key: string[];
  hashes: (string | null)[];
}

/** What the insert and update statements return: the key and the data columns as text. */
interface Returned {
  key: string[];
  texts: (string | null)[];
}

/** The insert of new rows; a row someone else inserted meanwhile is left alone (`do nothing`) and not returned. */
function insertStatement(loaded: LoadedFile, shape: Shape, rows: SeedRow[]): RawBuilder<Returned> {
  const names = sql.join(loaded.columns.map((c) => sql.id(c.name)));
  const values = sql.join(
    rows.map((row) => sql`(${sql.join(row.values.map((v, i) => (v === null ? sql`null` : sql`${v}::text::${sql.raw(loaded.columns[i]!.castType)}`)))})`),
  );
  const overriding = loaded.columns.some((c) => c.identity === 'a') ? sql`overriding system value` : sql``;
  return sql<Returned>`
    insert into ${sql.table(loaded.table.name)} as cur (${names}) ${overriding}
    values ${values}
    on conflict (${sql.join(loaded.table.primaryKey.map((c) => sql.id(c)))}) do nothing
    returning ${storedKey(loaded, shape)} as key, ${storedTexts(loaded, shape)} as texts`;
}

/** The update of existing rows, by primary key, of the columns `written` (positions). */
function updateStatement(loaded: LoadedFile, shape: Shape, written: number[], rows: SeedRow[]): RawBuilder<Returned> {
  const set = sql.join(written.map((p) => sql`${sql.id(loaded.columns[p]!.name)} = ${typed(loaded.columns[p]!, p)}`));
  return sql<Returned>`
    update ${sql.table(loaded.table.name)} as cur set ${set}
    from ${valuesOf(loaded, rows, 0)}
    where ${keyMatch(loaded, shape)}
    returning ${storedKey(loaded, shape)} as key, ${storedTexts(loaded, shape)} as texts`;
}

/**
 * Runs `statement` over `rows` in batches, each under a savepoint, and hands each row its returned
 * row (matched by key; undefined when the statement returned none for it). A batch refused for a
 * row's data is rolled back and retried row by row, so that each refused row becomes a problem.
 */
async function inBatches(
  tx: Kysely<any>,
  loaded: LoadedFile,
  rows: SeedRow[],
  keyOf: (row: SeedRow) => string[],
  statement: (rows: SeedRow[]) => RawBuilder<Returned>,
  done: (row: SeedRow, result: Written | undefined) => void,
  problems: SeedProblem[],
): Promise<void> {
  if (rows.length === 0) return;
  const size = batchSize(loaded);
  // Returned rows are matched to their lines by key, both as the database prints them (::text).
  const settle = (batch: SeedRow[], returned: Returned[]) => {
    const byKey = new Map(returned.map((r) => [JSON.stringify(r.key), hashed(r)]));
    for (const row of batch) done(row, byKey.get(JSON.stringify(keyOf(row))));
  };
  for (let start = 0; start < rows.length; start += size) {
    const batch = rows.slice(start, start + size);
    await sql`savepoint seed_batch`.execute(tx);
    try {
      settle(batch, (await statement(batch).execute(tx)).rows);
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
        settle([row], (await statement([row]).execute(tx)).rows);
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
  // "Failing row contains (…)" prints every value of the row: env: secrets, megabytes of prompt.
  // The problem names the row's line and column instead.
  const detail = e.detail && !e.detail.startsWith('Failing row contains') ? ` (${e.detail.replace(/\.$/, '')})` : '';
  return {
    code,
    message: `${e.message}${detail}${hint}`,
    constraint: constraintOf(error) || undefined,
    column: e.column || undefined,
  };
}

/**
 * The problem at the row's line, on the column the error names, or the first column of its
 * constraint; every value the row took from `env:` masked as its reference (`[env:NAME]`).
 */
function locate(problem: DbProblem, loaded: LoadedFile, row: SeedRow): SeedProblem {
  const names = loaded.columns.map((c) => c.name);
  const candidates = [
    ...(problem.column === undefined ? [] : [problem.column]),
    ...(problem.constraint === undefined ? [] : (loaded.table.constraintColumns.get(problem.constraint) ?? [])),
  ];
  const column = candidates.find((c) => names.includes(c)) ?? '';
  const line = column === '' ? row.line : row.lines[names.indexOf(column)]!;
  return { file: loaded.file.display, line, column, message: maskSecrets(`${problem.message} (SQLSTATE ${problem.code})`, row.secretTexts) };
}

/** `text` with every occurrence of each secret replaced by `[its reference]`, longest secrets first. */
export function maskSecrets(text: string, secrets: { text: string; via: string }[]): string {
  let masked = text;
  for (const secret of [...secrets].sort((a, b) => b.text.length - a.text.length)) masked = masked.replaceAll(secret.text, `[${secret.via}]`);
  return masked;
}
