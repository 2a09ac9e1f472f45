import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError, TenantContextError, ValidationError } from '../../src/db/errors.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { createTenant } from '../../src/queries/tenants.ts';
import { getUserBudget } from '../../src/queries/budgets.ts';
import { authenticateApiKey, createUser, findUser, getUser, hashApiKey, tenantOfApiKey } from '../../src/queries/users.ts';
import { insertCatalog } from '../support/fixtures.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let roleId: number;
let tenantA: string;
let tenantB: string;
beforeAll(async () => {
  t = await openTestDb();
  ({ roleId } = await insertCatalog(t.db));
  tenantA = (await createTenant(t.db, { name: 'A', slug: 'a' })).id;
  tenantB = (await createTenant(t.db, { name: 'B', slug: 'b' })).id;
});
afterAll(() => t?.close());

describe('createUser', () => {
  it('creates a user with a budget and returns the API key once, storing only its hash', async () => {
    const { user, apiKey } = await withTenant(t.db, tenantA, (tx) =>
      createUser(tx, { email: ' Ada@Example.com ', firstName: 'Ada', roleId, budget: '25.50' }),
    );
    // Decimal text without trailing zeros, whatever scale the budget was given with.
    expect(user).toMatchObject({ email: 'ada@example.com', firstName: 'Ada', lastName: null, status: 'active', roleId, budget: '25.5', remaining: '25.5' });
    expect(user).not.toHaveProperty('apiKeyHash');
    expect(apiKey).toMatch(/^sk_[0-9a-f]{32}_[A-Za-z0-9_-]{43}$/);
    expect(tenantOfApiKey(apiKey)).toBe(tenantA);
    const stored = await t.db.selectFrom('users').selectAll().where('id', '=', user.id).executeTakeFirstOrThrow();
    expect(stored.apiKeyHash).toBe(hashApiKey(apiKey));
    expect(JSON.stringify(stored)).not.toContain(apiKey);
  });

  it('returns a budget as one decimal text everywhere: 25.00 is 25 from createUser, getUser, findUser and getUserBudget', async () => {
    const { user } = await withTenant(t.db, tenantA, (tx) => createUser(tx, { email: 'budget@example.com', roleId, budget: '25.00' }));
    expect(user).toMatchObject({ budget: '25', remaining: '25' });
    const read = await withTenant(t.db, tenantA, async (tx) => ({
      got: await getUser(tx, { userId: user.id }),
      found: await findUser(tx, { userId: user.id }),
      budget: await getUserBudget(tx, { userId: user.id }),
    }));
    expect(read.got).toEqual(user);
    expect(read.found).toEqual(user);
    expect(read.budget).toEqual({ budget: '25', period: 'none', windowStart: null, windowEnd: null, spent: '0', held: '0', remaining: '25' });
    // Stored as given: only what the API returns is canonical.
    const stored = await t.db.selectFrom('users').select(['budget', 'remaining']).where('id', '=', user.id).executeTakeFirstOrThrow();
    expect(stored).toEqual({ budget: '25.00', remaining: '25.00' });
    const fractions = await withTenant(t.db, tenantA, (tx) => createUser(tx, { email: 'fraction@example.com', roleId, budget: '0.0500' }));
    expect(fractions.user).toMatchObject({ budget: '0.05', remaining: '0.05' });
    const zero = await withTenant(t.db, tenantA, (tx) => createUser(tx, { email: 'zero@example.com', roleId, budget: '0.000' }));
    expect(zero.user).toMatchObject({ budget: '0', remaining: '0' });
  });

  it('creates a user without a budget (no limit)', async () => {
    const { user } = await withTenant(t.db, tenantA, (tx) => createUser(tx, { email: 'nobudget@example.com', roleId }));
    expect(user).toMatchObject({ budget: null, remaining: null });
  });

  it('refuses bad input before any SQL, a duplicate email and an unknown role', async () => {
    const create = (params: Parameters<typeof createUser>[1]) => withTenant(t.db, tenantA, (tx) => createUser(tx, params));
    await expect(create({ email: 'not-an-email', roleId })).rejects.toMatchObject({ name: 'ValidationError', field: 'email' });
    await expect(create({ email: 'x@example.com', roleId: 0 })).rejects.toMatchObject({ name: 'ValidationError', field: 'roleId' });
    await expect(create({ email: 'x@example.com', roleId, budget: '-1' })).rejects.toMatchObject({ name: 'ValidationError', field: 'budget' });
    await create({ email: 'dup@example.com', roleId });
    await expect(create({ email: 'DUP@example.com', roleId })).rejects.toThrow(ValidationError);
    await expect(create({ email: 'norole@example.com', roleId: 999_999 })).rejects.toThrow(new NotFoundError('role', 999_999));
  });

  it('lets the same email exist in two tenants', async () => {
    await withTenant(t.db, tenantA, (tx) => createUser(tx, { email: 'shared@example.com', roleId }));
    await withTenant(t.db, tenantB, (tx) => createUser(tx, { email: 'shared@example.com', roleId }));
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from users where email = 'shared@example.com'`.execute(t.db);
    expect(rows[0]!.n).toBe(2);
  });

  it('needs a tenant context', async () => {
    // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
    await expect(createUser(t.db, { email: 'ctx@example.com', roleId })).rejects.toBeInstanceOf(TenantContextError);
  });
});

describe('getUser / findUser', () => {
  it("finds a user of the tenant, and treats another tenant's user as missing", async () => {
    const { user } = await withTenant(t.db, tenantA, (tx) => createUser(tx, { email: 'find@example.com', roleId }));
    expect(await withTenant(t.db, tenantA, (tx) => getUser(tx, { userId: user.id }))).toEqual(user);
    expect(await withTenant(t.db, tenantB, (tx) => findUser(tx, { userId: user.id }))).toBeUndefined();
    await expect(withTenant(t.db, tenantB, (tx) => getUser(tx, { userId: user.id }))).rejects.toThrow(new NotFoundError('user', user.id));
    const missing = randomUUID();
    await expect(withTenant(t.db, tenantA, (tx) => getUser(tx, { userId: missing }))).rejects.toThrow(new NotFoundError('user', missing));
    await expect(withTenant(t.db, tenantA, (tx) => getUser(tx, { userId: 'nope' }))).rejects.toMatchObject({ name: 'ValidationError', field: 'userId' });
  });
});

describe('authenticateApiKey', () => {
  it('resolves a key to its tenant, user and role without a tenant context', async () => {
    const { user, apiKey } = await withTenant(t.db, tenantB, (tx) => createUser(tx, { email: 'key@example.com', roleId }));
    expect(await authenticateApiKey(t.db, apiKey)).toEqual({ tenantId: tenantB, userId: user.id, roleId });
  });

  it('works for app_user too (the function is SECURITY DEFINER), inside any tenant context', async () => {
    const { user, apiKey } = await withTenant(t.db, tenantB, (tx) => createUser(tx, { email: 'key2@example.com', roleId }));
    expect(await withTenant(t.db, tenantA, (tx) => authenticateApiKey(tx, apiKey))).toEqual({ tenantId: tenantB, userId: user.id, roleId });
  });

  it('looks a key up in the tenant it names only: the same secret naming another tenant is unknown', async () => {
    const { apiKey } = await withTenant(t.db, tenantA, (tx) => createUser(tx, { email: 'named@example.com', roleId }));
    const renamed = apiKey.replace(/^sk_[0-9a-f]{32}_/, `sk_${tenantB.replaceAll('-', '')}_`);
    expect(await authenticateApiKey(t.db, renamed)).toBeUndefined();
    // A key that names no tenant (made before 0019, or TEST_API_KEY) is found in any tenant.
    const legacy = `sk_${'L'.repeat(43)}`;
    const { user } = await withTenant(t.db, tenantB, (tx) => createUser(tx, { email: 'legacy@example.com', roleId }));
    await t.db.updateTable('users').set({ apiKeyHash: hashApiKey(legacy) }).where('id', '=', user.id).execute();
    expect(await authenticateApiKey(t.db, legacy)).toEqual({ tenantId: tenantB, userId: user.id, roleId });
  });

  it('returns undefined for an unknown, malformed or disabled user’s key', async () => {
    expect(await authenticateApiKey(t.db, `sk_${'A'.repeat(43)}`)).toBeUndefined();
    expect(await authenticateApiKey(t.db, "'; drop table users; --")).toBeUndefined();
    const { user, apiKey } = await withTenant(t.db, tenantA, (tx) => createUser(tx, { email: 'disabled@example.com', roleId }));
    await t.db.updateTable('users').set({ status: 'disabled' }).where('id', '=', user.id).execute();
    expect(await authenticateApiKey(t.db, apiKey)).toBeUndefined();
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from users`.execute(t.db);
    expect(rows[0]!.n).toBeGreaterThan(0);
  });
});
