/**
 * Where the benchmark runs: a database of its own on the PostgreSQL server of DATABASE_URL
 * (default postgres://postgres@127.0.0.1:5432/postgres), created for the run and dropped after,
 * or embedded PGlite in memory. Each gives the package's Kysely (the measured path) and "bare"
 * driver connections (pg.Client / the PGlite instance) for the baselines and the bulk load.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { Kysely, PGliteDialect } from 'kysely';
import pg from 'pg';
import { SnakeCamelPlugin } from '../src/db/camel-case.ts';
import { postgresConfig, type AppRole } from '../src/db/config.ts';
import { createDb } from '../src/db/create-db.ts';
import { guardPglite } from '../src/db/guard-pglite.ts';
import { isTemplateText } from '../src/db/statement-template.ts';
import { beginAndEnterSql, CLEANUP_SQL, ConnectionContext, ENTER_CONTEXT_SQL, OPEN_CONTEXT_SQL } from '../src/db/tenant-context.ts';
import type { DB } from '../src/db/schema.generated.ts';
import { VectorPlugin } from '../src/db/vector.ts';

/** The server used when DATABASE_URL is not set. */
export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

/** A query on one bare connection: rows as objects, as the driver gives them. */
export type BareQuery = <R = Record<string, unknown>>(text: string, params?: unknown[]) => Promise<R[]>;

/** One bare driver connection (no Kysely, no package code). */
export interface BareClient {
  /** The statement sent unnamed (parsed and planned at every call). */
  query: BareQuery;
  /** The statement as a named prepared statement (one name per text on this connection): the floor a driver can reach. */
  queryNamed: BareQuery;
  /** Runs a script of several statements, without parameters (simple query protocol). */
  script(text: string): Promise<void>;
  /** `begin` … `commit` around `fn` on this connection (rollback when it throws). */
  transaction<T>(fn: (query: BareQuery) => Promise<T>): Promise<T>;
  /**
   * A tenant transaction in withTenant's shape, with no package code in the way: `begin` and the
   * signed tenant context in one round trip (src/db/tenant-context.ts: the same text, signed with
   * this connection's own key), `fn`, then `commit`, with the same cleanup in the same round trip
   * when the guard would send it: when a statement other than the package's own (a statement
   * template's text, or one given to {@link BareClient.asPackageStatement}) ran on this
   * connection since its last cleanup (src/db/guard-pg-client.ts).
   */
  tenantTransaction<T>(tenantId: string, fn: (query: BareQuery, queryNamed: BareQuery) => Promise<T>, role?: AppRole): Promise<T>;
  /**
   * A tenant transaction in the shape withTenant had before the signed context (issue 19):
   * `begin`, `set_config('app.tenant_id', …)` as a named statement, `fn`, `commit`: four round
   * trips, no cleanup. As the owner (row-level security does not apply, so `fn`'s statements skip
   * the policies' work too): a floor under what that withTenant cost, not a copy of it.
   */
  unsignedTransaction<T>(tenantId: string, fn: (query: BareQuery, queryNamed: BareQuery) => Promise<T>): Promise<T>;
  /** Counts `text` as a statement of the package (a statement the package sent in an earlier version, bench/fixtures) for the cleanup rule above. */
  asPackageStatement(text: string): void;
  close(): Promise<void>;
}

/** An open benchmark database. */
export interface Backend {
  kind: 'server' | 'embedded';
  /** Human-readable: which server and database, or PGlite memory://. */
  where: string;
  /** The package's database handle: createDb() on the server; on PGlite the same dialect and plugins over our own instance. */
  db: Kysely<DB>;
  /** A connection URL of the bench database (server only): for the migrate CLI. */
  url: string | undefined;
  /** A bare connection, as the owner (bypasses row-level security: a superuser). */
  bare: BareClient;
  /** `n` more bare connections (the same single connection `n` times on PGlite). */
  openBare(n: number): Promise<BareClient[]>;
  /** Closes everything; drops the database on the server. */
  close(): Promise<void>;
}

