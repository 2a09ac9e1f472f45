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
import { scanSqlScript, transactionControl, type SqlStatement } from './sql-statements.ts';

/** The folder of the package's own migrations. */
export const DEFAULT_MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/sql', import.meta.url));
/** The ledger: one row per applied migration. Owned by the migrator, not by a migration. */
export const LEDGER_TABLE = 'schema_migrations';
/** First line of a migration that must run outside a transaction (one statement, not transaction control). */
export const NO_TRANSACTION_DIRECTIVE = '-- migrate:no-transaction';

const FILE = /^(\d{4}_[a-z][a-z0-9_]*)\.(up|down)\.sql$/;
// Key of the advisory lock that serializes migrators (advisory locks are per database).
const LOCK_KEY = 7_305_114_203;
// client_connection_check_interval of the migration session (PostgreSQL 14+): while a statement
// runs, the server checks this often whether the migrator is still connected, and ends the
// session (releasing the advisory lock) when it is not. Without it a killed migrator's backend
// keeps the lock until its statement ends, which statement_timeout = 0 lets take forever.
const CLIENT_CHECK_INTERVAL = '1000ms';
// Files are decoded with `fatal`, so the SQL run is exactly the bytes hashed (a leading UTF-8 BOM,
// which PostgreSQL would refuse, is dropped); a file that is not UTF-8 is refused, not altered.
const UTF8 = new TextDecoder('utf-8', { fatal: true });

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
  /** The `.up.sql` as read once: decoded from exactly the bytes `checksum` hashes, and what runs. */
  upSql: string;
  /** sha256 (hex) of the `.down.sql` file's bytes, recorded in the ledger when the up runs; undefined without one. */
  downChecksum: string | undefined;
  /** The `.down.sql` as read once, decoded from the bytes `downChecksum` hashes; undefined without one. */
  downSql: string | undefined;
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
  /** sha256 of the `.down.sql` on disk; undefined when there is none. */
  downChecksum: string | undefined;
  /**
   * sha256 of the `.down.sql` recorded when the up ran. Undefined when pending, and for a row
   * written without one (applied before the ledger recorded down files, or without a down file):
   * such a down file is not verified, migrateDown runs it as it is.
   */
  appliedDownChecksum: string | undefined;
  /** Applied, and its `.down.sql` differs from the one recorded then: migrateDown refuses to revert it. */
  downFileChanged: boolean;
}

interface LedgerRow {
  name: string;
  checksum: string;
  applied_at: Date;
  duration_ms: number;
  /** NULL for rows written before the migrator recorded down files, or when the up ran without one. */
  down_checksum: string | null;
}

/**
 * Reads and checks the migration files of `dir`, ordered by name, each file once: the SQL kept is
 * decoded from the bytes hashed. A `.down.sql` without its `.up.sql`, a bad file name, two
 * migrations with one number or a file that is not UTF-8 is a MigrationError; an `.up.sql`
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
    const up = readScript(pair.up);
    const down = pair.down === undefined ? undefined : readScript(pair.down);
    files.push({
      name,
      upPath: pair.up,
      downPath: pair.down ?? join(dir, `${name}.down.sql`),
      hasDownFile: pair.down !== undefined,
      checksum: up.checksum,
      upSql: up.sql,
      downChecksum: down?.checksum,
      downSql: down?.sql,
    });
  }
  return files;
}

/**
 * Applies every pending migration (or those up to and including `options.to`), each in its own
 * transaction together with its ledger row (which records the up and down files' checksums).
 * Serialized with other migrators by an advisory lock; refuses to run anything when an applied
 * migration's file was edited or deleted, when a file of the run (up, or its down) holds
 * transaction control or psql meta-commands, or when the role cannot migrate (a ConfigError).
 * Returns the names applied (none when up to date).
 */
export async function migrate(db: Kysely<any>, options: MigrateOptions = {}): Promise<string[]> {
  return withMigrationSession(db, options, async (session) => {
    const { to } = options;
    const applied = new Set(await session.appliedNames());
    if (to !== undefined) {
      if (!session.files.some((f) => f.name === to)) {
        throw new MigrationError(`--to ${to}: no such migration in ${displayPath(session.dir)}`);
      }
      if (applied.has(to)) return [];
    }
    // The files umzug is about to run (the pending ones, in file order, up to `to`), checked
    // before the first runs. Their down files too: the ledger records them, so a down file that
    // could never run is refused now rather than found out at revert time.
    const pending = session.files.filter((f) => !applied.has(f.name));
    const run = to === undefined ? pending : pending.slice(0, pending.findIndex((f) => f.name === to) + 1);
    assertRunnable(run.flatMap((f) => (f.hasDownFile ? [upOf(f), downOf(f)] : [upOf(f)])));
    const umzug = session.umzug();
    const done = await runUmzug(() => (to === undefined ? umzug.up() : umzug.up({ to })));
    return done.map((m) => m.name);
  });
}

