import { Kysely, PGliteDialect, PostgresDialect, type Transaction } from 'kysely';
import pg from 'pg';
import { SnakeCamelPlugin } from './camel-case.ts';
import { loadConfig, type AppRole, type DbConfig, type PostgresConfig } from './config.ts';
import { nameConnectErrors } from './connect-errors.ts';
import { guardClient, releaseOf } from './guard-pg-client.ts';
import { guardPglite } from './guard-pglite.ts';
import { openPglite } from './pglite-store.ts';
import { nameStatements } from './prepared-statements.ts';
import { registerSecretKeys } from './secret-keys.ts';
import type { DB } from './schema.generated.ts';
import { describeTarget } from './target.ts';
import { VectorPlugin } from './vector.ts';

/** What every query function takes first: the database, or a transaction on it. */
export type Executor = Kysely<DB>;
/** A transaction, for the functions that are only correct inside one (e.g. under withTenant). */
export type Tx = Transaction<DB>;

/** Options of {@link createDb} beyond the connection settings. */
export interface CreateDbOptions {
  /**
   * Called with errors of idle pooled connections (a server restart, a killed backend); such a
   * connection is dropped from the pool and the next query opens a new one. Default: a warning
   * on stderr. Without a handler, node-postgres would crash the process on such an error.
   */
  onPoolError?: (error: Error) => void;
  /**
   * Called with every NOTICE, WARNING or LOG message the server sends a pooled connection (RAISE
   * NOTICE, Citus's `citus.log_remote_commands`). Default: none (node-postgres drops them).
   * Server only; PGlite's messages are not passed on.
   */
  onNotice?: (notice: ServerNotice) => void;
}

/** A NOTICE/WARNING/LOG message of the server, as node-postgres passes it on. */
export interface ServerNotice {
  message?: string | undefined;
  severity?: string | undefined;
  code?: string | undefined;
  detail?: string | undefined;
  hint?: string | undefined;
}

const pools = new WeakMap<Kysely<any>, pg.Pool>();
// Keyed by the dialect's adapter: one per createDb, shared by db.withPlugin(…), withoutPlugins(), withSchema(…).
const appRoles = new WeakMap<object, AppRole>();

/** The service role `db` was configured with (DB_APP_ROLE or the config's appRole), if any. */
export function appRoleOf(db: Kysely<any>): AppRole | undefined {
  return appRoles.get(db.getExecutor().adapter);
}

/**
 * Creates a `Kysely<DB>` with camelCase names and `number[]` vectors, over a `pg` Pool when the
 * config (default: the environment, see {@link loadConfig}) names a server, else over embedded
 * PGlite with pgvector. Nothing connects until the first query; `db.destroy()` closes it.
 *
 * @example
 * const db = createDb({ kind: 'pglite', storage: 'memory://' });
 */
export function createDb(config: DbConfig = loadConfig(), options: CreateDbOptions = {}): Kysely<DB> {
  // Binary vectors to a server. PGlite 0.5 sends every parameter as text: a Buffer for
  // `$1::vector` arrives as its raw bytes ("invalid byte sequence for encoding UTF8: 0x00").
  const plugins = [new SnakeCamelPlugin(), new VectorPlugin({ binary: config.kind === 'postgres' })];
  let db: Kysely<DB>;
  if (config.kind === 'postgres') {
    const pool = createPool(config, options);
    db = new Kysely<DB>({ dialect: new PostgresDialect({ pool: guardedPool(pool) }), plugins });
    pools.set(db, pool);
  } else {
    db = new Kysely<DB>({
      dialect: new PGliteDialect({ pglite: async () => guardPglite(await openPglite(config.storage)) }),
      plugins,
    });
  }
  if (config.appRole !== undefined) appRoles.set(db.getExecutor().adapter, config.appRole);
  registerSecretKeys(db, config);
  return db;
}

/**
 * Closes a database made by {@link createDb} after the calls in flight have finished: waits (up to
 * `timeoutMs`) until no pooled connection is checked out or being opened and no caller waits for
 * one, then destroys it. Kysely's own `destroy()` does not wait: a call still opening its
 * connection fails with "driver has already been destroyed".
 */
export async function closeGracefully(db: Kysely<any>, options: { timeoutMs?: number } = {}): Promise<void> {
  const pool = pools.get(db);
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  while (pool !== undefined && pool.totalCount - pool.idleCount + pool.waitingCount > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await db.destroy();
}

/**
 * What Kysely sees of the pool: connections whose release discards them when the tenant-context
 * hooks found them tampered with (guard-pg-client.ts).
 */
function guardedPool(pool: pg.Pool) {
  return {
    options: pool.options,
    Client: (pool as unknown as { Client: unknown }).Client as never,
    connect: async () => {
      const client = await pool.connect();
      client.release = releaseOf(client);
      return client;
    },
    end: () => pool.end(),
  };
}

/**
 * Settings every pooled connection starts with (the startup packet's `options`), which the
 * package relies on: RESET ALL, run at the start and end of every tenant transaction, returns to
 * these, and they override any `ALTER ROLE … SET` of the login role. `pg_temp` is listed last,
 * so a temporary table cannot shadow a table of the package; with an appRole, `RESET ROLE`
 * returns to that role, not to the login role.
 */
function startupOptions(config: PostgresConfig): string {
  const settings = ['search_path=public,pg_temp', 'default_transaction_read_only=off'];
  if (config.appRole !== undefined) settings.push(`role=${config.appRole}`);
  return settings.map((s) => `-c ${s}`).join(' ');
}

function createPool(config: PostgresConfig, options: CreateDbOptions): pg.Pool {
  const pool = new pg.Pool({
    options: startupOptions(config),
    ...(config.connectionString === undefined ? {} : { connectionString: config.connectionString }),
    max: config.poolMax,
    idleTimeoutMillis: config.idleTimeoutMs,
    connectionTimeoutMillis: config.connectTimeoutMs,
    application_name: config.applicationName,
    ...(config.statementTimeoutMs > 0 ? { statement_timeout: config.statementTimeoutMs } : {}),
    ...(config.idleInTransactionTimeoutMs > 0
      ? { idle_in_transaction_session_timeout: config.idleInTransactionTimeoutMs }
      : {}),
  });
  nameConnectErrors(pool, describeTarget(config));
  const onError =
    options.onPoolError ??
    ((error: Error) => console.warn(`database: an idle pooled connection failed and was dropped: ${error.message}`));
  // Idle clients: pg-pool forwards their errors here and drops them.
  pool.on('error', onError);
  // Checked-out clients: pg-pool listens only while a client is idle, so a connection killed
  // between two queries of a transaction (pg_terminate_backend, a server restart) would emit
  // 'error' with no listener and crash the process. With this listener the client is marked
  // unusable, the next query on it rejects, and pg-pool discards it on release.
  pool.on('connect', (client) => {
    client.on('error', onError);
    if (options.onNotice !== undefined) client.on('notice', options.onNotice);
    guardClient(client, config.preparedStatements ? nameStatements : undefined);
  });
  return pool;
}