/** Opens a fresh, empty database on the server. `poolMax`: the package pool's size. */
export async function openServer(options: { url?: string | undefined; poolMax: number }): Promise<Backend> {
  const adminUrl = options.url ?? DEFAULT_DATABASE_URL;
  const name = `bench_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = withDatabase(adminUrl, name);
  const db = createDb(postgresConfig({ connectionString: url, poolMax: options.poolMax }));
  const opened: BareClient[] = [];
  const openBare = async (n: number) => {
    const clients = await Promise.all(Array.from({ length: n }, () => serverClient(url)));
    opened.push(...clients);
    return clients;
  };
  const [bare] = await openBare(1);
  return {
    kind: 'server',
    where: `${redact(adminUrl)} (database ${name}, created for this run and dropped after)`,
    db,
    url,
    bare: bare!,
    openBare,
    close: async () => {
      await db.destroy();
      await Promise.all(opened.map((c) => c.close().catch(() => {})));
      const drop = new pg.Client({ connectionString: adminUrl });
      await drop.connect();
      await drop.query(`drop database if exists ${name} with (force)`);
      await drop.end();
    },
  };
}

/** The progress line that names the server a run uses (DATABASE_URL, or the default when unset). */
export function serverTarget(url: string | undefined): string {
  return url === undefined
    ? `backend: PostgreSQL server — DATABASE_URL is not set, using the default ${DEFAULT_DATABASE_URL}`
    : `backend: PostgreSQL server of DATABASE_URL ${redact(url)}`;
}

/**
 * Opens a server database of its own for a mode that must not leave it behind (--growth,
 * --halfvec): Ctrl-C or SIGTERM drops it before exiting; `close` removes those handlers and drops it.
 */
export async function openServerDroppedOnSignal(options: { url: string | undefined; poolMax: number }, say: (line: string) => void): Promise<{ backend: Backend; close: () => Promise<void> }> {
  say(serverTarget(options.url));
  const backend = await openServer(options);
  const onSignal = (signal: NodeJS.Signals) => {
    say(`${signal}: dropping the bench database…`);
    backend.close().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return {
    backend,
    close: async () => {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      await backend.close();
    },
  };
}

/** Opens PGlite with pgvector in memory. */
export async function openEmbedded(): Promise<Backend> {
  const pglite = await PGlite.create('memory://', { extensions: { vector } });
  // What createDb({ kind: 'pglite' }) builds, over an instance we hold, so that the bare baseline
  // can use the very same connection.
  const db = new Kysely<DB>({ dialect: new PGliteDialect({ pglite: guardPglite(pglite) }), plugins: [new SnakeCamelPlugin(), new VectorPlugin()] });
  const bare = pgliteClient(pglite);
  return {
    kind: 'embedded',
    where: 'embedded PGlite, memory://',
    db,
    url: undefined,
    bare,
    openBare: async (n) => Array.from({ length: n }, () => bare),
    close: async () => {
      await db.destroy();
    },
  };
}

/** A bare connection to the server at `url` (the bench's baselines; bench/profile-loop.ts's floor). */
export async function serverClient(url: string): Promise<BareClient> {
  const client = new pg.Client({ connectionString: url, application_name: 'bench-bare', options: '-c search_path=public,pg_temp' });
  client.on('error', () => {});
  await client.connect();
  // As the package's guard does (guard-pg-client.ts): a tenant transaction ends with the cleanup
  // only when a statement other than the package's own (a statement template's text) ran on the
  // connection since its last cleanup.
  let dirty = true;
  const alsoPackage = new Set<string>();
  const ownStatement = (text: string) => isTemplateText(text) || alsoPackage.has(text);
  const query: BareQuery = async (text, params) => {
    if (!ownStatement(text)) dirty = true;
    return (await client.query(text, params as unknown[])).rows;
  };
  const names = new Map<string, string>();
  const queryNamed: BareQuery = async (text, params) => {
    if (!ownStatement(text)) dirty = true;
    let name = names.get(text);
    if (name === undefined) {
      name = `bare_${names.size}`;
      names.set(text, name);
    }
    return (await client.query({ name, text, values: params as unknown[] })).rows;
  };
  const context = new ConnectionContext();
  return {
    tenantTransaction: async (tenantId, fn, role = 'app_user') => {
      if (context.registered) {
        await client.query(beginAndEnterSql(context.enterParameters(tenantId, role)));
      } else {
        // The first time, as the package does it: the key is registered inside the transaction (guard-pg-client.ts says why).
        await client.query('begin');
        await client.query(OPEN_CONTEXT_SQL, context.openParameters());
        context.registered = true;
        await client.query(ENTER_CONTEXT_SQL, context.enterParameters(tenantId, role));
      }
      try {
        const result = await fn(query, queryNamed);
        await client.query(dirty ? `commit; ${CLEANUP_SQL}` : 'commit');
        dirty = false;
        return result;
      } catch (error) {
        await client.query(`rollback; ${CLEANUP_SQL}`).catch(() => {});
        dirty = false;
        throw error;
      }
    },
    unsignedTransaction: async (tenantId, fn) => {
      await client.query('begin');
      try {
        await queryNamed(`select set_config('app.tenant_id', $1, true), set_config('search_path', 'public, pg_temp', true)`, [tenantId]);
        const result = await fn(query, queryNamed);
        await client.query('commit');
        return result;
      } catch (error) {
        await client.query('rollback').catch(() => {});
        throw error;
      }
    },
    query,
    queryNamed,
    asPackageStatement: (text) => {
      alsoPackage.add(text);
    },
    script: async (text) => {
      dirty = true;
      await client.query(text);
    },
    transaction: async (fn) => {
      await client.query('begin');
      try {
        const result = await fn(query);
        await client.query('commit');
        return result;
      } catch (error) {
        await client.query('rollback').catch(() => {});
        throw error;
      }
    },
    close: () => client.end(),
  };
}

function pgliteClient(pglite: PGlite): BareClient {
  return {
    // PGlite is one connection: the package's own guard (guardPglite) signs the context for both.
    tenantTransaction: (tenantId, fn, role = 'app_user') =>
      pglite.transaction(async (tx) => {
        await tx.query(ENTER_CONTEXT_SQL, [tenantId, null, null, role]);
        const q: BareQuery = async (text, params) => (await tx.query(text, params as unknown[])).rows as never;
        return fn(q, q);
      }),
    unsignedTransaction: (tenantId, fn) =>
      pglite.transaction(async (tx) => {
        await tx.query(`select set_config('app.tenant_id', $1, true), set_config('search_path', 'public, pg_temp', true)`, [tenantId]);
        const q: BareQuery = async (text, params) => (await tx.query(text, params as unknown[])).rows as never;
        return fn(q, q);
      }),
    query: async (text, params) => (await pglite.query(text, params as unknown[])).rows as never,
    // PGlite prepares nothing by name; the embedded floor is the same call.
    queryNamed: async (text, params) => (await pglite.query(text, params as unknown[])).rows as never,
    // PGlite's guard cleans up after every tenant transaction (guard-pglite.ts).
    asPackageStatement: () => {},
    script: async (text) => {
      await pglite.exec(text);
    },
    transaction: (fn) => pglite.transaction((tx) => fn(async (text, params) => (await tx.query(text, params as unknown[])).rows as never)),
    close: async () => {},
  };
}

/** `postgres://…/name` with the database part replaced. */
export function withDatabase(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

/** The URL without its password. */
export function redact(url: string): string {
  const parsed = new URL(url);
  if (parsed.password !== '') parsed.password = '***';
  return parsed.toString();
}

/** PostgreSQL and pgvector versions, and the settings that matter for these figures. */
export async function describeDatabase(bare: BareClient): Promise<{ versions: Record<string, string>; settings: Record<string, string> }> {
  const [v] = await bare.query<{ version: string; vector: string | null }>(
    `select version() as version, (select extversion from pg_extension where extname = 'vector') as vector`,
  );
  const names = [
    'shared_buffers', 'work_mem', 'maintenance_work_mem', 'max_parallel_maintenance_workers', 'max_parallel_workers_per_gather',
    'effective_cache_size', 'synchronous_commit', 'fsync', 'jit', 'random_page_cost',
  ];
  const rows = await bare.query<{ name: string; setting: string }>(
    `select name, current_setting(name) as setting from pg_settings where name = any($1::text[]) order by name`,
    [names],
  );
  return {
    versions: { postgres: v?.version ?? '?', pgvector: v?.vector ?? '?' },
    settings: Object.fromEntries(rows.map((r) => [r.name, r.setting])),
  };
}

/** Cores, memory and CPU of this machine, and the Node.js running the benchmark. */
export function describeMachine(): Record<string, string | number> {
  return {
    cores: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    cpu: os.cpus()[0]?.model ?? '?',
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    loadAverage: os.loadavg().map((x) => x.toFixed(2)).join(' '),
  };
}
