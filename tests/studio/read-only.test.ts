/**
 * The studio's two ways into the database are read-only: as the owner (a superuser in the tests)
 * and as each service role through withTenant. A write in them — even one the role's grants
 * allow, even raw SQL — fails with SQLSTATE 25006 and leaves nothing behind.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP_ROLES } from '../../src/db/config.ts';
import { sqlState } from '../../src/db/errors.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { createTenant } from '../../src/queries/tenants.ts';
import { readOnly, readOnlyAsTenant } from '../../src/studio/read-only.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let tenantId: string;
beforeAll(async () => {
  t = await openTestDb();
  tenantId = (await createTenant(t.db, { name: 'Read only', slug: 'read-only' })).id;
});
afterAll(() => t?.close());

const failure = async (run: () => Promise<unknown>) => {
  try {
    await run();
  } catch (error) {
    return sqlState(error);
  }
  return 'no error';
};

describe('the studio reads in read-only transactions', () => {
  it('as the owner: writes fail with 25006, the transaction says read-only', async () => {
    expect(await readOnly(t.db, async (tx) => (await sql<{ ro: string }>`select current_setting('transaction_read_only') as ro`.execute(tx)).rows[0]!.ro)).toBe('on');
    expect(await failure(() => readOnly(t.db, (tx) => sql`insert into tenants (name, slug) values ('x', 'x')`.execute(tx)))).toBe('25006');
    expect(await failure(() => readOnly(t.db, (tx) => sql`update tenants set name = 'changed'`.execute(tx)))).toBe('25006');
    expect(await failure(() => readOnly(t.db, (tx) => sql`create table studio_was_here (id int)`.execute(tx)))).toBe('25006');
    // Once the transaction has read, SQL inside cannot turn it back (PostgreSQL: "transaction
    // read-write mode must be set before any query").
    expect(
      await failure(() =>
        readOnly(t.db, async (tx) => {
          await sql`select 1`.execute(tx);
          await sql`set transaction read write`.execute(tx);
        }),
      ),
    ).toBe('25001');
    const { rows } = await sql<{ name: string }>`select name from tenants where id = ${tenantId}`.execute(t.db);
    expect(rows[0]!.name).toBe('Read only');
  });

  it.each(APP_ROLES)('as %s through withTenant: the role and tenant are set, writes fail with 25006', async (role) => {
    const seen = await readOnlyAsTenant(t.db, tenantId, role, async (tx) =>
      (await sql<{ ro: string; who: string; tenant: string }>`
        select current_setting('transaction_read_only') as ro, current_user::text as who, app.current_tenant_id()::text as tenant`.execute(tx)).rows[0]!);
    expect(seen).toEqual({ ro: 'on', who: role, tenant: tenantId });
    // A write the role's grants allow (app_server may rename its tenant; app_cms writes conversations).
    expect(await failure(() => readOnlyAsTenant(t.db, tenantId, role, (tx) => sql`update tenants set name = 'renamed'`.execute(tx)))).toBe('25006');
    expect(
      await failure(() =>
        readOnlyAsTenant(t.db, tenantId, role, (tx) => sql`set transaction read write`.execute(tx)),
      ),
    ).toBe('25001');
    // The connection is fine afterwards: a normal tenant transaction still works and may write.
    const renamed = await withTenant(t.db, tenantId, (tx) => sql`update tenants set name = name`.execute(tx), { role: 'app_server' });
    expect(Number(renamed.numAffectedRows)).toBe(1);
  });
});
