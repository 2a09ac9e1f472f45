/**
 * Picks the tests' database once per run, as DESIGN.md says:
 *   TEST_DATABASE_URL set   → that server: a template database migrated once, cloned per test file;
 *   a Docker engine answers → a pgvector container (Testcontainers), used the same way;
 *   otherwise               → embedded PGlite, a fresh in-memory database per test file.
 * TEST_BACKEND=pglite forces PGlite (CI's embedded run), whatever else is configured.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { sql } from 'kysely';
import type { TestProject } from 'vitest/node';
import { postgresConfig } from '../../src/db/config.ts';
import { createDb } from '../../src/db/create-db.ts';
import { migrate, readMigrationFiles } from '../../src/db/migrator.ts';
import { withDatabase, type TestBackend } from './backend.ts';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const forced = process.env.TEST_BACKEND ?? '';
  if (!['', 'pglite'].includes(forced)) throw new Error(`TEST_BACKEND=${forced}: the only value is pglite`);
  const url = forced === 'pglite' ? undefined : process.env.TEST_DATABASE_URL;
  if (url !== undefined && url !== '') {
    const template = await prepareTemplate(url);
    project.provide('testBackend', { kind: 'postgres', adminUrl: url, template, source: 'TEST_DATABASE_URL' });
    return async () => {};
  }
  if (forced !== 'pglite' && dockerReachable()) {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const container = await new PostgreSqlContainer('pgvector/pgvector:pg17').start();
    const adminUrl = container.getConnectionUri();
    const template = await prepareTemplate(adminUrl);
    project.provide('testBackend', { kind: 'postgres', adminUrl, template, source: 'testcontainers' });
    return async () => {
      await container.stop();
    };
  }
  const backend: TestBackend = { kind: 'pglite' };
  project.provide('testBackend', backend);
  return async () => {};
}

function dockerReachable(): boolean {
  return (process.env.DOCKER_HOST ?? '') !== '' || existsSync('/var/run/docker.sock');
}

/**
 * A database migrated to the latest schema, named after the migrations' checksums so that a
 * later run reuses it. Built under a temporary name and renamed, so a half-built template is
 * never cloned.
 */
async function prepareTemplate(adminUrl: string): Promise<string> {
  const digest = createHash('sha256');
  for (const file of readMigrationFiles()) digest.update(readFileSync(file.upPath)).update(readFileSync(file.downPath));
  const name = `database_test_template_${digest.digest('hex').slice(0, 16)}`;
  const admin = createDb(postgresConfig({ connectionString: adminUrl, poolMax: 1 })).withoutPlugins();
  try {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_database where datname = ${name}`.execute(admin);
    if (rows[0]?.n === 1) return name;
    const building = `${name}_building_${process.pid}`;
    await sql`create database ${sql.id(building)}`.execute(admin);
    const db = createDb(postgresConfig({ connectionString: withDatabase(adminUrl, building), poolMax: 1 }));
    try {
      await migrate(db);
    } finally {
      await db.destroy();
    }
    await sql`alter database ${sql.id(building)} rename to ${sql.id(name)}`.execute(admin);
    return name;
  } finally {
    await admin.destroy();
  }
}
