import { resolve } from 'node:path';
import pg from 'pg';
import type { DbConfig } from './config.ts';

/** Where a config points, resolved the way the driver will resolve it; never holds a password. */
export type Target =
  | { kind: 'postgres'; host: string; port: number; database: string; user: string }
  | { kind: 'pglite'; storage: string };

/**
 * Resolves a config to the server, database and role it connects to: DATABASE_URL's parts, else
 * the PG* variables, else libpq's defaults (localhost, 5432, $USER, database = user), exactly as
 * node-postgres does (it reads process.env). An embedded store's directory is made absolute.
 */
export function resolveTarget(config: DbConfig): Target {
  if (config.kind === 'pglite') {
    return { kind: 'pglite', storage: config.storage.includes('://') ? config.storage : resolve(config.storage) };
  }
  // A Client only parses its parameters when constructed; it connects on connect(), never here.
  const client = new pg.Client(config.connectionString === undefined ? {} : { connectionString: config.connectionString });
  return {
    kind: 'postgres',
    host: client.host || 'localhost',
    port: client.port || 5432,
    database: client.database ?? client.user ?? '(no database: set PGDATABASE)',
    user: client.user ?? '(no user: set PGUSER)',
  };
}

/**
 * One line naming what a config points at, as every command prints it first: `PostgreSQL
 * 127.0.0.1:5432/chat as chat_owner` or `embedded /abs/path/.data/pglite`. Never a password.
 */
export function describeTarget(config: DbConfig): string {
  return formatTarget(resolveTarget(config));
}

/** The one-line form of a resolved {@link Target}. */
export function formatTarget(target: Target): string {
  if (target.kind === 'pglite') return `embedded ${target.storage}`;
  return `PostgreSQL ${target.host}:${target.port}/${target.database} as ${target.user}`;
}
