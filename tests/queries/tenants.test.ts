import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TenantContextError, ValidationError } from '../../src/db/errors.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { createTenant, getCurrentTenant } from '../../src/queries/tenants.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
beforeAll(async () => {
  t = await openTestDb();
});
afterAll(() => t?.close());

describe('createTenant', () => {
  it('creates a tenant with a default plan and empty settings', async () => {
    const tenant = await createTenant(t.db, { name: '  Acme Corp ', slug: 'acme' });
    expect(tenant).toMatchObject({ name: 'Acme Corp', slug: 'acme', plan: 'free', settings: {} });
    expect(tenant.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(tenant.createdAt).toBeInstanceOf(Date);
  });

  it('refuses a taken slug, a bad slug and an empty name, before or at the database', async () => {
    await createTenant(t.db, { name: 'Globex', slug: 'globex', plan: 'pro' });
    await expect(createTenant(t.db, { name: 'Globex 2', slug: 'globex' })).rejects.toThrow(new ValidationError('slug', 'globex is taken'));
    await expect(createTenant(t.db, { name: 'Bad', slug: 'Not A Slug' })).rejects.toMatchObject({ name: 'ValidationError', field: 'slug' });
    await expect(createTenant(t.db, { name: '  ', slug: 'empty' })).rejects.toMatchObject({ name: 'ValidationError', field: 'name' });
    expect(await t.db.selectFrom('tenants').select('slug').where('slug', '=', 'empty').execute()).toEqual([]);
  });

  it('is an owner operation: refused inside withTenant', async () => {
    const home = await createTenant(t.db, { name: 'Home', slug: 'home' });
    await expect(
      withTenant(t.db, home.id, (tx) => createTenant(tx, { name: 'Sneaky', slug: 'sneaky' })),
    ).rejects.toBeInstanceOf(TenantContextError);
  });
});

describe('getCurrentTenant', () => {
  it("returns the context's tenant and nothing of another", async () => {
    const a = await createTenant(t.db, { name: 'A', slug: 'tenant-a' });
    expect(await withTenant(t.db, a.id, (tx) => getCurrentTenant(tx))).toMatchObject({ id: a.id, slug: 'tenant-a' });
  });

  it('needs a tenant context', async () => {
    // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
    await expect(getCurrentTenant(t.db)).rejects.toBeInstanceOf(TenantContextError);
  });
});
