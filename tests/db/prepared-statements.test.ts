import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PostgresConfig } from '../../src/db/config.ts';
import { createDb } from '../../src/db/create-db.ts';
import type { DB } from '../../src/db/schema.generated.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { getUser } from '../../src/queries/users.ts';
import { addChunks, similaritySearch } from '../../src/queries/vectors.ts';
import { insertCatalog, insertTenant } from '../support/fixtures.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

// Prepared statements are a node-postgres (server) feature; PGlite runs every statement unnamed.
describe.skipIf(!onServer)('prepared statements (server)', () => {
  let t: TestDb;
  let tenant: { tenantId: string; userId: string };
  beforeAll(async () => {
    t = await openTestDb();
    const { roleId } = await insertCatalog(t.db);
    tenant = await insertTenant(t.db, roleId);
  });
  afterAll(() => t?.close());

  /** Another handle on the test database with a pool of one connection, so that every call shares it. */
  function oneConnection(settings: Partial<PostgresConfig> = {}): Kysely<DB> {
    if (t.config.kind !== 'postgres') throw new Error('server only');
    return createDb({ ...t.config, poolMax: 1, ...settings });
  }

  /** The session's prepared statements whose text contains `fragment`, read on the connection of `db` (pool of one). */
  async function prepared(db: Kysely<DB>, fragment: string) {
    // Unparameterized, so this statement itself is not prepared.
    const { rows } = await sql<{ statement: string; generic_plans: string; custom_plans: string }>`
      select statement, generic_plans, custom_plans from pg_prepared_statements
      where statement like ${sql.lit(`%${fragment}%`)}`.execute(db.withoutPlugins());
    return rows.map((r) => ({ statement: r.statement, generic: Number(r.generic_plans), custom: Number(r.custom_plans) }));
  }

  it('prepares each statement once per connection and then only executes it', async () => {
    const db = oneConnection();
    try {
      for (let i = 0; i < 7; i += 1) await withTenant(db, tenant.tenantId, (tx) => getUser(tx, { userId: tenant.userId }));
      const statements = await prepared(db, 'from "users"');
      expect(statements).toHaveLength(1);
      expect(statements[0]!.generic + statements[0]!.custom).toBe(7);
    } finally {
      await db.destroy();
    }
  });

  it('keeps working after a migration adds a column to a table it reads', async () => {
    const db = oneConnection();
    try {
      const before = await withTenant(db, tenant.tenantId, (tx) => getUser(tx, { userId: tenant.userId }));
      await sql`alter table users add column nickname text`.execute(t.db);
      const after = await withTenant(db, tenant.tenantId, (tx) => getUser(tx, { userId: tenant.userId }));
      expect(after).toEqual(before);
      await sql`alter table users drop column nickname`.execute(t.db);
      expect(await withTenant(db, tenant.tenantId, (tx) => getUser(tx, { userId: tenant.userId }))).toEqual(before);
      expect(await prepared(db, 'from "users"')).toHaveLength(1);
    } finally {
      await db.destroy();
    }
  });

  it('plans every similaritySearch for its own tenant (no generic plan)', async () => {
    const db = oneConnection();
    try {
      const embedding = Array.from({ length: 1536 }, (_, i) => (i === 3 ? 1 : 0));
      await withTenant(db, tenant.tenantId, (tx) => addChunks(tx, { chunks: [{ content: 'one chunk', embedding }] }));
      for (let i = 0; i < 7; i += 1) {
        expect(await withTenant(db, tenant.tenantId, (tx) => similaritySearch(tx, { embedding, k: 1 }))).toHaveLength(1);
      }
      const statements = await prepared(db, 'with nearest_index as materialized');
      expect(statements).toHaveLength(1);
      expect(statements[0]).toMatchObject({ generic: 0, custom: 7 });
    } finally {
      await db.destroy();
    }
  });

  it('sends statements unnamed with preparedStatements: false (DB_PREPARED_STATEMENTS=false)', async () => {
    const db = oneConnection({ preparedStatements: false });
    try {
      for (let i = 0; i < 3; i += 1) await withTenant(db, tenant.tenantId, (tx) => getUser(tx, { userId: tenant.userId }));
      expect(await prepared(db, 'from "users"')).toEqual([]);
    } finally {
      await db.destroy();
    }
  });
});
