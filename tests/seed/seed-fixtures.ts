import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import { DEFAULT_DATA_DIR, SEED_FILES } from '../../src/seed/files.ts';
import { providerKeyBinding } from '../../src/db/secret-bindings.ts';
import { openSecret, type SecretKeyRing } from '../../src/db/secrets.ts';
import { publicTables } from '../support/fixtures.ts';
import { testRing } from '../support/secret-keys.ts';

/** Seed options that keep the test output clean and the environment out (no TEST_API_KEY, no GEMINI_API_KEY). */
export const quiet = { env: {}, log: () => {}, warn: () => {} };

/** The tables the seed files load. */
export const SEED_TABLES = SEED_FILES.map((f) => f.table);

/** Row counts of data/ per table. */
export const DATA_COUNTS: Record<string, number> = {
  roles: 3,
  policies: 6,
  role_policies: 12,
  providers: 3,
  models: 8,
  prompts: 3,
  tools: 7,
  agents: 3,
  agent_tools: 13,
};

const made: string[] = [];

/** A copy of the package's data/ in a fresh temporary folder (removed by {@link removeDataCopies}). */
export function copyData(): string {
  const dir = mkdtempSync(join(tmpdir(), 'seed-test-'));
  made.push(dir);
  cpSync(DEFAULT_DATA_DIR, dir, { recursive: true });
  return dir;
}

/** An empty temporary folder (removed by {@link removeDataCopies}). */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'seed-test-'));
  made.push(dir);
  return dir;
}

/** Removes every folder made by copyData/tempDir. */
export function removeDataCopies(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** Replaces `from` by `to` in a file of `dir`; throws when `from` is not there (a fixture that broke nothing). */
export function edit(dir: string, file: string, from: string | RegExp, to: string): void {
  const path = join(dir, file);
  const text = readFileSync(path, 'utf8');
  const next = text.replace(from, to);
  if (next === text) throw new Error(`fixture: ${String(from)} not found in ${file}`);
  writeFileSync(path, next);
}

/** Rewrites a file of `dir` line by line (its final newline kept). */
export function rewrite(dir: string, file: string, fn: (lines: string[]) => string[]): void {
  const path = join(dir, file);
  writeFileSync(path, `${fn(readFileSync(path, 'utf8').replace(/\n$/, '').split('\n')).join('\n')}\n`);
}

/** Appends lines to a file of `dir` (created when missing). */
export function append(dir: string, file: string, lines: string[]): void {
  appendFileSync(join(dir, file), lines.map((l) => `${l}\n`).join(''));
}

/** Empties the seeded tables (and what hangs off them) and the seed's ledger, for a test that needs a database without seed data. */
export async function emptySeedTables(db: Kysely<any>): Promise<void> {
  await sql`truncate ${sql.join(SEED_TABLES.map((t) => sql.table(t)))}, app.seed_rows restart identity cascade`.execute(db);
}

/** The seed's ledger entry of a row (its column → hash map), or undefined. */
export async function ledgerEntry(db: Kysely<any>, table: string, key: string[]): Promise<Record<string, string | null> | undefined> {
  const { rows } = await sql<{ hashes: Record<string, string | null> }>`
    select hashes from app.seed_rows where table_name = ${table} and row_key = ${sql`array[${sql.join(key.map((k) => sql`${k}::text`))}]`}`.execute(db.withoutPlugins());
  return rows[0]?.hashes;
}

/** Row counts of the seeded tables. */
export async function seedCounts(db: Kysely<any>): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const table of SEED_TABLES) {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)}`.execute(db);
    counts[table] = rows[0]!.n;
  }
  return counts;
}

/**
 * Every row of every public table and of the seed's ledger (app.seed_rows) with its xmin (a
 * rewritten row gets a new one), and every sequence's state: equal snapshots mean nothing was
 * written, not even a sequence moved or a ledger entry.
 */
export async function snapshot(db: Kysely<any>): Promise<Record<string, unknown>> {
  const conn = db.withoutPlugins();
  const result: Record<string, unknown> = {};
  for (const table of await publicTables(conn)) {
    const { rows } = await sql<{ x: string; r: string }>`
      select t.xmin::text as x, to_jsonb(t)::text as r from ${sql.table(table)} as t order by 2`.execute(conn);
    result[table] = rows;
  }
  const ledger = await sql<{ x: string; r: string }>`select t.xmin::text as x, to_jsonb(t)::text as r from app.seed_rows as t order by 2`.execute(conn);
  result['(ledger)'] = ledger.rows;
  const { rows } = await sql`select sequencename, last_value from pg_sequences where schemaname = 'public' order by 1`.execute(conn);
  result['(sequences)'] = rows;
  return result;
}

/** providers.api_key of a provider as stored (sealed, or NULL), read as the owner. */
export async function storedProviderKey(db: Kysely<any>, id = 2): Promise<string | null> {
  const { rows } = await sql<{ api_key: string | null }>`select api_key from providers where id = ${id}`.execute(db.withoutPlugins());
  return rows[0]!.api_key;
}

/** providers.api_key of a provider, opened with `ring` (default the tests' ring); null when NULL. */
export async function providerKey(db: Kysely<any>, id = 2, ring: SecretKeyRing = testRing): Promise<string | null> {
  const stored = await storedProviderKey(db, id);
  return stored === null ? null : openSecret(ring, stored, providerKeyBinding(id));
}
