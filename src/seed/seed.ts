import { sql, type Kysely } from 'kysely';
import { readTables, type TableInfo } from './columns.ts';
import { dataFolder } from './data-folder.ts';
import { readEnvAllowlist } from './env-allowlist.ts';
import { SeedError, type SeedProblem } from './errors.ts';
import { displayPath } from '../db/display-path.ts';
import { DEFAULT_DATA_DIR, findSeedFiles, SEED_FILES } from './files.ts';
import { checkForeignKeys } from './foreign-keys.ts';
import { ledgerExists, SEED_LEDGER_TABLE } from './ledger.ts';
import { loadSeedFile, type LoadedFile } from './load.ts';
import { ensureTestAdmin, type TestAdminOutcome } from './test-admin.ts';
import { writeRows, type AbsentField, type SeedRowRef } from './upsert.ts';
import { warnOnce } from './warn-once.ts';

export type { SeedRowRef } from './upsert.ts';

/** Options of {@link seed}; each has a default. */
export interface SeedOptions {
  /** Folder of the CSV files (default: the package's `data/`, {@link DEFAULT_DATA_DIR}). */
  dir?: string;
  /** Variables read by `env:NAME` fields (those the folder's env-allowlist.txt declares) and TEST_API_KEY (default: process.env). */
  env?: Record<string, string | undefined>;
  /**
   * Overwrite the catalog rows that changed since the seed last wrote them (by the cms, an
   * operator, anyone), and those it has no record of writing that differ from their line, with
   * their CSV values (default false: such rows are kept and reported in `SeedSummary.kept`).
   * An `env:` field whose variable is unset still keeps its stored value.
   */
  force?: boolean;
  /** Progress: one line per file and a summary line, written once the run has committed (default: none). */
  log?: (line: string) => void;
  /** Warnings, e.g. an `env:` variable that is not set; each is written once per process (default: console.warn). */
  warn?: (line: string) => void;
}

/** What the seed did to the rows of one file. */
export interface SeedFileSummary {
  /** File name in the data folder, e.g. `models.csv`. */
  file: string;
  table: string;
  rows: number;
  inserted: number;
  /** Rows rewritten: their line changed (or `force` overwrote them). */
  updated: number;
  /** Rows equal to their line: not rewritten. */
  unchanged: number;
  /** Rows changed since the seed last wrote them (or never written by it) and different from their line: kept as they are. */
  kept: number;
  /** Of the unchanged rows, those whose ledger entry was missing or out of date and was written. */
  recorded: number;
}

/** What a seed run did; `changed` is false when it wrote nothing (no row, no ledger entry). */
export interface SeedSummary {
  /** The data folder, as the user sees it. */
  dir: string;
  files: SeedFileSummary[];
  /** Seed files not in the folder, skipped. */
  absent: string[];
  inserted: number;
  updated: number;
  unchanged: number;
  /** The rows kept as they are in the database, unlike their line: each with its table, key, line and columns. */
  kept: SeedRowRef[];
  /** With `force`: the rows overwritten that would otherwise have been kept. */
  overwritten: SeedRowRef[];
  /** Ledger entries written for rows found equal to their line. */
  recorded: number;
  /** The test admin of TEST_API_KEY, when it is set. */
  testAdmin: TestAdminOutcome | undefined;
  changed: boolean;
  /** Every warning of this run (unset `env:` variables), also given to `options.warn` once per process. */
  warnings: string[];
}

// Serializes seeders (several services starting at once); per database, held until commit.
const SEED_LOCK_KEY = 7_305_114_204;

/**
 * Loads the seed data: the CSV files of `options.dir` (default `data/`) into their tables, in
 * foreign-key order, all in one transaction under an advisory lock; plus, when TEST_API_KEY is
 * set, the test admin (see ensureTestAdmin). Values are converted by the target column's SQL type
 * read from the catalog. It never clobbers: a row that changed since the seed last wrote it (the
 * ledger, app.seed_rows, records what it wrote) is kept and reported unless `force`; an unset
 * `env:` variable keeps the stored value. `file:` reads only regular files inside the data folder,
 * `env:` only the variables its env-allowlist.txt declares. Everything that can be checked is
 * checked before anything is written; any problem (also a row the database refuses) is a
 * SeedError listing every problem as file:line:column, with `env:` values masked, and nothing is
 * written. providers.api_key is written encrypted (README, "Secrets"), compared by its plaintext,
 * and a key stored in plaintext before migration 0012 is encrypted; a value to store with no
 * secret key configured is a ConfigError. A second run with the same files writes nothing. Identity sequences are moved past the
 * ids the files give. Needs the migrated schema.
 *
 * @example
 * const summary = await seed(db, { dir: 'data', log: console.log });
 * // seed: 58 rows in 9 files from data: 58 inserted, 0 updated, 0 unchanged
 */
