import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresConfig } from '../../src/db/config.ts';
import { createDb } from '../../src/db/create-db.ts';
import type { DB } from '../../src/db/schema.generated.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { insertCatalog, insertTenant } from '../support/fixtures.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

// Faults need a server: a second session to kill backends with, and real sockets to break.
describe.runIf(onServer)('faults on a real server', () => {
  let t: TestDb;
  let admin: Kysely<DB>;
  let tenantId: string;
  const poolErrors: string[] = [];

  beforeAll(async () => {
    t = await openTestDb();
    admin = t.open(1);
    const { roleId } = await insertCatalog(t.db);
    ({ tenantId } = await insertTenant(t.db, roleId));
  });
  afterAll(() => t?.close());

  /** A pool of its own on the test database, collecting the errors its handler sees. */
  function pool(settings: Partial<ReturnType<typeof postgresConfig>> = {}): Kysely<DB> {
    return createDb(postgresConfig({ ...t.config, poolMax: 2, ...settings, connectionString: t.url! }), {
      onPoolError: (error) => poolErrors.push(error.message),
    });
  }

  async function backendPids(db: Kysely<DB>, n: number): Promise<number[]> {
    // Hold n connections at once so that each is a different backend.
    const pids: number[] = [];
    let release!: () => void;
    const done = new Promise<void>((resolve) => (release = resolve));
    const holders = Array.from({ length: n }, () =>
      db.connection().execute(async (conn) => {
        pids.push((await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(conn)).rows[0]!.pid);
        if (pids.length === n) release();
        await done;
      }),
    );
    await Promise.all(holders);
    return pids;
  }

  async function kill(pids: number[]): Promise<void> {
    await sql`select pg_terminate_backend(pid) from unnest(${pids}::int[]) as pid`.execute(admin);
    // Let the sockets deliver the FATAL message and close.
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  it('an idle pooled connection killed on the server: no crash, the next call succeeds', async () => {
    const db = pool({ poolMax: 1 });
    try {
      const [pid] = await backendPids(db, 1);
      await kill([pid!]);
      const { rows } = await sql<{ one: number }>`select 1 as one`.execute(db);
      expect(rows).toEqual([{ one: 1 }]);
      expect(poolErrors.some((m) => /terminat/i.test(m))).toBe(true);
    } finally {
      await db.destroy();
    }
  });

  it('a connection killed inside withTenant: the call fails, the broken client is discarded, the next call succeeds', async () => {
    const db = pool({ poolMax: 1 });
    try {
      const failed = withTenant(db, tenantId, async (tx) => {
        const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(tx);
        await kill([rows[0]!.pid]);
        return tx.selectFrom('users').select('id').execute();
      });
      await expect(failed).rejects.toThrow(/connection|terminat/i);
      // A pool of one: only a fresh client can answer this.
      const users = await withTenant(db, tenantId, (tx) => tx.selectFrom('users').select('id').execute());
      expect(users).toHaveLength(1);
    } finally {
      await db.destroy();
    }
  });

  it('every connection of the pool killed at once: the pool recovers by itself', async () => {
    const db = pool({ poolMax: 3 });
    try {
      await kill(await backendPids(db, 3));
      const results = await Promise.all(
        Array.from({ length: 6 }, () => withTenant(db, tenantId, (tx) => tx.selectFrom('tenants').select('id').execute())),
      );
      expect(results.map((r) => r.length)).toEqual([1, 1, 1, 1, 1, 1]);
    } finally {
      await db.destroy();
    }
  });

  it('a query past statement_timeout is cancelled with SQLSTATE 57014', async () => {
    const db = pool({ statementTimeoutMs: 200 });
    try {
      await expect(sql`select pg_sleep(5)`.execute(db)).rejects.toMatchObject({
        code: '57014',
        message: expect.stringContaining('statement timeout'),
      });
      expect((await sql<{ one: number }>`select 1 as one`.execute(db)).rows).toEqual([{ one: 1 }]);
    } finally {
      await db.destroy();
    }
  });

  it('a transaction left idle past idle_in_transaction_session_timeout is ended by the server; the pool recovers', async () => {
    const db = pool({ poolMax: 1, idleInTransactionTimeoutMs: 200 });
    try {
      const abandoned = db.transaction().execute(async (tx) => {
        await sql`select 1`.execute(tx);
        await new Promise((resolve) => setTimeout(resolve, 600)); // the caller stalls
        await sql`select 1`.execute(tx);
      });
      await expect(abandoned).rejects.toThrow(/idle-in-transaction|terminat|connection/i);
      expect((await sql<{ one: number }>`select 1 as one`.execute(db)).rows).toEqual([{ one: 1 }]);
    } finally {
      await db.destroy();
    }
  });

  it('an exhausted pool makes the next caller fail after the connect timeout instead of hanging', async () => {
    const db = pool({ poolMax: 1, connectTimeoutMs: 300 });
    let release!: () => void;
    const held = db.connection().execute(() => new Promise<void>((resolve) => (release = resolve)));
    try {
      await new Promise((resolve) => setTimeout(resolve, 50));
      await expect(sql`select 1`.execute(db)).rejects.toThrow(/timeout/i);
    } finally {
      release();
      await held;
      await db.destroy();
    }
  });
});
