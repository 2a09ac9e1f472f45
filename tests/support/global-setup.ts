/**
 * Picks the tests' database once per run, as the README's "Tests" section says:
 *   TEST_DATABASE_URL set   → that server: a template database migrated once, cloned per test file;
 *   a Docker engine answers → a container of TEST_PG_IMAGE (default database-test-pgvector:15, built
 *                             locally by scripts/build-test-image.sh) started with Testcontainers,
 *                             used the same way;
 *   otherwise               → embedded PGlite, a fresh in-memory database per test file.
 * TEST_BACKEND=pglite forces PGlite (CI's embedded run), whatever else is configured;
 * TEST_BACKEND=testcontainers forces the container: no engine or no image is an error, not PGlite.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { sql } from 'kysely';
import type { TestProject } from 'vitest/node';
import { postgresConfig } from '../../src/db/config.ts';
import { createDb } from '../../src/db/create-db.ts';
import { migrate, readMigrationFiles } from '../../src/db/migrator.ts';
import { withDatabase, type TestBackend } from './backend.ts';
import { citusWorkers, createClusterDatabase, sealClusterTemplate } from './citus.ts';

const defaultImage = 'database-test-pgvector:15';
const backends = ['', 'pglite', 'testcontainers'];

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const forced = process.env.TEST_BACKEND ?? '';
  if (!backends.includes(forced)) throw new Error(`TEST_BACKEND=${forced}: the values are pglite and testcontainers`);
  const url = forced === '' ? process.env.TEST_DATABASE_URL : undefined;
  if (url !== undefined && url !== '') {
    const workers = await citusWorkers(url);
    const template = await prepareTemplate(url, workers);
    project.provide('testBackend', { kind: 'postgres', adminUrl: url, template, source: 'TEST_DATABASE_URL', workers });
    const cluster = workers.length > 0 ? `, a Citus coordinator with ${workers.length} workers` : '';
    report(`the server of TEST_DATABASE_URL (${serverName(url)}${cluster})`);
    return async () => {};
  }
  if (forced !== 'pglite') {
    const image = process.env.TEST_PG_IMAGE || defaultImage;
    const unusable = await dockerUnusable(image, process.env.TEST_PG_IMAGE === undefined || process.env.TEST_PG_IMAGE === '');
    if (unusable === undefined) {
      const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
      const container = await new PostgreSqlContainer(image).start();
      try {
        const adminUrl = container.getConnectionUri();
        const template = await prepareTemplate(adminUrl, []);
        project.provide('testBackend', { kind: 'postgres', adminUrl, template, source: 'testcontainers', workers: [] });
        report(`a Testcontainers server of ${image} (${serverName(adminUrl)})`);
      } catch (error) {
        await container.stop();
        throw error;
      }
      return async () => {
        await container.stop();
      };
    }
    if (forced === 'testcontainers') throw new Error(`TEST_BACKEND=testcontainers: ${unusable}`);
    report(`PGlite: ${unusable}`);
  } else {
    report('PGlite (TEST_BACKEND=pglite)');
  }
  const backend: TestBackend = { kind: 'pglite' };
  project.provide('testBackend', backend);
  return async () => {};
}

/** One line saying where this run's tests go. */
function report(where: string): void {
  console.log(`tests run on ${where}`);
}

/** `host:port/database as user` of a connection URL, never its password. */
function serverName(url: string): string {
  const u = new URL(url);
  const host = u.hostname || u.searchParams.get('host') || 'localhost';
  return `${host}:${u.port || '5432'}${u.pathname} as ${decodeURIComponent(u.username) || u.searchParams.get('user') || 'the OS user'}`;
}

/**
 * Why a container of `image` cannot be started, or undefined when it can: the Docker engine
 * Testcontainers finds must answer (a real request, not just a socket file that may be stale),
 * and a local-only default image must have been built (any other name Testcontainers may pull).
 */
async function dockerUnusable(image: string, mustExist: boolean): Promise<string | undefined> {
  const probeMs = 5_000;
  const { getContainerRuntimeClient, ImageName } = await import('testcontainers');
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${probeMs / 1000} s`)), probeMs);
    });
    const client = await Promise.race([getContainerRuntimeClient(), timeout]);
    if (mustExist && !(await Promise.race([client.image.exists(ImageName.fromString(image)), timeout]))) {
      return `the Docker engine has no image ${image}: build it with \`bash scripts/build-test-image.sh\``;
    }
    return undefined;
  } catch (error) {
    const at = process.env.DOCKER_HOST ? ` at DOCKER_HOST=${process.env.DOCKER_HOST}` : '';
    return `no Docker engine answered${at} (${(error as Error).message}; DEBUG='testcontainers*' shows each place tried)`;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A database migrated to the latest schema, named after the migrations' checksums so that a
 * later run reuses it. Built under a temporary name and renamed, so a half-built template is
 * never cloned. On a Citus coordinator (`workers` not empty) the template is a cluster: made on every
 * node, migrated through the coordinator (0020 distributes the tables), sealed (tests/support/citus.ts).
 */
async function prepareTemplate(adminUrl: string, workers: string[]): Promise<string> {
  const digest = createHash('sha256');
  for (const file of readMigrationFiles()) digest.update(readFileSync(file.upPath)).update(readFileSync(file.downPath));
  const name = `database_test_template_${digest.digest('hex').slice(0, 16)}${workers.length > 0 ? '_citus' : ''}`;
  const admin = createDb(postgresConfig({ connectionString: adminUrl, poolMax: 1 })).withoutPlugins();
  try {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_database where datname = ${name}`.execute(admin);
    if (rows[0]?.n === 1) return name;
    const building = `${name}_building_${process.pid}`;
    if (workers.length > 0) await createClusterDatabase(adminUrl, workers, building);
    else await sql`create database ${sql.id(building)}`.execute(admin);
    const db = createDb(postgresConfig({ connectionString: withDatabase(adminUrl, building), poolMax: 1 }));
    try {
      await migrate(db);
    } finally {
      await db.destroy();
    }
    if (workers.length > 0) await sealClusterTemplate(adminUrl, workers, building, name);
    else await sql`alter database ${sql.id(building)} rename to ${sql.id(name)}`.execute(admin);
    return name;
  } finally {
    await admin.destroy();
  }
}
