import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql, type Kysely } from 'kysely';
import { Umzug, type UmzugStorage } from 'umzug';
import { intEnv } from './config.ts';
import { displayPath } from './display-path.ts';
import { MigrationError, sqlState } from './errors.ts';
import { assertCanMigrate } from './privileges.ts';
import { splitSqlStatements, type SqlStatement } from './sql-statements.ts';

/** The folder of the package's own migrations. */
export const DEFAULT_MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/sql', import.meta.url));
/** The ledger: one row per applied migration. Owned by the migrator, not by a migration. */
export const LEDGER_TABLE = 'schema_migrations';
/** First line of a migration that must run outside a transaction (one statement only). */
export const NO_TRANSACTION_DIRECTIVE = '-- migrate:no-transaction';

const FILE = /^(\d{4}_[a-z][a-z0-9_]*)\.(up|down)\.sql$/;
// Key of the advisory lock that serializes migrators (advisory locks are per database).
const LOCK_KEY = 7_305_114_203;

/** Options of the migrator; each has a default. */
export interface MigratorOptions {
  /** Folder of `NNNN_name.up.sql` / `.down.sql` pairs (default: the package's `migrations/sql`). */
  migrationsDir?: string;
  /** `lock_timeout` while migrating: a statement waiting longer for a table lock fails
   *  (DB_MIGRATION_LOCK_TIMEOUT_MS; default 5,000 ms). */
  lockTimeoutMs?: number;
  /** How long to wait for another migrator to finish (DB_MIGRATION_WAIT_MS; default 300,000 ms). */
  waitMs?: number;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

/** Options of {@link migrate}. */
export interface MigrateOptions extends MigratorOptions {
  /** Apply the pending migrations up to and including this one only (default: all of them). */
  to?: string;
}

/** Options of {@link migrateDown}. */
export interface MigrateDownOptions extends MigratorOptions {
  /**
   * Asked, under the migration lock and before anything is reverted, with the names about to be
   * reverted (newest first; never called when there are none). Resolving false reverts nothing
   * and migrateDown returns []. Default: no question.
   */
  confirm?: (names: string[]) => boolean | Promise<boolean>;
}

/** A migration as found on disk. */
export interface MigrationFile {
  name: string;
  upPath: string;
  /** Where the `.down.sql` is, or would be when {@link MigrationFile.hasDownFile} is false. */
  downPath: string;
  /** False when the `.down.sql` is missing: status flags it, migrateDown refuses to revert it. */
  hasDownFile: boolean;
  /** sha256 (hex) of the `.up.sql` file's bytes, as stored in the ledger. */
  checksum: string;
}

/** One line of `migrate status`. */
export interface MigrationStatus {
  name: string;
  /** applied; pending; changed (applied, but the file differs); missing (applied, file gone). */
  state: 'applied' | 'pending' | 'changed' | 'missing';
  checksum: string | undefined;
  appliedChecksum: string | undefined;
  appliedAt: Date | undefined;
  durationMs: number | undefined;
  /** The up file is there but its `.down.sql` is not: the migration cannot be reverted. */
  downFileMissing: boolean;
}

interface LedgerRow {
  name: string;
  checksum: string;
  applied_at: Date;
  duration_ms: number;
}

/**
 * Reads and checks the migration files of `dir`, ordered by name. A `.down.sql` without its
 * `.up.sql`, a bad file name or two migrations with one number is a MigrationError; an `.up.sql`
 * without its `.down.sql` is listed with `hasDownFile: false`.
 */
export function readMigrationFiles(dir: string = DEFAULT_MIGRATIONS_DIR): MigrationFile[] {
  if (!existsSync(dir)) throw new MigrationError(`migrations folder ${displayPath(dir)} does not exist`);
  const byName = new Map<string, Partial<Record<'up' | 'down', string>>>();
  for (const entry of readdirSync(dir)) {
    if (!entry.endsWith('.sql')) continue;
    const match = FILE.exec(entry);
    if (match === null) {
      throw new MigrationError(
        `${displayPath(join(dir, entry))}: a migration file is named NNNN_verb_object.up.sql or .down.sql (lowercase)`,
      );
    }
    const [, name, direction] = match as unknown as [string, string, 'up' | 'down'];
    byName.set(name, { ...byName.get(name), [direction]: join(dir, entry) });
  }
  const files: MigrationFile[] = [];
  const numbers = new Map<string, string>();
  for (const name of [...byName.keys()].sort()) {
    const pair = byName.get(name)!;
    if (pair.up === undefined) {
      throw new MigrationError(`migration ${name} has no up file ${displayPath(join(dir, `${name}.up.sql`))}`);
    }
    const number = name.slice(0, 4);
    const other = numbers.get(number);
    if (other !== undefined) throw new MigrationError(`migrations ${other} and ${name} share the number ${number}`);
    numbers.set(number, name);
    files.push({
      name,
      upPath: pair.up,
      downPath: pair.down ?? join(dir, `${name}.down.sql`),
      hasDownFile: pair.down !== undefined,
      checksum: sha256(readFileSync(pair.up)),
    });
  }
  return files;
}

/**
 * Applies every pending migration (or those up to and including `options.to`), each in its own
 * transaction together with its ledger row. Serialized with other migrators by an advisory lock;
 * refuses to run when an applied migration's file was edited or deleted, or when the role cannot
 * migrate (a ConfigError). Returns the names applied (none when up to date).
 */
export async function migrate(db: Kysely<any>, options: MigrateOptions = {}): Promise<string[]> {
  return withMigrationSession(db, options, async (session) => {
    const { to } = options;
    if (to !== undefined) {
      if (!session.files.some((f) => f.name === to)) {
        throw new MigrationError(`--to ${to}: no such migration in ${displayPath(session.dir)}`);
      }
      if ((await session.appliedNames()).includes(to)) return [];
    }
    const umzug = session.umzug();
    const applied = await runUmzug(() => (to === undefined ? umzug.up() : umzug.up({ to })));
    return applied.map((m) => m.name);
  });
}

/**
 * Reverts applied migrations, newest first: one by default, down to and including `to` when
 * given a name, all of them with `to: 0`. Refuses, reverting nothing, when one of them has no
 * `.down.sql`; `options.confirm` is asked first. Returns the names reverted.
 */
export async function migrateDown(
  db: Kysely<any>,
  target: { to?: string | 0 } = {},
  options: MigrateDownOptions = {},
): Promise<string[]> {
  return withMigrationSession(db, options, async (session) => {
    if (typeof target.to === 'string' && !session.files.some((f) => f.name === target.to)) {
      throw new MigrationError(`--to ${target.to}: no such migration in ${displayPath(session.dir)}`);
    }
    const applied = new Set(await session.appliedNames());
    if (typeof target.to === 'string' && !applied.has(target.to)) {
      throw new MigrationError(`--to ${target.to}: that migration is not applied`);
    }
    // What umzug's down() picks: the applied migrations in file order, newest first, then one,
    // all (to: 0), or down to and including `to`. Run with `step` so that it reverts exactly these.
    const newestFirst = session.files.filter((f) => applied.has(f.name)).reverse();
    const count =
      target.to === undefined ? 1 : target.to === 0 ? newestFirst.length : newestFirst.findIndex((f) => f.name === target.to) + 1;
    const plan = newestFirst.slice(0, count);
    if (plan.length === 0) return [];
    const irreversible = plan.filter((f) => !f.hasDownFile);
    if (irreversible.length > 0) {
      throw new MigrationError(
        `cannot revert ${irreversible.map((f) => `${f.name} (${displayPath(f.downPath)} is missing)`).join(', ')}; ` +
          `nothing was reverted. Write the down file, or revert only newer migrations (--to NAME).`,
        { file: displayPath(irreversible[0]!.downPath) },
      );
    }
    if (options.confirm !== undefined && !(await options.confirm(plan.map((f) => f.name)))) return [];
    const umzug = session.umzug();
    const reverted = await runUmzug(() => umzug.down({ step: plan.length }));
    return reverted.map((m) => m.name);
  });
}

/** Applied and pending migrations with their checksums; files and ledger are compared, not trusted. */
export async function migrationStatus(db: Kysely<any>, options: MigratorOptions = {}): Promise<MigrationStatus[]> {
  const dir = options.migrationsDir ?? DEFAULT_MIGRATIONS_DIR;
  const files = readMigrationFiles(dir);
  const conn = db.withoutPlugins();
  const exists = await sql<{ present: boolean }>`select to_regclass(${LEDGER_TABLE}) is not null as present`.execute(conn);
  const ledger = exists.rows[0]?.present ? await readLedger(conn) : [];
  const byName = new Map(ledger.map((row) => [row.name, row]));
  const status: MigrationStatus[] = files.map((file) => {
    const row = byName.get(file.name);
    return {
      name: file.name,
      state: row === undefined ? 'pending' : row.checksum === file.checksum ? 'applied' : 'changed',
      checksum: file.checksum,
      appliedChecksum: row?.checksum,
      appliedAt: row?.applied_at,
      durationMs: row?.duration_ms,
      downFileMissing: !file.hasDownFile,
    };
  });
  for (const row of ledger) {
    if (!files.some((f) => f.name === row.name)) {
      status.push({
        name: row.name,
        state: 'missing',
        checksum: undefined,
        appliedChecksum: row.checksum,
        appliedAt: row.applied_at,
        durationMs: row.duration_ms,
        downFileMissing: false,
      });
    }
  }
  return status.sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * Writes `NNNN_name.up.sql` and `NNNN_name.down.sql` with the next free number and returns their
 * paths. `name` is lowercase snake_case, verb first (`add_users_locale`), and not the name of an
 * existing migration under any number.
 */
export function createMigrationFiles(name: string, options: Pick<MigratorOptions, 'migrationsDir'> = {}): string[] {
  const dir = options.migrationsDir ?? DEFAULT_MIGRATIONS_DIR;
  if (!/^[a-z][a-z0-9_]*$/.test(name)) {
    throw new MigrationError(`migration name ${JSON.stringify(name)}: use lowercase snake_case, verb first (e.g. add_users_locale)`);
  }
  const files = readMigrationFiles(dir);
  const existing = files.find((f) => f.name.slice(5) === name);
  if (existing !== undefined) {
    throw new MigrationError(
      `migration name ${name} is taken: ${displayPath(existing.upPath)} exists. Choose another name; nothing was written.`,
      { file: displayPath(existing.upPath) },
    );
  }
  const last = files.at(-1);
  const number = String((last === undefined ? 0 : Number(last.name.slice(0, 4))) + 1).padStart(4, '0');
  const full = `${number}_${name}`;
  const up = join(dir, `${full}.up.sql`);
  const down = join(dir, `${full}.down.sql`);
  writeFileSync(
    up,
    `-- Why: <what this migration is for, in a sentence or two>.\n` +
      `-- (Put ${NO_TRANSACTION_DIRECTIVE} on the first line instead for a single statement that cannot\n` +
      `-- run in a transaction, such as CREATE INDEX CONCURRENTLY.)\n\n`,
    { flag: 'wx' },
  );
  writeFileSync(down, `-- Why: reverses ${full}.\n\n`, { flag: 'wx' });
  return [up, down];
}

// ---------------------------------------------------------------------------------------------

interface Session {
  dir: string;
  files: MigrationFile[];
  umzug(): Umzug<Kysely<any>>;
  appliedNames(): Promise<string[]>;
}

/**
 * Takes one connection, waits for the advisory lock (try-and-poll), sets lock_timeout, creates
 * the ledger if needed and checks the files against it, then runs `fn`. Always unlocks and resets
 * the connection's settings before handing it back to the pool.
 */
async function withMigrationSession<T>(
  db: Kysely<any>,
  options: MigratorOptions,
  fn: (session: Session) => Promise<T>,
): Promise<T> {
  const dir = options.migrationsDir ?? DEFAULT_MIGRATIONS_DIR;
  const files = readMigrationFiles(dir);
  const lockTimeoutMs = options.lockTimeoutMs ?? intEnv(process.env, 'DB_MIGRATION_LOCK_TIMEOUT_MS', 5_000, 0);
  const waitMs = options.waitMs ?? intEnv(process.env, 'DB_MIGRATION_WAIT_MS', 300_000, 0);
  const log = options.log ?? (() => {});

  return db
    .withoutPlugins()
    .connection()
    .execute(async (conn) => {
      await assertCanMigrate(conn, LEDGER_TABLE);
      await acquireLock(conn, waitMs, log);
      try {
        await sql`select set_config('lock_timeout', ${`${lockTimeoutMs}ms`}, false),
                         set_config('statement_timeout', '0', false)`.execute(conn);
        await sql`create table if not exists ${sql.table(LEDGER_TABLE)} (
          name        text primary key,
          checksum    text not null check (checksum ~ '^[0-9a-f]{64}$'),
          applied_at  timestamptz not null default now(),
          duration_ms integer not null check (duration_ms >= 0)
        )`.execute(conn);
        const ledger = await readLedger(conn);
        verifyChecksums(dir, files, ledger);
        const context = { conn, dir, lockTimeoutMs, log };
        return await fn({
          dir,
          files,
          appliedNames: async () => (await readLedger(conn)).map((row) => row.name),
          umzug: () =>
            new Umzug<Kysely<any>>({
              context: conn,
              storage: ledgerStorage,
              logger: undefined,
              migrations: files.map((file) => ({
                name: file.name,
                path: file.upPath,
                up: () => runMigrationFile(context, file, 'up'),
                down: () => runMigrationFile(context, file, 'down'),
              })),
            }),
        });
      } finally {
        await sql`reset lock_timeout`.execute(conn).catch(() => {});
        await sql`reset statement_timeout`.execute(conn).catch(() => {});
        await sql`select pg_advisory_unlock(${LOCK_KEY}::bigint)`.execute(conn).catch(() => {});
      }
    });
}

/** umzug reads the ledger through this; rows are written inside each migration's transaction. */
const ledgerStorage: UmzugStorage<Kysely<any>> = {
  async executed({ context }) {
    return (await readLedger(context)).map((row) => row.name);
  },
  async logMigration() {},
  async unlogMigration() {},
};

async function acquireLock(conn: Kysely<any>, waitMs: number, log: (line: string) => void): Promise<void> {
  const started = Date.now();
  let told = false;
  for (;;) {
    const { rows } = await sql<{ locked: boolean }>`select pg_try_advisory_lock(${LOCK_KEY}::bigint) as locked`.execute(conn);
    if (rows[0]?.locked) return;
    if (Date.now() - started >= waitMs) {
      throw new MigrationError(
        `another migrator has held the migration lock for over ${waitMs} ms; nothing was applied. ` +
          `Wait for it to finish (see pg_stat_activity), or raise DB_MIGRATION_WAIT_MS.`,
      );
    }
    if (!told) log('waiting for another migrator to finish…');
    told = true;
    await new Promise((done) => setTimeout(done, 100 + Math.random() * 150));
  }
}

async function readLedger(conn: Kysely<any>): Promise<LedgerRow[]> {
  const { rows } = await sql<LedgerRow>`
    select name, checksum, applied_at, duration_ms from ${sql.table(LEDGER_TABLE)} order by name`.execute(conn);
  return rows;
}

function verifyChecksums(dir: string, files: MigrationFile[], ledger: LedgerRow[]): void {
  const problems: string[] = [];
  for (const row of ledger) {
    const file = files.find((f) => f.name === row.name);
    if (file === undefined) {
      problems.push(`${displayPath(join(dir, `${row.name}.up.sql`))} was applied but is gone (deleted or renamed)`);
    } else if (file.checksum !== row.checksum) {
      problems.push(
        `${displayPath(file.upPath)} was edited after it was applied ` +
          `(ledger sha256 ${row.checksum.slice(0, 12)}…, file ${file.checksum.slice(0, 12)}…)`,
      );
    }
  }
  if (problems.length > 0) {
    throw new MigrationError(
      `${problems.join('; ')}. Applied migrations must not change: restore the file and put the change in a new migration ` +
        `(npx database migrate create NAME). Nothing was run.`,
    );
  }
}

interface RunContext {
  conn: Kysely<any>;
  dir: string;
  lockTimeoutMs: number;
  log: (line: string) => void;
}

/**
 * Runs one file statement by statement. In a transaction (the default) the ledger row is written
 * or deleted in the same transaction, so a failure leaves neither schema changes nor a ledger row.
 */
async function runMigrationFile(ctx: RunContext, file: MigrationFile, direction: 'up' | 'down'): Promise<void> {
  const path = direction === 'up' ? file.upPath : file.downPath;
  if (!existsSync(path)) throw new MigrationError(`${displayPath(path)} is missing; nothing was reverted`, { file: displayPath(path) });
  const script = readFileSync(path, 'utf8');
  const statements = splitSqlStatements(script);
  const noTransaction = script.split('\n', 1)[0]?.trim() === NO_TRANSACTION_DIRECTIVE;
  if (noTransaction && statements.length !== 1) {
    throw new MigrationError(
      `${displayPath(path)}: ${NO_TRANSACTION_DIRECTIVE} allows exactly one statement, found ${statements.length}`,
      { file: displayPath(path) },
    );
  }
  const { conn } = ctx;
  const started = performance.now();
  ctx.log(`${direction === 'up' ? 'applying' : 'reverting'} ${file.name}${noTransaction ? ' (no transaction)' : ''}`);
  if (!noTransaction) await sql`begin`.execute(conn);
  try {
    for (const statement of statements) await runStatement(ctx, path, statement);
    if (direction === 'up') {
      const durationMs = Math.round(performance.now() - started);
      await sql`insert into ${sql.table(LEDGER_TABLE)} (name, checksum, duration_ms)
                values (${file.name}, ${file.checksum}, ${durationMs})`.execute(conn);
    } else {
      await sql`delete from ${sql.table(LEDGER_TABLE)} where name = ${file.name}`.execute(conn);
    }
    if (!noTransaction) await sql`commit`.execute(conn);
  } catch (error) {
    if (!noTransaction) await sql`rollback`.execute(conn).catch(() => {});
    throw error;
  }
}

async function runStatement(ctx: RunContext, path: string, statement: SqlStatement): Promise<void> {
  try {
    await sql.raw(statement.text).execute(ctx.conn);
  } catch (cause) {
    const where = `${displayPath(path)}:${statement.line}`;
    const code = sqlState(cause);
    const reason =
      code === '55P03'
        ? `could not get a lock within lock_timeout (${ctx.lockTimeoutMs} ms): another session holds a lock ` +
          `on an object this statement changes. Retry when it is released, or raise DB_MIGRATION_LOCK_TIMEOUT_MS`
        : `${cause instanceof Error ? cause.message : String(cause)}${code === undefined ? '' : ` (SQLSTATE ${code})`}`;
    throw new MigrationError(
      `${where}: ${reason}. The migration was rolled back: no change and no ledger row. Statement: ${excerpt(statement.text)}`,
      { file: displayPath(path), line: statement.line, statement: statement.text, cause },
    );
  }
}

/** Runs umzug and surfaces our own MigrationError instead of umzug's wrapper around it. */
async function runUmzug<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    const cause = (error as { cause?: unknown }).cause;
    if (cause instanceof MigrationError) throw cause;
    throw error;
  }
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function excerpt(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ');
  return oneLine.length > 200 ? `${oneLine.slice(0, 200)}…` : oneLine;
}