/**
 * Reverts applied migrations, newest first: one by default, down to and including `to` when
 * given a name, all of them with `to: 0`. Refuses, reverting nothing, when one of them has no
 * `.down.sql`, when a down file differs from the one recorded when its up ran, or when one holds
 * transaction control or psql meta-commands; `options.confirm` is asked after these checks.
 * Returns the names reverted.
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
    const ledger = await session.ledger();
    const applied = new Set(ledger.map((row) => row.name));
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
    verifyDownChecksums(plan, ledger);
    assertRunnable(plan.map(downOf));
    const log = options.log ?? (() => {});
    for (const file of plan) {
      if (ledger.find((row) => row.name === file.name)?.down_checksum == null) {
        log(`${file.name}: no down file was recorded when it was applied; reverting with ${displayPath(file.downPath)} as it is now`);
      }
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
    const recordedDown = row?.down_checksum ?? undefined;
    return {
      name: file.name,
      state: row === undefined ? 'pending' : row.checksum === file.checksum ? 'applied' : 'changed',
      checksum: file.checksum,
      appliedChecksum: row?.checksum,
      appliedAt: row?.applied_at,
      durationMs: row?.duration_ms,
      downFileMissing: !file.hasDownFile,
      downChecksum: file.downChecksum,
      appliedDownChecksum: recordedDown,
      downFileChanged: recordedDown !== undefined && file.downChecksum !== undefined && file.downChecksum !== recordedDown,
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
        downChecksum: undefined,
        appliedDownChecksum: row.down_checksum ?? undefined,
        downFileChanged: false,
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
      `-- run in a transaction, such as CREATE INDEX CONCURRENTLY.) No BEGIN/COMMIT: the migrator runs\n` +
      `-- the file in one transaction.\n\n`,
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
  ledger(): Promise<LedgerRow[]>;
}

/**
 * Takes one connection, waits for the advisory lock (try-and-poll), sets lock_timeout and
 * client_connection_check_interval, creates or upgrades the ledger and checks the files against
 * it, then runs `fn`. Always unlocks and resets the connection's settings before handing it back
 * to the pool.
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
        await checkClientConnection(conn, log);
        await createLedger(conn);
        const ledger = await readLedger(conn);
        verifyChecksums(dir, files, ledger);
        const context = { conn, dir, lockTimeoutMs, log };
        return await fn({
          dir,
          files,
          appliedNames: async () => (await readLedger(conn)).map((row) => row.name),
          ledger: () => readLedger(conn),
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
        await sql`reset client_connection_check_interval`.execute(conn).catch(() => {});
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

/**
 * Sets client_connection_check_interval for the session. PGlite (0.5, PostgreSQL 18) accepts it
 * (its client is the process itself); a server that cannot check (a platform without the
 * support, SQLSTATE 22023) migrates without it, and the log says what that means.
 */
async function checkClientConnection(conn: Kysely<any>, log: (line: string) => void): Promise<void> {
  try {
    await sql`select set_config('client_connection_check_interval', ${CLIENT_CHECK_INTERVAL}, false)`.execute(conn);
  } catch (error) {
    if (sqlState(error) !== '22023' && sqlState(error) !== '42704') throw error;
    log(
      `this server cannot check for a dead client (${error instanceof Error ? error.message : String(error)}): ` +
        `a migrator killed during a statement holds the migration lock until that statement ends`,
    );
  }
}

/**
 * Creates the ledger, or adds what an older migrator's ledger lacks: `down_checksum`, NULL in
 * the rows written before it existed (their down files are not verified).
 */
async function createLedger(conn: Kysely<any>): Promise<void> {
  await sql`create table if not exists ${sql.table(LEDGER_TABLE)} (
    name        text primary key,
    checksum    text not null check (checksum ~ '^[0-9a-f]{64}$'),
    applied_at  timestamptz not null default now(),
    duration_ms integer not null check (duration_ms >= 0)
  )`.execute(conn);
  // Checked first: ALTER TABLE takes an exclusive lock on the ledger even when it skips.
  const { rows } = await sql<{ present: boolean }>`
    select exists (select 1 from pg_attribute
                   where attrelid = to_regclass(${LEDGER_TABLE}) and attname = 'down_checksum' and not attisdropped) as present`.execute(conn);
  if (rows[0]?.present) return;
  await sql`alter table ${sql.table(LEDGER_TABLE)}
              add column if not exists down_checksum text check (down_checksum ~ '^[0-9a-f]{64}$')`.execute(conn);
}

