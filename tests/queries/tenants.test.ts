import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TenantContextError, ValidationError } from '../../src/db/errors.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { createTenant, getCurrentTenant, updateTenant } from '../../src/queries/tenants.ts';
import { runCounting } from '../support/conversation-fixtures.ts';
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

describe('updateTenant', () => {
  it('changes the name, the plan and the settings of the current tenant only', async () => {
    const mine = await createTenant(t.db, { name: 'Mine', slug: 'update-mine' });
    const theirs = await createTenant(t.db, { name: 'Theirs', slug: 'update-theirs' });
    const updated = await withTenant(t.db, mine.id, (tx) =>
      updateTenant(tx, {
        name: ' Acme Corporation ',
        plan: 'business',
        settings: { maxMonthlySpend: '1000.50', allowedDomains: ['https://acme.com'], features: ['chat', 'knowledge-base', 'chat'] },
      }));
    expect(updated).toMatchObject({
      id: mine.id,
      name: 'Acme Corporation',
      plan: 'business',
      settings: { maxMonthlySpend: '1000.5', allowedDomains: ['https://acme.com'], features: ['chat', 'knowledge-base'] },
    });
    expect(await t.db.selectFrom('tenants').select(['name', 'plan', 'settings']).where('id', '=', theirs.id).executeTakeFirstOrThrow())
      .toEqual({ name: 'Theirs', plan: 'free', settings: {} });
  });

  it('settings are a patch: given keys replace, null removes, others stay; a number cap is stored as exact decimal text', async () => {
    const tenant = await createTenant(t.db, { name: 'Patch', slug: 'update-patch' });
    await withTenant(t.db, tenant.id, (tx) => updateTenant(tx, { settings: { maxMonthlySpend: 250, features: ['chat'] } }));
    const patched = await withTenant(t.db, tenant.id, (tx) => updateTenant(tx, { settings: { maxMonthlySpend: null, allowedDomains: ['acme.com'] } }));
    expect(patched.settings).toEqual({ features: ['chat'], allowedDomains: ['acme.com'] });
    const capped = await withTenant(t.db, tenant.id, (tx) => updateTenant(tx, { settings: { maxMonthlySpend: 0.1 } }));
    expect(capped.settings).toMatchObject({ maxMonthlySpend: '0.1' });
  });

  it('refuses unknown settings, bad values, a bad plan and nothing to change, before any SQL', async () => {
    const tenant = await createTenant(t.db, { name: 'Strict', slug: 'update-strict' });
    const cases: [Parameters<typeof updateTenant>[1], string][] = [
      [{ settings: { theme: 'dark' } as never }, 'settings.theme'],
      [{ settings: { maxMonthlySpend: '-5' } }, 'settings.maxMonthlySpend'],
      [{ settings: { maxMonthlySpend: '1e6' } }, 'settings.maxMonthlySpend'],
      [{ settings: { features: 'chat' as never } }, 'settings.features'],
      [{ settings: { allowedDomains: ['has space.com'] } }, 'settings.allowedDomains[0]'],
      [{ settings: { features: Array.from({ length: 101 }, (_, i) => `f${i}`) } }, 'settings.features'],
      [{ settings: {} }, 'settings'],
      [{ plan: 'Gold Plan' }, 'plan'],
      [{ name: '  ' }, 'name'],
      [{}, 'params'],
    ];
    for (const [params, field] of cases) {
      const { error, statements } = await runCounting(t.db, tenant.id, (tx) => updateTenant(tx, params));
      expect(error, field).toMatchObject({ name: 'ValidationError', field });
      expect(statements).toBe(0);
    }
    const unknown = await runCounting(t.db, tenant.id, (tx) => updateTenant(tx, { settings: { theme: 'dark' } as never }));
    expect((unknown.error as Error).message).toBe('settings.theme: is not a known setting (known: maxMonthlySpend, budgetAlertThresholds, allowedDomains, features)');
  });

  it('the database checks the known settings too, for SQL that goes around the package (app_server may update settings)', async () => {
    const tenant = await createTenant(t.db, { name: 'Raw', slug: 'update-raw' });
    const raw = (settings: string) =>
      withTenant(t.db, tenant.id, (tx) => sql`update tenants set settings = ${settings}::jsonb where id = ${tenant.id}::uuid`.execute(tx), { role: 'app_server' })
        .then(() => 'stored', (e: { code?: string }) => e.code);
    expect(await raw('{"maxMonthlySpend": "lots"}')).toBe('23514');
    expect(await raw('{"maxMonthlySpend": -1}')).toBe('23514');
    expect(await raw('{"features": [1, 2]}')).toBe('23514');
    expect(await raw('{"maxMonthlySpend": 1000, "features": ["chat"]}')).toBe('stored'); // seed 004's shape
  });

  it('only app_server changes the plan: the gateway and the cms get 42501 from the database', async () => {
    const tenant = await createTenant(t.db, { name: 'Plan', slug: 'update-plan' });
    for (const role of ['app_gateway', 'app_cms'] as const) {
      const code = await withTenant(t.db, tenant.id, (tx) => sql`select app.set_tenant_plan('enterprise')`.execute(tx), { role }).then(() => 'ran', (e: { code?: string }) => e.code);
      expect(code).toBe('42501');
    }
    expect(await withTenant(t.db, tenant.id, (tx) => updateTenant(tx, { plan: 'enterprise' }), { role: 'app_server' })).toMatchObject({ plan: 'enterprise' });
  });
});