export async function seed(db: Kysely<any>, options: SeedOptions = {}): Promise<SeedSummary> {
  if (db.isTransaction) throw new SeedError([], 'seed needs the database, not a transaction: it runs in a transaction of its own');
  const dir = options.dir ?? DEFAULT_DATA_DIR;
  const env = options.env ?? process.env;
  const force = options.force ?? false;
  const log = options.log ?? (() => {});
  const warn = options.warn ?? ((line: string) => console.warn(line));
  const { found, absent, problems: folderProblems } = findSeedFiles(dir);
  const folder = dataFolder(dir);
  const apiKey = env.TEST_API_KEY === undefined || env.TEST_API_KEY === '' ? undefined : env.TEST_API_KEY;

  const { summary, absentFields } = await db
    .withoutPlugins()
    .transaction()
    .execute(async (tx) => {
      await sql`select pg_advisory_xact_lock(${SEED_LOCK_KEY}::bigint)`.execute(tx);
      const tables = await readTables(tx, found.map((f) => f.table));
      const missing = found.filter((f) => !tables.has(f.table)).map((f) => f.table);
      if (missing.length > 0 || !(await ledgerExists(tx))) {
        const what =
          missing.length === found.length
            ? 'this database has none of the seed tables'
            : missing.length > 0
              ? `no table ${missing.join(', ')}`
              : `no table ${SEED_LEDGER_TABLE}, the seed's ledger`;
        throw new SeedError(
          [],
          `the schema is missing (${what}): run \`npx database migrate\` first. The seed loads data into the migrated tables; it creates none.`,
        );
      }

      // Everything that can be checked without writing, for every file, before the first write.
      const problemsByFile = found.map(() => [] as SeedProblem[]);
      const allowlistProblems: SeedProblem[] = [];
      const context = { folder, allowlist: readEnvAllowlist(folder, allowlistProblems), env };
      const loaded: LoadedFile[] = found.map((file, i) => loadSeedFile(file, tables.get(file.table) as TableInfo, context, problemsByFile[i]!));
      for (const [i, file] of loaded.entries()) await checkForeignKeys(tx, file, loaded.slice(0, i + 1), problemsByFile[i]!);
      fail([...folderProblems, ...allowlistProblems, ...problemsByFile.flatMap(byLine)]);

      const files: SeedFileSummary[] = [];
      const kept: SeedRowRef[] = [];
      const overwritten: SeedRowRef[] = [];
      const absentFields: AbsentField[] = [];
      for (const [i, file] of loaded.entries()) {
        const outcome = await writeRows(tx, file, { force }, problemsByFile[i]!);
        const { inserted, updated, unchanged, recorded } = outcome;
        files.push({ file: file.file.name, table: file.table.name, rows: file.rows.length, inserted, updated, unchanged, kept: outcome.kept.length, recorded });
        kept.push(...outcome.kept);
        overwritten.push(...outcome.overwritten);
        absentFields.push(...outcome.absent);
      }
      fail(problemsByFile.flatMap(byLine));

      const testAdmin = apiKey === undefined ? undefined : await ensureTestAdmin(tx, apiKey);
      await moveSequencesPastIds(tx, loaded);
      return { summary: makeSummary(displayPath(dir), files, absent, kept, overwritten, testAdmin, absentFields.map(formatAbsent)), absentFields };
    });

  absentFields.forEach((field, i) => warnOnce(`${field.file}:${field.line}:${field.column}:${field.variable}`, `seed: warning: ${summary.warnings[i]}`, warn));
  for (const f of summary.files) {
    const kept = f.kept === 0 ? '' : `, ${f.kept} kept`;
    log(`  ${f.file.padEnd(18)} → ${f.table.padEnd(14)} ${f.inserted} inserted, ${f.updated} updated, ${f.unchanged} unchanged${kept}`);
  }
  for (const row of summary.kept) log(`  kept ${describeRow(row)}`);
  for (const row of summary.overwritten) log(`  overwrote (--force) ${describeRow(row)}`);
  if (summary.absent.length > 0) log(`  absent, skipped: ${summary.absent.join(', ')}`);
  log(formatSeedSummary(summary));
  return summary;
}

/**
 * One line saying what a seed run did.
 *
 * @example
 * formatSeedSummary(summary)
 * // 'seed: 58 rows in 9 files from data: 0 inserted, 0 updated, 56 unchanged; kept 2 rows changed since the last seed: models 5, prompts 2 (seed --force overwrites them); nothing written'
 */
