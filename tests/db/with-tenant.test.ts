import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb } from '../../src/db/create-db.ts';
import { TenantContextError, ValidationError } from '../../src/db/errors.ts';
import { migrate } from '../../src/db/migrator.ts';
import type { DB } from '../../src/db/schema.generated.ts';
import type { TenantTx } from '../../src/db/tenant-tx.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { insertCatalog, insertTenant } from '../support/fixtures.ts';
import { onCitus, onServer, openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let a: { tenantId: string; userId: string };
let b: { tenantId: string; userId: string };
let bConversation: string;

beforeAll(async () => {
  t = await openTestDb();
  const { roleId } = await insertCatalog(t.db);
  a = await insertTenant(t.db, roleId, 'tenant-a');
  b = await insertTenant(t.db, roleId, 'tenant-b');
  const convo = await t.db
    .insertInto('conversations')
    .values({ tenantId: b.tenantId, userId: b.userId, title: 'B secret' })
    .returning('id')
    .executeTakeFirstOrThrow();
  bConversation = convo.id;
});
afterAll(() => t?.close());

describe('withTenant', () => {
  it('shows a tenant only its own rows', async () => {
    await withTenant(t.db, b.tenantId, (tx) =>
      tx.insertInto('conversations').values({ tenantId: b.tenantId, userId: b.userId, title: 'B own' }).execute(),
    );
    const seenByA = await withTenant(t.db, a.tenantId, (tx) => tx.selectFrom('conversations').select(['id', 'tenantId']).execute());
    expect(seenByA).toEqual([]);
    const usersSeenByA = await withTenant(t.db, a.tenantId, (tx) => tx.selectFrom('users').select(['id', 'tenantId']).execute());
    expect(usersSeenByA).toEqual([{ id: a.userId, tenantId: a.tenantId }]);
    const seenByB = await withTenant(t.db, b.tenantId, (tx) => tx.selectFrom('conversations').select('title').orderBy('title').execute());
    expect(seenByB.map((r) => r.title)).toEqual(['B own', 'B secret']);
    const tenantsSeenByA = await withTenant(t.db, a.tenantId, (tx) => tx.selectFrom('tenants').select('id').execute());
    expect(tenantsSeenByA).toEqual([{ id: a.tenantId }]);
  });

  it("refuses to insert a row into another tenant", async () => {
    await expect(
      withTenant(t.db, a.tenantId, (tx) =>
        tx.insertInto('conversations').values({ tenantId: b.tenantId, userId: b.userId, title: 'planted by A' }).execute(),
      ),
    ).rejects.toMatchObject({ code: '42501' }); // new row violates row-level security policy
    const planted = await t.db.selectFrom('conversations').select('id').where('title', '=', 'planted by A').execute();
    expect(planted).toEqual([]);
  });

  it("cannot update or delete another tenant's rows", async () => {
    const updated = await withTenant(t.db, a.tenantId, (tx) =>
      tx.updateTable('conversations').set({ title: 'hijacked' }).where('id', '=', bConversation).executeTakeFirst(),
    );
    expect(updated.numUpdatedRows).toBe(0n);
    const deleted = await withTenant(t.db, a.tenantId, (tx) =>
      tx.deleteFrom('conversations').where('id', '=', bConversation).executeTakeFirst(),
    );
    expect(deleted.numDeletedRows).toBe(0n);
    const row = await t.db.selectFrom('conversations').select('title').where('id', '=', bConversation).executeTakeFirstOrThrow();
    expect(row.title).toBe('B secret');
  });

  it('cannot move its own row into another tenant', async () => {
    const mine = await withTenant(t.db, a.tenantId, (tx) =>
      tx.insertInto('conversations').values({ tenantId: a.tenantId, userId: a.userId, title: 'A own' }).returning('id').executeTakeFirstOrThrow(),
    );
    await expect(
      withTenant(t.db, a.tenantId, (tx) =>
        tx.updateTable('conversations').set({ tenantId: b.tenantId }).where('id', '=', mine.id).execute(),
      ),
    ).rejects.toMatchObject({ code: expect.stringMatching(onCitus ? /^0A000$/ : /^(42501|23503)$/) });
    // (On Citus the row's shard is fixed by its tenant_id: "modifying the partition value of rows is not allowed".)
  });

  it('as app_user without a tenant context, sees no rows', async () => {
    const rows = await t.db.transaction().execute(async (tx) => {
      await sql`select set_config('role', 'app_user', true)`.execute(tx); // not SET LOCAL ROLE: Citus would send it to the workers, where it would also bind the SECURITY DEFINER functions' connections
      const convos = await tx.selectFrom('conversations').select('id').execute();
      const users = await tx.selectFrom('users').select('id').execute();
      const tenants = await tx.selectFrom('tenants').select('id').execute();
      return [...convos, ...users, ...tenants];
    });
    expect(rows).toEqual([]);
  });

  it('rejects a tenant id that is not a UUID before any SQL', async () => {
    let ran = false;
    const attempt = withTenant(t.db, "x'; drop table users; --", async () => {
      ran = true;
    });
    await expect(attempt).rejects.toBeInstanceOf(ValidationError);
    await expect(attempt).rejects.toThrow(/tenantId/);
    expect(ran).toBe(false);
  });

  it('refuses to nest inside a transaction', async () => {
    await expect(
      t.db.transaction().execute((tx) => withTenant(tx, a.tenantId, async () => 1)),
    ).rejects.toBeInstanceOf(TenantContextError);
  });

  it('leaves no tenant setting or role on the connection afterwards (pool of one)', async () => {
    const db = onServer ? t.open(1) : t.db;
    await withTenant(db, a.tenantId, (tx) => tx.selectFrom('users').select('id').execute());
    const { rows } = await sql<{ tenant: string | null; role: string }>`
      select nullif(current_setting('app.tenant_id', true), '') as tenant, current_user as role`.execute(db);
    expect(rows[0]).toEqual({ tenant: null, role: expect.not.stringMatching(/^app_user$/) });
  });

  it('rolls back everything when fn throws', async () => {
    const title = `rolled back ${randomUUID()}`;
    await expect(
      withTenant(t.db, a.tenantId, async (tx) => {
        await tx.insertInto('conversations').values({ tenantId: a.tenantId, userId: a.userId, title }).execute();
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await t.db.selectFrom('conversations').select('id').where('title', '=', title).execute()).toEqual([]);
  });

  it("a child row of tenant A cannot reference tenant B's parent, even as the owner", async () => {
    await expect(
      t.db.insertInto('messages').values({ tenantId: a.tenantId, conversationId: bConversation, role: 'user', content: JSON.stringify({ text: 'hi' }) }).execute(),
    ).rejects.toMatchObject({ code: '23503' }); // foreign_key_violation: (A, B's id) exists nowhere
  });
});

describe("a connection's first tenant transaction that does not commit", () => {
  // Its key registration is undone with it: the next transaction on that connection registers again.
  async function fresh(): Promise<{ db: Kysely<DB>; close: () => Promise<void> }> {
    if (onServer) {
      const db = t.open(1);
      return { db, close: () => db.destroy() };
    }
    const db = createDb({ kind: 'pglite', storage: 'memory://' });
    await migrate(db);
    await sql`insert into tenants (id, name, slug) values (${a.tenantId}, 'A', 'tenant-a')`.execute(db);
    return { db, close: () => db.destroy() };
  }

  it.each([
    ['fn throws (ROLLBACK)', async (tx: TenantTx) => {
      await sql`select 1`.execute(tx);
      throw new Error('the service failed');
    }],
    ['fn catches a failed statement (COMMIT answered with ROLLBACK)', async (tx: TenantTx) => {
      await sql`select 1/0`.execute(tx).catch(() => {});
    }],
  ])('%s: the next withTenant on the same connection works', async (_, first) => {
    const { db, close } = await fresh();
    try {
      await withTenant(db, a.tenantId, first).catch(() => {});
      const seen = await withTenant(db, a.tenantId, (tx) => tx.selectFrom('tenants').select('id').execute());
      expect(seen).toEqual([{ id: a.tenantId }]);
    } finally {
      await close();
    }
  });
});
