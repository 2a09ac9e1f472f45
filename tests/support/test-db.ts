import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { inject } from 'vitest';
import { postgresConfig, type DbConfig } from '../../src/db/config.ts';
import { createDb } from '../../src/db/create-db.ts';
import { migrate } from '../../src/db/migrator.ts';
import type { DB } from '../../src/db/schema.generated.ts';
import type { SecretKeyRing } from '../../src/db/secrets.ts';
import { withDatabase } from './backend.ts';
import { cloneClusterDatabase, dropClusterDatabase } from './citus.ts';

/** A database of a test file's own, on the backend global-setup.ts chose. */
export interface TestDb {
  db: Kysely<DB>;
  kind: 'postgres' | 'pglite';
  /** The config `db` was made from: open another Kysely on the same database with it (server only). */
  config: DbConfig;
  /** Its connection URL (server only). */
  url: string | undefined;
  /** A second, independent handle on the same database (server only; PGlite has one connection). */
  open(poolMax?: number): Kysely<DB>;
  close(): Promise<void>;
}

/** The backend of this run. */
export function testBackend() {
  return inject('testBackend');
}

/** True when the tests run on a PostgreSQL server (TEST_DATABASE_URL or Testcontainers). */
export const onServer = testBackend().kind === 'postgres';

/** True when the server is a Citus coordinator: the tables are distributed (migration 0020). */
export const onCitus = (() => {
  const backend = testBackend();
  return backend.kind === 'postgres' && backend.workers.length > 0;
})();

/**
 * A fresh database: migrated to the latest schema (default), or empty with `{ migrated: false }`.
 * On a server it is cloned from the migrated template and dropped by close(). `secretKeys`: the
 * ring its secrets are sealed with (default none: storing a secret is a ConfigError).
 */
export async function openTestDb(options: { migrated?: boolean; poolMax?: number; secretKeys?: SecretKeyRing } = {}): Promise<TestDb> {
  const migrated = options.migrated ?? true;
  const backend = testBackend();
  const secretKeys = options.secretKeys === undefined ? {} : { secretKeys: options.secretKeys };
  if (backend.kind === 'pglite') {
    const config: DbConfig = { kind: 'pglite', storage: 'memory://', ...secretKeys };
    const db = createDb(config);
    if (migrated) await migrate(db);
    return {
      db,
      kind: 'pglite',
      config,
      url: undefined,
      open: () => {
        throw new Error('PGlite is one connection in one process: a second handle is not possible');
      },
      close: () => db.destroy(),
    };
  }
  const name = `database_test_${randomBytes(6).toString('hex')}`;
  const admin = createDb(postgresConfig({ connectionString: backend.adminUrl, poolMax: 1 })).withoutPlugins();
  // On Citus a migrated database is a clone of the template cluster on every node; an empty one
  // (migration tests) is a plain database on the coordinator, without the extension.
  const workers = migrated ? backend.workers : [];
  if (workers.length > 0) await cloneClusterDatabase(backend.adminUrl, workers, name, backend.template);
  else await sql`create database ${sql.id(name)} template ${sql.id(migrated ? backend.template : 'template0')}`.execute(admin);
  const url = withDatabase(backend.adminUrl, name);
  const config = postgresConfig({ connectionString: url, poolMax: options.poolMax ?? 4, ...secretKeys });
  const handles: Kysely<DB>[] = [];
  const open = (poolMax = 4) => {
    const handle = createDb({ ...config, poolMax }, { onPoolError: warnUnlessDropped });
    handles.push(handle);
    return handle;
  };
  const db = open(options.poolMax ?? 4);
  return {
    db,
    kind: 'postgres',
    config,
    url,
    open,
    close: async () => {
      await Promise.all(handles.map((h) => h.destroy()));
      if (workers.length > 0) await dropClusterDatabase(backend.adminUrl, workers, name);
      else await sql`drop database if exists ${sql.id(name)} with (force)`.execute(admin);
      await admin.destroy();
    },
  };
}

/**
 * close() drops the database `with (force)`, which terminates connections that pool.end() is
 * still closing (SQLSTATE 57P01): expected, not worth a warning. Anything else is reported.
 */
function warnUnlessDropped(error: Error): void {
  if ((error as { code?: string }).code !== '57P01') console.warn(`test pool: ${error.message}`);
}
