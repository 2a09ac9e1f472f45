import { sql, type Kysely } from 'kysely';
import { readTables, type TableInfo } from './columns.ts';
import { SeedError, type SeedProblem } from './errors.ts';
import { displayPath } from '../db/display-path.ts';
import { DEFAULT_DATA_DIR, findSeedFiles, SEED_FILES } from './files.ts';
import { checkForeignKeys } from './foreign-keys.ts';
import { loadSeedFile, type LoadedFile } from './load.ts';
import { ensureTestAdmin, type TestAdminOutcome } from './test-admin.ts';
import { upsertRows } from './upsert.ts';

/** Options of {@link seed}; each has a default. */
export interface SeedOptions {
  /** Folder of the CSV files (default: the package's `data/`, {@link DEFAULT_DATA_DIR}). */
  dir?: string;
  /** Variables read by `env:NAME` fields and TEST_API_KEY (default: process.env). */
  env?: Record<string, string | undefined>;
  /** Progress: one line per file and a summary line, written once the run has committed (default: none). */
  log?: (line: string) => void;
  /** Warnings, e.g. an `env:` variable that is not set (default: console.warn). */
  warn?: (line: string) => void;
  /** Overwrite catalog rows that changed since the seed last wrote them (by the cms, an operator),
   *  instead of keeping and reporting them (`database seed --force`; default false). */
  force?: boolean;
}

/** What the seed did to the rows of one file. */
export interface SeedFileSummary {
  /** File name in the data folder, e.g. `models.csv`. */
  file: string;
  table: string;
  rows: number;
  inserted: number;
  updated: number;
  /** Rows equal to the database's: not rewritten. */
  unchanged: number;
}

/** What a seed run did; `changed` is false when it wrote nothing. */
export interface SeedSummary {
  /** The data folder, as the user sees it. */
  dir: string;
  files: SeedFileSummary[];
  /** Seed files not in the folder, skipped. */
  absent: string[];
  inserted: number;
  updated: number;
  unchanged: number;
  /** The test admin of TEST_API_KEY, when it is set. */
  testAdmin: TestAdminOutcome | undefined;
  changed: boolean;
  /** Warnings, also given to `options.warn`. */
  warnings: string[];
}

// Serializes seeders (several services starting at once); per database, held until commit.
const SEED_LOCK_KEY = 7_305_114_204;

/**
 * Loads the seed data: the CSV files of `options.dir` (default `data/`) into their tables, in
 * foreign-key order, each row upserted by primary key, all in one transaction; plus, when
 * TEST_API_KEY is set, the test admin (see ensureTestAdmin). Values are converted by the target
 * column's SQL type read from the catalog. Everything that can be checked is checked before
 * anything is written; any problem (also a row the database refuses) is a SeedError listing every
 * problem as file:line:column, and nothing is written. A second run with the same files changes
 * nothing. Identity sequences are moved past the ids the files give. Needs the migrated schema.
 *
 * @example
 * const summary = await seed(db, { dir: 'data', log: console.log });
 * // seed: 58 rows in 9 files from data: 58 inserted, 0 updated, 0 unchanged
 */
export async function seed(db: Kysely<any>, options: SeedOptions = {}): Promise<SeedSummary> {
  if (db.isTransaction) throw new SeedError([], 'seed needs the database, not a transaction: it runs in a transaction of its own');
  const dir = options.dir ?? DEFAULT_DATA_DIR;
  const env = options.env ?? process.env;
  const log = options.log ?? (() => {});
  const warn = options.warn ?? ((line: string) => console.warn(line));
  const { found, absent, problems: folderProblems } = findSeedFiles(dir);
  const apiKey = env.TEST_API_KEY === undefined || env.TEST_API_KEY === '' ? undefined : env.TEST_API_KEY;

  const summary = await db
    .withoutPlugins()
    .transaction()
    .execute(async (tx) => {
      await sql`select pg_advisory_xact_lock(${SEED_LOCK_KEY}::bigint)`.execute(tx);
      const tables = await readTables(tx, found.map((f) => f.table));
      const missing = found.filter((f) => !tables.has(f.table)).map((f) => f.table);
      if (missing.length > 0) {
        const what = missing.length === found.length ? 'this database has none of the seed tables' : `no table ${missing.join(', ')}`;
        throw new SeedError(
          [],
          `the schema is missing (${what}): run \`npm run migrate\` first. The seed loads data into the migrated tables; it creates none.`,
        );
      }

      // Everything that can be checked without writing, for every file, before the first write.
      const problemsByFile = found.map(() => [] as SeedProblem[]);
      const warnings: string[] = [];
      const loaded: LoadedFile[] = found.map((file, i) =>
        loadSeedFile(file, tables.get(file.table) as TableInfo, env, problemsByFile[i]!, warnings),
      );
      for (const [i, file] of loaded.entries()) await checkForeignKeys(tx, file, loaded.slice(0, i + 1), problemsByFile[i]!);
      fail([...folderProblems, ...problemsByFile.flatMap(byLine)]);

      const files: SeedFileSummary[] = [];
      for (const [i, file] of loaded.entries()) {
        const counts = await upsertRows(tx, file, problemsByFile[i]!);
        files.push({ file: file.file.name, table: file.table.name, rows: file.rows.length, ...counts });
      }
      fail(problemsByFile.flatMap(byLine));

      const testAdmin = apiKey === undefined ? undefined : await ensureTestAdmin(tx, apiKey);
      await moveSequencesPastIds(tx, loaded);
      return makeSummary(displayPath(dir), files, absent, testAdmin, warnings);
    });

  for (const warning of summary.warnings) warn(`seed: warning: ${warning}`);
  for (const f of summary.files) {
    log(`  ${f.file.padEnd(18)} → ${f.table.padEnd(14)} ${f.inserted} inserted, ${f.updated} updated, ${f.unchanged} unchanged`);
  }
  if (summary.absent.length > 0) log(`  absent, skipped: ${summary.absent.join(', ')}`);
  log(formatSeedSummary(summary));
  return summary;
}

/**
 * One line saying what a seed run did.
 *
 * @example
 * formatSeedSummary(summary) // 'seed: 46 rows in 9 files from data: 0 inserted, 0 updated, 46 unchanged; nothing written'
 */
export function formatSeedSummary(summary: SeedSummary): string {
  const rows = summary.inserted + summary.updated + summary.unchanged;
  const admin = summary.testAdmin === undefined ? '' : `; test admin ${summary.testAdmin}`;
  const outcome = summary.changed ? '' : '; nothing written';
  return (
    `seed: ${rows} rows in ${summary.files.length} files from ${summary.dir}: ` +
    `${summary.inserted} inserted, ${summary.updated} updated, ${summary.unchanged} unchanged${admin}${outcome}`
  );
}

function makeSummary(
  dir: string,
  files: SeedFileSummary[],
  absent: string[],
  testAdmin: TestAdminOutcome | undefined,
  warnings: string[],
): SeedSummary {
  const total = (key: 'inserted' | 'updated' | 'unchanged') => files.reduce((sum, f) => sum + f[key], 0);
  const inserted = total('inserted');
  const updated = total('updated');
  const changed = inserted + updated > 0 || (testAdmin !== undefined && testAdmin !== 'unchanged');
  return { dir, files, absent, inserted, updated, unchanged: total('unchanged'), testAdmin, changed, warnings };
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
