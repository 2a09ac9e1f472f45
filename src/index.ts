/**
 * The database package: the data layer of the multi-tenant chat platform.
 * Services import everything from here; see README.md for the configuration.
 */
export { createDb, backendOf, type CreateDbOptions, type Executor, type Tx } from './db/create-db.ts';
export { getDb, closeDb, syncDatabase } from './db/get-db.ts';
export { withTenant, isUuid } from './db/tenant.ts';
export { checkHealth, type Health } from './db/health.ts';
export { loadConfig, type DbConfig, type PostgresConfig, type PgliteConfig } from './db/config.ts';
export {
  migrate,
  migrateDown,
  migrationStatus,
  readMigrationFiles,
  type MigrationFile,
  type MigrationStatus,
  type MigratorOptions,
} from './db/migrator.ts';
export { toVectorSql, fromVectorSql } from './db/vector.ts';
export {
  ConfigError,
  MigrationError,
  NotFoundError,
  TenantContextError,
  ValidationError,
  sqlState,
} from './db/errors.ts';
export type { DB } from './db/schema.generated.ts';
