/**
 * Test databases on a Citus cluster. Citus keeps its metadata (nodes, shards) per database and
 * connects to a database of the same name on every worker, so each test database is made on every
 * node: the template is created and migrated as a cluster, then cloned node by node. The
 * coordinator connects to the template's workers as the tests' own role, and Citus's maintenance
 * daemon holds a connection to every database that has the extension, which would stop
 * `create database … template` ("source database is being accessed by other users"): the template
 * refuses connections once built (allow_connections false) and the daemon's session is ended.
 */
import { sql, type Kysely } from 'kysely';
import { postgresConfig } from '../../src/db/config.ts';
import { createDb } from '../../src/db/create-db.ts';
import { withDatabase } from './backend.ts';

/** Runs fn on a one-connection admin handle of url, then closes it. */
export async function onNode<T>(url: string, fn: (db: Kysely<any>) => Promise<T>): Promise<T> {
  const db = createDb(postgresConfig({ connectionString: url, poolMax: 1 })).withoutPlugins();
  try {
    return await fn(db);
  } finally {
    await db.destroy();
  }
}

/** The admin URLs of the workers when url is a Citus coordinator (its database has citus), else []. */
export async function citusWorkers(url: string): Promise<string[]> {
  return onNode(url, async (db) => {
    const { rows } = await sql<{ present: boolean }>`select exists (select from pg_extension where extname = 'citus') as present`.execute(db);
    if (!rows[0]!.present) return [];
    const nodes = await sql<{ host: string; port: number }>`
      select nodename as host, nodeport as port from pg_dist_node
      where noderole = 'primary' and groupid <> 0 and isactive order by nodeport`.execute(db);
    return nodes.rows.map(({ host, port }) => {
      const worker = new URL(url);
      worker.hostname = host;
      worker.port = String(port);
      return worker.toString();
    });
  });
}

/** Creates database `name` on the coordinator and every worker, and makes it a Citus cluster of its own (the coordinator in its metadata). */
export async function createClusterDatabase(adminUrl: string, workers: string[], name: string): Promise<void> {
  for (const url of [...workers, adminUrl]) {
    await onNode(url, (db) => sql`create database ${sql.id(name)}`.execute(db));
    await onNode(withDatabase(url, name), (db) => sql`create extension citus`.execute(db));
  }
  await onNode(withDatabase(adminUrl, name), async (db) => {
    // The coordinator in the metadata too, as Citus recommends: locks taken from the workers reach
    // it, and the reference tables get a copy on it (read locally).
    const { hostname, port } = new URL(adminUrl);
    await sql`select citus_set_coordinator_host(${hostname}, ${Number(port || 5432)})`.execute(db);
    for (const url of workers) {
      const { hostname, port } = new URL(url);
      await sql`select citus_add_node(${hostname}, ${Number(port)})`.execute(db);
    }
  });
}

/** Seals a built cluster database as a template (no connections, the daemon's ended), renamed to `to`. */
export async function sealClusterTemplate(adminUrl: string, workers: string[], name: string, to: string): Promise<void> {
  for (const url of [...workers, adminUrl]) {
    await onNode(url, async (db) => {
      await sql`alter database ${sql.id(name)} with allow_connections false`.execute(db);
      await sql`select pg_terminate_backend(pid) from pg_stat_activity where datname = ${name} and pid <> pg_backend_pid()`.execute(db);
      await waitForNoConnections(db, name);
      await sql`alter database ${sql.id(name)} rename to ${sql.id(to)}`.execute(db);
    });
  }
}

/** Clones template into `name` on every node (workers first), or drops `name` everywhere. */
export async function cloneClusterDatabase(adminUrl: string, workers: string[], name: string, template: string): Promise<void> {
  for (const url of [...workers, adminUrl]) {
    await onNode(url, (db) => sql`create database ${sql.id(name)} template ${sql.id(template)}`.execute(db));
  }
}

export async function dropClusterDatabase(adminUrl: string, workers: string[], name: string): Promise<void> {
  for (const url of [adminUrl, ...workers]) {
    await onNode(url, (db) => sql`drop database if exists ${sql.id(name)} with (force)`.execute(db));
  }
}

async function waitForNoConnections(db: Kysely<any>, name: string): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity where datname = ${name}`.execute(db);
    if (rows[0]!.n === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`database ${name}: connections remain after pg_terminate_backend`);
}
