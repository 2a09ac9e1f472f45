import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TenantContextError } from '../../src/db/errors.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { can } from '../../src/queries/authz.ts';
import { insertTenant } from '../support/fixtures.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let admin: { tenantId: string; userId: string };
let member: { tenantId: string; userId: string };
let other: { tenantId: string; userId: string };
beforeAll(async () => {
  t = await openTestDb();
  const [adminRole, userRole] = await t.db.insertInto('roles').values([{ name: 'admin' }, { name: 'user' }]).returning('id').execute();
  const [manage, use] = await t.db
    .insertInto('policies')
    .values([{ name: 'User management', resource: 'users', action: 'manage' }, { name: 'Model usage', resource: 'models', action: 'use' }])
    .returning('id')
    .execute();
  await t.db
    .insertInto('rolePolicies')
    .values([{ roleId: adminRole!.id, policyId: manage!.id }, { roleId: adminRole!.id, policyId: use!.id }, { roleId: userRole!.id, policyId: use!.id }])
    .execute();
  admin = await insertTenant(t.db, adminRole!.id, 'acme-admin');
  member = await insertTenant(t.db, userRole!.id, 'acme-member');
  other = await insertTenant(t.db, adminRole!.id, 'other-admin');
});
afterAll(() => t?.close());

const check = (who: { tenantId: string; userId: string }, asTenant: string, resource: string, action: string) =>
  withTenant(t.db, asTenant, (tx) => can(tx, { userId: who.userId, resource, action }));

describe('can', () => {
  it("answers from the user's role and its policies", async () => {
    expect(await check(admin, admin.tenantId, 'users', 'manage')).toBe(true);
    expect(await check(admin, admin.tenantId, 'models', 'use')).toBe(true);
    expect(await check(member, member.tenantId, 'models', 'use')).toBe(true);
    expect(await check(member, member.tenantId, 'users', 'manage')).toBe(false);
    expect(await check(admin, admin.tenantId, 'users', 'delete')).toBe(false);
  });

  it('says no for a user of another tenant, and for a disabled user', async () => {
    expect(await check(other, admin.tenantId, 'users', 'manage')).toBe(false);
    await t.db.updateTable('users').set({ status: 'disabled' }).where('id', '=', admin.userId).execute();
    expect(await check(admin, admin.tenantId, 'users', 'manage')).toBe(false);
  });

  it('needs a tenant context and valid input', async () => {
    // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
    await expect(can(t.db, { userId: admin.userId, resource: 'users', action: 'manage' })).rejects.toBeInstanceOf(TenantContextError);
    await expect(withTenant(t.db, admin.tenantId, (tx) => can(tx, { userId: 'x', resource: 'users', action: 'manage' }))).rejects.toMatchObject({ field: 'userId' });
  });
});