export function formatSeedSummary(summary: SeedSummary): string {
  const rows = summary.inserted + summary.updated + summary.unchanged + summary.kept.length;
  const parts = [
    `seed: ${rows} rows in ${summary.files.length} files from ${summary.dir}: ` +
      `${summary.inserted} inserted, ${summary.updated} updated, ${summary.unchanged} unchanged`,
  ];
  const changed = summary.kept.filter((r) => r.reason === 'changed');
  const unrecorded = summary.kept.filter((r) => r.reason === 'unrecorded');
  if (changed.length > 0) parts.push(`kept ${count(changed.length)} changed since the last seed: ${listRows(changed)}`);
  if (unrecorded.length > 0) parts.push(`kept ${count(unrecorded.length)} unlike ${unrecorded.length === 1 ? 'its line' : 'their lines'} that the seed has no record of writing: ${listRows(unrecorded)}`);
  if (summary.kept.length > 0) parts[parts.length - 1] += ` (seed --force overwrites ${summary.kept.length === 1 ? 'it' : 'them'})`;
  if (summary.overwritten.length > 0) parts.push(`overwrote ${count(summary.overwritten.length)} (--force): ${listRows(summary.overwritten)}`);
  if (summary.recorded > 0) parts.push(`${count(summary.recorded)} recorded in the seed ledger`);
  if (summary.testAdmin !== undefined) parts.push(`test admin ${summary.testAdmin}`);
  if (!summary.changed) parts.push('nothing written');
  return parts.join('; ');
}

function count(n: number): string {
  return `${n} row${n === 1 ? '' : 's'}`;
}

/** `models 5, prompts 2`. */
function listRows(rows: SeedRowRef[]): string {
  return rows.map((r) => `${r.table} ${r.key}`).join(', ');
}

/** `models 5 (data/models.csv:6): cost_1k_input changed since the last seed`. */
function describeRow(row: SeedRowRef): string {
  const columns = row.columns.join(', ');
  const why =
    row.reason === 'changed'
      ? `${columns} changed since the last seed`
      : columns === ''
        ? 'created by someone else while the seed ran'
        : `differs from its line in ${columns}, and the seed has no record of writing it`;
  return `${row.table} ${row.key} (${row.file}:${row.line}): ${why}`;
}

/** `data/providers.csv:3:api_key: environment variable GEMINI_API_KEY is not set (env:GEMINI_API_KEY); providers.api_key keeps its stored value`. */
function formatAbsent(field: AbsentField): string {
  const result = field.outcome === 'kept' ? 'keeps its stored value' : 'is NULL (a new row)';
  return `${field.file}:${field.line}:${field.column}: environment variable ${field.variable} is ${field.why} (env:${field.variable}); ${field.table}.${field.column} ${result}`;
}

function makeSummary(
  dir: string,
  files: SeedFileSummary[],
  absent: string[],
  kept: SeedRowRef[],
  overwritten: SeedRowRef[],
  testAdmin: TestAdminOutcome | undefined,
  warnings: string[],
): SeedSummary {
  const total = (key: 'inserted' | 'updated' | 'unchanged' | 'recorded') => files.reduce((sum, f) => sum + f[key], 0);
  const inserted = total('inserted');
  const updated = total('updated');
  const recorded = total('recorded');
  const changed = inserted + updated + recorded > 0 || (testAdmin !== undefined && testAdmin !== 'unchanged');
  return { dir, files, absent, inserted, updated, unchanged: total('unchanged'), kept, overwritten, recorded, testAdmin, changed, warnings };
}

/** Throws the SeedError of `problems`, if any; inside the transaction, that rolls it back. */
function fail(problems: SeedProblem[]): void {
  if (problems.length > 0) throw new SeedError(problems);
}

/** One file's problems in line order (stable: same line keeps the order found). */
function byLine(problems: SeedProblem[]): SeedProblem[] {
  return [...problems].sort((a, b) => a.line - b.line);
}

/**
 * Identity (and serial) sequences of the columns the files give: moved to the largest id in the
 * table when they are behind it, so the next generated id does not collide; never moved back.
 * Runs last: setval is not undone by a rollback.
 */
async function moveSequencesPastIds(tx: Kysely<any>, files: LoadedFile[]): Promise<void> {
  for (const file of files) {
    for (const column of file.columns) {
      if (column.sequence === null || file.rows.length === 0) continue;
      await sql`
        select setval(${column.sequence}::regclass, m)
        from (select max(${sql.id(column.name)}) as m from ${sql.table(file.table.name)}) as t
        where m > coalesce(pg_sequence_last_value(${column.sequence}::regclass), 0)`.execute(tx);
    }
  }
}

export { DEFAULT_DATA_DIR, SEED_FILES };
