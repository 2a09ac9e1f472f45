import { resolve } from 'node:path';
import { ConfigError } from './errors.ts';
import { secretKeysFromEnv } from './secret-keys.ts';
import type { SecretKeyRing } from './secrets.ts';

/** Settings of a `pg` Pool; every field has a default (see {@link loadConfig}). */
export interface PostgresConfig {
  kind: 'postgres';
  /** A `postgres://` URL. Unset: node-postgres reads PGHOST/PGPORT/PGDATABASE/PGUSER/PGPASSWORD. */
  connectionString?: string | undefined;
  /** Most connections the pool opens (DB_POOL_MAX; default 10, 4 in test mode). */
  poolMax: number;
  /** A connection idle this long is closed (DB_IDLE_TIMEOUT_MS; default 10,000). */
  idleTimeoutMs: number;
  /** Waiting for a connection, new or pooled, fails after this (DB_CONNECT_TIMEOUT_MS; default 5,000). */
  connectTimeoutMs: number;
  /** Server-side statement_timeout of every connection; 0 = none (DB_STATEMENT_TIMEOUT_MS; default 30,000). */
  statementTimeoutMs: number;
  /** Server-side idle_in_transaction_session_timeout: a transaction left idle this long is ended
   *  by the server, releasing its locks; 0 = none (DB_IDLE_IN_TRANSACTION_TIMEOUT_MS; default 60,000). */
  idleInTransactionTimeoutMs: number;
  /** application_name shown in pg_stat_activity (default `database`). */
  applicationName: string;
  /** Send parameterized statements as named prepared statements, parsed once per connection
   *  (DB_PREPARED_STATEMENTS; default true). Turn off behind a pooler in transaction mode that
   *  does not keep them per client (PgBouncer before 1.21). */
  preparedStatements: boolean;
  /** The service role of this connection (DB_APP_ROLE): every statement runs as it (a startup
   *  setting, so `RESET ROLE` returns to it) and withTenant uses it. Unset: the login's own role
   *  outside withTenant, and withTenant uses `app_user` (development and tests). */
  appRole?: AppRole | undefined;
  /** The keys secrets at rest are sealed and opened with (DB_SECRET_KEYS, DB_SECRET_KEY_ID; README,
   *  "Secrets"). Unset: storing a secret is a ConfigError. */
  secretKeys?: SecretKeyRing | undefined;
}

/** Embedded PostgreSQL (PGlite with pgvector) in this process. */
export interface PgliteConfig {
  kind: 'pglite';
  /**
   * A directory (created when missing; one process at a time may open it) or `memory://`
   * (DB_STORAGE; default `.data/pglite` in the working directory). loadConfig makes it absolute.
   */
  storage: string;
  /** The role withTenant uses by default (DB_APP_ROLE; default `app_user`). PGlite has no logins:
   *  it only switches to this role inside withTenant. */
  appRole?: AppRole | undefined;
  /** The keys secrets at rest are sealed and opened with (DB_SECRET_KEYS, DB_SECRET_KEY_ID). Unset,
   *  a directory store uses the key file `<storage>.secret-key`, created when a secret is first
   *  stored (README, "Secrets"); `memory://` has none. */
  secretKeys?: SecretKeyRing | undefined;
}

export type DbConfig = PostgresConfig | PgliteConfig;

type Env = Record<string, string | undefined>;

/** The application roles the migrations create: one per service of seed 000's ownership matrix,
 *  and app_user, a member of all three, the default for development and tests. */
export const APP_ROLES = ['app_server', 'app_gateway', 'app_cms', 'app_user'] as const;
export type AppRole = (typeof APP_ROLES)[number];

/** `value` as an AppRole; anything else is a ConfigError naming `source`. */
export function appRole(value: unknown, source = 'DB_APP_ROLE'): AppRole {
  if (typeof value !== 'string' || !(APP_ROLES as readonly string[]).includes(value)) {
    throw new ConfigError(`${source} must be one of ${APP_ROLES.join(', ')}, got ${JSON.stringify(value)}`);
  }
  return value as AppRole;
}