/** The ledger's rows; `down_checksum` is NULL when the ledger predates it (status reads ledgers it does not upgrade). */
async function readLedger(conn: Kysely<any>): Promise<LedgerRow[]> {
  const { rows } = await sql<LedgerRow>`
    select name, checksum, applied_at, duration_ms, to_jsonb(l) ->> 'down_checksum' as down_checksum
    from ${sql.table(LEDGER_TABLE)} l order by name`.execute(conn);
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

/** Refuses migrateDown when a down file of the plan differs from the one recorded when its up ran. */
function verifyDownChecksums(plan: MigrationFile[], ledger: LedgerRow[]): void {
  const changed = plan.filter((file) => {
    const recorded = ledger.find((row) => row.name === file.name)?.down_checksum;
    return recorded != null && recorded !== file.downChecksum;
  });
  if (changed.length === 0) return;
  const first = changed[0]!;
  const problems = changed.map((file) => {
    const recorded = ledger.find((row) => row.name === file.name)!.down_checksum!;
    return (
      `${displayPath(file.downPath)} was edited after ${file.name} was applied ` +
      `(ledger sha256 ${recorded.slice(0, 12)}…, file ${file.downChecksum!.slice(0, 12)}…)`
    );
  });
  throw new MigrationError(
    `${problems.join('; ')}. A down file must undo what its up did when it was applied: restore it (e.g. from ` +
      `version control). To revert with an edited down file on purpose, record it first: update ${LEDGER_TABLE} ` +
      `set down_checksum = '${first.downChecksum}' where name = '${first.name}'. Nothing was reverted.`,
    { file: displayPath(first.downPath) },
  );
}

/** One file of a migration, about to run: its path, text and direction. */
interface ScriptRef {
  file: MigrationFile;
  direction: 'up' | 'down';
  path: string;
  text: string;
}

const upOf = (file: MigrationFile): ScriptRef => ({ file, direction: 'up', path: file.upPath, text: file.upSql });
function downOf(file: MigrationFile): ScriptRef {
  // migrateDown refuses a migration without a down file before it gets here.
  if (file.downSql === undefined) throw new MigrationError(`${displayPath(file.downPath)} is missing; nothing was reverted`, { file: displayPath(file.downPath) });
  return { file, direction: 'down', path: file.downPath, text: file.downSql };
}

interface PreparedScript {
  statements: SqlStatement[];
  noTransaction: boolean;
  problems: Array<{ message: string; line: number | undefined }>;
}

/**
 * Splits a file into statements and lists what makes it unfit to run: psql meta-commands
 * anywhere; transaction control as a statement of its own (BEGIN, COMMIT, …; not inside strings,
 * comments or DO/function bodies), which would end the transaction the file runs in; and, for a
 * `-- migrate:no-transaction` file, anything but exactly one statement.
 */
function prepareScript(ref: ScriptRef): PreparedScript {
  const { statements, metaCommands } = scanSqlScript(ref.text);
  const noTransaction = ref.text.split('\n', 1)[0]?.trim() === NO_TRANSACTION_DIRECTIVE;
  const path = displayPath(ref.path);
  const problems: PreparedScript['problems'] = [];
  for (const meta of metaCommands) {
    problems.push({ line: meta.line, message: `${path}:${meta.line}: psql meta-command ${excerpt(meta.text)} (the migrator runs SQL, not psql)` });
  }
  for (const statement of statements) {
    const command = transactionControl(statement.text);
    if (command === undefined) continue;
    problems.push({
      line: statement.line,
      message: noTransaction
        ? `${path}:${statement.line}: ${command} (a ${NO_TRANSACTION_DIRECTIVE} file holds one statement that is not transaction control)`
        : `${path}:${statement.line}: ${command} would end the transaction the migration runs in`,
    });
  }
  if (noTransaction && statements.length !== 1) {
    problems.push({ line: undefined, message: `${path}: ${NO_TRANSACTION_DIRECTIVE} allows exactly one statement, found ${statements.length}` });
  }
  return { statements, noTransaction, problems };
}

/** Refuses, naming every file and line at fault, when any of these files cannot run whole. */
function assertRunnable(refs: ScriptRef[]): void {
  const found = refs.flatMap((ref) => prepareScript(ref).problems.map((problem) => ({ ref, problem })));
  if (found.length === 0) return;
  const first = found[0]!;
  throw new MigrationError(
    `${found.map((f) => f.problem.message).join('; ')}. A migration file runs whole in one transaction, so it may ` +
      `not control transactions (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, …) or hold psql meta-commands; a statement ` +
      `that cannot run in a transaction goes alone in a file whose first line is ${NO_TRANSACTION_DIRECTIVE}. ` +
      `Nothing was run.`,
    { file: displayPath(first.ref.path), ...(first.problem.line === undefined ? {} : { line: first.problem.line }) },
  );
}

interface RunContext {
  conn: Kysely<any>;
  dir: string;
  lockTimeoutMs: number;
  log: (line: string) => void;
}

/**
 * Runs one file statement by statement, from the text read (and hashed) before the run. In a
 * transaction (the default) the ledger row is written or deleted in the same transaction, so a
 * failure leaves neither schema changes nor a ledger row; the error says so only once the server
 * confirms it (pg_xact_status), and says otherwise when SQL in the file ended the transaction.
 */
async function runMigrationFile(ctx: RunContext, file: MigrationFile, direction: 'up' | 'down'): Promise<void> {
  const ref = direction === 'up' ? upOf(file) : downOf(file);
  const script = prepareScript(ref);
  // Checked for every file of the run before the first ran; this guards against a caller that did not.
  if (script.problems.length > 0) assertRunnable([ref]);
  ctx.log(`${direction === 'up' ? 'applying' : 'reverting'} ${file.name}${script.noTransaction ? ' (no transaction)' : ''}`);
  if (script.noTransaction) return runOutsideTransaction(ctx, ref, script.statements[0]!);

  const { conn } = ctx;
  const started = performance.now();
  await sql`begin`.execute(conn);
  let xid: string;
  try {
    // Assigns the transaction its id now, to tell afterwards whether it is still the one open.
    xid = (await sql<{ xid: string }>`select pg_current_xact_id()::text as xid`.execute(conn)).rows[0]!.xid;
  } catch (error) {
    await sql`rollback`.execute(conn).catch(() => {});
    throw error;
  }
  let current: SqlStatement | undefined;
  try {
    for (const statement of script.statements) {
      current = statement;
      await sql.raw(statement.text).execute(conn);
      // The static check sees every statement the splitter sees; on a server, one "statement"
      // can still hold several commands that the server lexes differently (standard_conforming_strings
      // turned off by the file, for one), and pg sends it as one simple query. So ask the server.
      const open = await sql<{ xid: string | null }>`select pg_current_xact_id_if_assigned()::text as xid`.execute(conn);
      if (open.rows[0]?.xid !== xid) {
        await sql`rollback`.execute(conn).catch(() => {});
        throw transactionEnded(ctx, ref, statement, await transactionOutcome(conn, xid));
      }
    }
    current = undefined;
    await writeLedger(ctx, file, direction, started);
    await sql`commit`.execute(conn);
  } catch (error) {
    if (error instanceof MigrationError) throw error;
    await sql`rollback`.execute(conn).catch(() => {});
    throw statementFailed(ctx, ref, current, error, await transactionOutcome(conn, xid));
  }
}

/** A `-- migrate:no-transaction` file: its one statement, then the ledger row, each committing on its own. */
async function runOutsideTransaction(ctx: RunContext, ref: ScriptRef, statement: SqlStatement): Promise<void> {
  const started = performance.now();
  try {
    await sql.raw(statement.text).execute(ctx.conn);
  } catch (cause) {
    const leftovers = /\bconcurrently\b/i.test(statement.text)
      ? ', except that a failed CONCURRENTLY build leaves an INVALID index behind: drop it before you retry'
      : '';
    throw new MigrationError(
      `${displayPath(ref.path)}:${statement.line}: ${failureReason(ctx, cause)}. The statement ran outside a transaction ` +
        `(${NO_TRANSACTION_DIRECTIVE}) and failed, so PostgreSQL undid it${leftovers}; no ledger row was written. ` +
        `Statement: ${excerpt(statement.text)}`,
      { file: displayPath(ref.path), line: statement.line, statement: statement.text, cause },
    );
  }
  try {
    await writeLedger(ctx, ref.file, ref.direction, started);
  } catch (cause) {
    throw new MigrationError(
      `${displayPath(ref.path)}: the statement ran (outside a transaction, ${NO_TRANSACTION_DIRECTIVE}) but the ledger ` +
        `row could not be ${ref.direction === 'up' ? 'written' : 'deleted'}: ${failureReason(ctx, cause)}. ` +
        `${ref.file.name} is ${ref.direction === 'up' ? 'applied' : 'reverted'} and the ledger does not say so: ` +
        `fix the ledger (${LEDGER_TABLE}) by hand before you run the migrator again.`,
      { file: displayPath(ref.path), statement: statement.text, cause },
    );
  }
}

async function writeLedger(ctx: RunContext, file: MigrationFile, direction: 'up' | 'down', started: number): Promise<void> {
  if (direction === 'up') {
    const durationMs = Math.round(performance.now() - started);
    await sql`insert into ${sql.table(LEDGER_TABLE)} (name, checksum, down_checksum, duration_ms)
              values (${file.name}, ${file.checksum}, ${file.downChecksum ?? null}, ${durationMs})`.execute(ctx.conn);
  } else {
    await sql`delete from ${sql.table(LEDGER_TABLE)} where name = ${file.name}`.execute(ctx.conn);
  }
}

type Outcome = 'committed' | 'aborted' | { unknown: string };

/** What became of the migration's transaction, once it is over: the server's own record of it. */
async function transactionOutcome(conn: Kysely<any>, xid: string): Promise<Outcome> {
  try {
    const { rows } = await sql<{ status: string | null }>`select pg_xact_status(${xid}::xid8) as status`.execute(conn);
    const status = rows[0]?.status;
    if (status === 'committed' || status === 'aborted') return status;
    return { unknown: `the server reports it as ${status ?? 'unknown'}` };
  } catch (error) {
    return { unknown: error instanceof Error ? error.message : String(error) };
  }
}

function statementFailed(ctx: RunContext, ref: ScriptRef, statement: SqlStatement | undefined, cause: unknown, outcome: Outcome): MigrationError {
  const path = displayPath(ref.path);
  const where = statement === undefined ? `${path} (${ref.direction === 'up' ? 'writing' : 'deleting'} its ledger row, or committing)` : `${path}:${statement.line}`;
  const what =
    outcome === 'aborted'
      ? 'The migration was rolled back: no change and no ledger row.'
      : outcome === 'committed'
        ? `The migration's transaction had been committed by SQL in the file that the migrator could not see as ` +
          `transaction control: the file's changes may be partly applied, and no ledger row was written. Inspect the ` +
          `schema before you retry.`
        : `Whether the migration was rolled back could not be verified (${outcome.unknown}); no ledger row was written. ` +
          `PostgreSQL rolls back a transaction whose connection is lost. Inspect the schema before you retry.`;
  return new MigrationError(
    `${where}: ${failureReason(ctx, cause)}. ${what}${statement === undefined ? '' : ` Statement: ${excerpt(statement.text)}`}`,
    { file: path, ...(statement === undefined ? {} : { line: statement.line, statement: statement.text }), cause },
  );
}

function transactionEnded(ctx: RunContext, ref: ScriptRef, statement: SqlStatement, outcome: Outcome): MigrationError {
  const path = displayPath(ref.path);
  const how = outcome === 'committed' ? 'it was committed' : outcome === 'aborted' ? 'it was rolled back' : outcome.unknown;
  return new MigrationError(
    `${path}:${statement.line}: after this statement the migration's transaction was no longer open (${how}): SQL in ` +
      `it ended the transaction where the migrator could not see transaction control. The file's changes up to ` +
      `line ${statement.line} may be partly applied; nothing after it ran, and no ledger row was ` +
      `${ref.direction === 'up' ? 'written' : 'deleted'}. Inspect the schema before you retry. Statement: ${excerpt(statement.text)}`,
    { file: path, line: statement.line, statement: statement.text },
  );
}

function failureReason(ctx: RunContext, cause: unknown): string {
  const code = sqlState(cause);
  return code === '55P03'
    ? `could not get a lock within lock_timeout (${ctx.lockTimeoutMs} ms): another session holds a lock ` +
        `on an object this statement changes. Retry when it is released, or raise DB_MIGRATION_LOCK_TIMEOUT_MS`
    : `${cause instanceof Error ? cause.message : String(cause)}${code === undefined ? '' : ` (SQLSTATE ${code})`}`;
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

/** Reads a migration file once: its text (decoded from exactly these bytes) and their sha256. */
function readScript(path: string): { sql: string; checksum: string } {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (cause) {
    throw new MigrationError(`${displayPath(path)} could not be read: ${cause instanceof Error ? cause.message : String(cause)}`, {
      file: displayPath(path),
      cause,
    });
  }
  try {
    return { sql: UTF8.decode(bytes), checksum: sha256(bytes) };
  } catch {
    throw new MigrationError(`${displayPath(path)} is not valid UTF-8: save it as UTF-8. Nothing was run.`, { file: displayPath(path) });
  }
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function excerpt(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ');
  return oneLine.length > 200 ? `${oneLine.slice(0, 200)}…` : oneLine;
}