const PG_ENV = ['PGHOST', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGPASSWORD'] as const;

/** True when the process runs under a test runner (smaller pool). */
export function isTestMode(env: Env = process.env): boolean {
  return env.NODE_ENV === 'test' || env.VITEST !== undefined;
}

/**
 * Reads the database configuration from the environment: a `pg` Pool when DATABASE_URL or any
 * PG* variable is set, else embedded PGlite at DB_STORAGE (default `.data/pglite`), made absolute.
 *
 * @example
 * loadConfig({ DATABASE_URL: 'postgres://app@db/chat', DB_POOL_MAX: '20' })
 * // { kind: 'postgres', connectionString: 'postgres://app@db/chat', poolMax: 20, ... }
 */
export function loadConfig(env: Env = process.env): DbConfig {
  const url = nonEmpty(env.DATABASE_URL);
  if (url !== undefined || PG_ENV.some((name) => nonEmpty(env[name]) !== undefined)) {
    if (url !== undefined && !/^postgres(ql)?:\/\//.test(url)) {
      throw new ConfigError('DATABASE_URL must start with postgres:// or postgresql://');
    }
    return postgresConfig({ connectionString: url }, env);
  }
  const role = nonEmpty(env.DB_APP_ROLE);
  const secretKeys = secretKeysFromEnv(env);
  return {
    kind: 'pglite',
    storage: resolveStorage(nonEmpty(env.DB_STORAGE) ?? '.data/pglite'),
    ...(role === undefined ? {} : { appRole: appRole(role) }),
    ...(secretKeys === undefined ? {} : { secretKeys }),
  };
}

/**
 * An embedded store's location as it is opened and shown: a directory as an absolute path (a
 * relative one is taken from the working directory; `file://` is stripped as PGlite does), any
 * other `scheme://` (`memory://`) unchanged.
 */
export function resolveStorage(storage: string): string {
  const path = storage.startsWith('file://') ? storage.slice('file://'.length) : storage;
  if (path.includes('://')) return path;
  if (path === '') throw new ConfigError(`DB_STORAGE ${JSON.stringify(storage)} names no directory`);
  return resolve(path);
}

/** A complete PostgresConfig: what is given, else the environment, else the defaults. */
export function postgresConfig(given: Partial<Omit<PostgresConfig, 'kind'>>, env: Env = process.env): PostgresConfig {
  const test = isTestMode(env);
  return {
    kind: 'postgres',
    connectionString: given.connectionString,
    poolMax: given.poolMax ?? intEnv(env, 'DB_POOL_MAX', test ? 4 : 10, 1),
    idleTimeoutMs: given.idleTimeoutMs ?? intEnv(env, 'DB_IDLE_TIMEOUT_MS', 10_000, 0),
    connectTimeoutMs: given.connectTimeoutMs ?? intEnv(env, 'DB_CONNECT_TIMEOUT_MS', 5_000, 0),
    statementTimeoutMs: given.statementTimeoutMs ?? intEnv(env, 'DB_STATEMENT_TIMEOUT_MS', 30_000, 0),
    idleInTransactionTimeoutMs:
      given.idleInTransactionTimeoutMs ?? intEnv(env, 'DB_IDLE_IN_TRANSACTION_TIMEOUT_MS', 60_000, 0),
    applicationName: given.applicationName ?? 'database',
    preparedStatements: given.preparedStatements ?? flagEnv(env, 'DB_PREPARED_STATEMENTS', true),
    appRole: given.appRole ?? (nonEmpty(env.DB_APP_ROLE) === undefined ? undefined : appRole(nonEmpty(env.DB_APP_ROLE))),
    secretKeys: given.secretKeys ?? secretKeysFromEnv(env),
  };
}

/** A non-negative integer from the environment, or the default; anything else is a ConfigError. */
export function intEnv(env: Env, name: string, fallback: number, min: number): number {
  const raw = nonEmpty(env[name]);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || !Number.isSafeInteger(Number(raw))) {
    throw new ConfigError(`${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  }
  return Number(raw);
}

/** `true`/`1`/`yes` or `false`/`0`/`no` (any case) from the environment, or the default when unset; anything else is a ConfigError. */
export function flagEnv(env: Env, name: string, fallback: boolean): boolean {
  const raw = nonEmpty(env[name]);
  if (raw === undefined) return fallback;
  if (/^(true|1|yes)$/i.test(raw)) return true;
  if (/^(false|0|no)$/i.test(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got ${JSON.stringify(raw)}`);
}

/** True for `true`/`1`/`yes` (any case). */
export function boolEnv(env: Env, name: string): boolean {
  return /^(true|1|yes)$/i.test(env[name]?.trim() ?? '');
}

function nonEmpty(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed === undefined || trimmed === '' ? undefined : trimmed;
}
