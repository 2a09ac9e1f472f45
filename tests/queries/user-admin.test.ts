import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError, PermissionError, UserDisabledError, ValidationError } from '../../src/db/errors.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { createTenant } from '../../src/queries/tenants.ts';
import { recordUsage } from '../../src/queries/usage.ts';
import { getUserBudget } from '../../src/queries/budgets.ts';
import {
  listUsers,
  revokeApiKey,
  rotateApiKey,
  setBudget,
  setUserRole,
  setUserStatus,
  topUpBudget,
  updateUser,
} from '../../src/queries/user-admin.ts';
import { authenticateApiKey, createUser, getUser } from '../../src/queries/users.ts';
import { runCounting } from '../support/conversation-fixtures.ts';
import { insertCatalog } from '../support/fixtures.ts';
import { insertModel } from '../support/usage-fixtures.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let roleId: number;
let otherRoleId: number;
let modelId: number;
let tenantA: string;
let tenantB: string;
/** A user of tenant B: every admin function must treat it as missing from tenant A. */
let bUserId: string;

const newUser = (tenantId: string, fields: { email?: string; budget?: string } = {}) =>
  withTenant(t.db, tenantId, (tx) => createUser(tx, { email: fields.email ?? `u-${randomUUID()}@example.com`, roleId, ...(fields.budget === undefined ? {} : { budget: fields.budget }) }));
const asA = <T>(fn: Parameters<typeof withTenant<T>>[2]) => withTenant(t.db, tenantA, fn);

beforeAll(async () => {
  t = await openTestDb();
  ({ roleId } = await insertCatalog(t.db));
  otherRoleId = (await t.db.insertInto('roles').values({ name: `other-${randomUUID()}` }).returning('id').executeTakeFirstOrThrow()).id;
  modelId = await insertModel(t.db, { input: '1' }); // 1 per 1k input tokens: 1,000 tokens cost exactly 1
  tenantA = (await createTenant(t.db, { name: 'A', slug: 'admin-a' })).id;
  tenantB = (await createTenant(t.db, { name: 'B', slug: 'admin-b' })).id;
  bUserId = (await newUser(tenantB, { budget: '5' })).user.id;
});
afterAll(() => t?.close());

/** Tenant B's user as the owner sees it: what must stay unchanged by anything done in tenant A. */
const bUser = () => t.db.selectFrom('users').selectAll().where('id', '=', bUserId).executeTakeFirstOrThrow();

describe('the tenant wall', () => {
  it("every admin function treats another tenant's user as missing and changes nothing of it", async () => {
    const before = await bUser();
    const attempts: Record<string, Parameters<typeof asA>[0]> = {
      updateUser: (tx) => updateUser(tx, { userId: bUserId, firstName: 'Mallory' }),
      setUserStatus: (tx) => setUserStatus(tx, { userId: bUserId, status: 'disabled' }),
      setUserRole: (tx) => setUserRole(tx, { userId: bUserId, roleId: otherRoleId }),
      setBudget: (tx) => setBudget(tx, { userId: bUserId, budget: '1000' }),
      topUpBudget: (tx) => topUpBudget(tx, { userId: bUserId, amount: '1000' }),
      rotateApiKey: (tx) => rotateApiKey(tx, { userId: bUserId }),
      revokeApiKey: (tx) => revokeApiKey(tx, { userId: bUserId }),
    };
    for (const [name, attempt] of Object.entries(attempts)) {
      await expect(asA(attempt), name).rejects.toThrow(new NotFoundError('user', bUserId));
    }
    expect(await bUser()).toEqual(before);
    expect((await asA((tx) => listUsers(tx, { limit: 200 }))).items.map((u) => u.id)).not.toContain(bUserId);
  });

  it("the admin SQL functions, called directly in tenant A, find nothing of tenant B's (and nothing without a tenant)", async () => {
    const before = await bUser();
    const found = await asA(async (tx) => (await sql<{ id: string | null }>`
      select app.set_user_status(${bUserId}::uuid, 'disabled') as id
      union all select app.top_up_user_budget(${bUserId}::uuid, 1000)
      union all select app.set_user_budget(${bUserId}::uuid, null, false)
      union all select app.set_user_api_key_hash(${bUserId}::uuid, null)
      union all select app.set_user_role(${bUserId}::uuid, ${otherRoleId})`.execute(tx)).rows);
    expect(found.map((r) => r.id)).toEqual([null, null, null, null, null]);
    // As app_server without a signed tenant (a plain transaction): app.current_tenant_id() is NULL.
    const outside = await t.db.transaction().execute(async (tx) => {
      await sql`select set_config('role', 'app_server', true)`.execute(tx); // not SET LOCAL ROLE: Citus would send it to the workers, where it would also bind the SECURITY DEFINER functions' connections
      return (await sql<{ id: string | null }>`select app.top_up_user_budget(${bUserId}::uuid, 1000) as id`.execute(tx)).rows[0]!.id;
    });
    expect(outside).toBeNull();
    expect(await bUser()).toEqual(before);
  });

  it.each(['app_gateway', 'app_cms'] as const)('%s can call neither the package functions (PermissionError) nor the admin SQL functions (42501)', async (role) => {
    const { user } = await newUser(tenantA, { budget: '1' });
    await expect(withTenant(t.db, tenantA, (tx) => topUpBudget(tx, { userId: user.id, amount: '5' }), { role })).rejects.toBeInstanceOf(PermissionError);
    await expect(withTenant(t.db, tenantA, (tx) => setUserStatus(tx, { userId: user.id, status: 'disabled' }), { role })).rejects.toBeInstanceOf(PermissionError);
    for (const call of [
      sql`select app.set_user_status(${user.id}::uuid, 'disabled')`,
      sql`select app.set_user_role(${user.id}::uuid, ${otherRoleId})`,
      sql`select app.set_user_budget(${user.id}::uuid, 1000, true)`,
      sql`select app.top_up_user_budget(${user.id}::uuid, 1000)`,
      sql`select app.set_user_api_key_hash(${user.id}::uuid, null)`,
      sql`select app.set_tenant_plan('enterprise')`,
    ]) {
      const error = await withTenant(t.db, tenantA, (tx) => call.execute(tx), { role }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: '42501' });
    }
    expect(await withTenant(t.db, tenantA, (tx) => getUser(tx, { userId: user.id }))).toMatchObject({ status: 'active', budget: '1', remaining: '1', roleId });
  });
});

describe('updateUser', () => {
  it('changes the email (normalized as createUser does) and the names; null clears a name', async () => {
    const { user } = await newUser(tenantA);
    const updated = await asA((tx) => updateUser(tx, { userId: user.id, email: '  Grace.Hopper@Example.COM ', firstName: ' Grace ', lastName: 'Hopper' }));
    expect(updated).toMatchObject({ id: user.id, email: 'grace.hopper@example.com', firstName: 'Grace', lastName: 'Hopper' });
    expect(updated.updatedAt.getTime()).toBeGreaterThanOrEqual(user.updatedAt.getTime());
    const cleared = await asA((tx) => updateUser(tx, { userId: user.id, lastName: null }));
    expect(cleared).toMatchObject({ email: 'grace.hopper@example.com', firstName: 'Grace', lastName: null });
  });

  it('refuses a taken email, a bad email and nothing to change', async () => {
    const { user } = await newUser(tenantA, { email: 'taken@example.com' });
    const { user: other } = await newUser(tenantA);
    await expect(asA((tx) => updateUser(tx, { userId: other.id, email: 'TAKEN@example.com' }))).rejects.toThrow(
      new ValidationError('email', 'taken@example.com already has a user in this tenant'),
    );
    // The same email in another tenant is fine.
    await expect(withTenant(t.db, tenantB, (tx) => updateUser(tx, { userId: bUserId, email: 'taken@example.com' }))).resolves.toMatchObject({ email: 'taken@example.com' });
    for (const params of [{ userId: other.id, email: 'no-at-sign' }, { userId: other.id }, { userId: 'nope', firstName: 'x' }]) {
      const { error, statements } = await runCounting(t.db, tenantA, (tx) => updateUser(tx, params));
      expect(error).toBeInstanceOf(ValidationError);
      expect(statements).toBe(0);
    }
    expect((await asA((tx) => getUser(tx, { userId: user.id }))).email).toBe('taken@example.com');
  });
});

describe('setUserStatus', () => {
  it('a disabled user can neither authenticate nor be charged; active again, both work', async () => {
    const { user, apiKey } = await newUser(tenantA, { budget: '10' });
    expect(await authenticateApiKey(t.db, apiKey)).toMatchObject({ userId: user.id });
    const disabled = await asA((tx) => setUserStatus(tx, { userId: user.id, status: 'disabled' }));
    expect(disabled).toMatchObject({ status: 'disabled', budget: '10', remaining: '10' });

    expect(await authenticateApiKey(t.db, apiKey)).toBeUndefined();
    const charge = (tx: Parameters<Parameters<typeof asA>[0]>[0]) =>
      recordUsage(tx, { userId: user.id, modelId, type: 'chat', inputTokens: 1000, outputTokens: 0, idempotencyKey: `k-${user.id}` });
    const error = await withTenant(t.db, tenantA, charge, { role: 'app_gateway' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UserDisabledError);
    expect(error).toMatchObject({ userId: user.id, message: `user ${user.id} is disabled: it cannot be charged` });
    expect(await t.db.selectFrom('usage').select('id').where('userId', '=', user.id).execute()).toEqual([]);
    expect(await asA((tx) => getUserBudget(tx, { userId: user.id }))).toMatchObject({ budget: '10', remaining: '10' });

    await asA((tx) => setUserStatus(tx, { userId: user.id, status: 'active' }));
    expect(await authenticateApiKey(t.db, apiKey)).toMatchObject({ userId: user.id });
    expect((await withTenant(t.db, tenantA, charge, { role: 'app_gateway' })).cost).toBe('1');
    expect(await asA((tx) => getUserBudget(tx, { userId: user.id }))).toMatchObject({ budget: '10', remaining: '9' });
  });

  it('a user that does not exist is still a NotFoundError for recordUsage; a bad status is refused before SQL', async () => {
    const missing = randomUUID();
    await expect(withTenant(t.db, tenantA, (tx) => recordUsage(tx, { userId: missing, modelId, type: 'chat', inputTokens: 1, outputTokens: 0 }), { role: 'app_gateway' }))
      .rejects.toThrow(new NotFoundError('user', missing));
    const { user } = await newUser(tenantA);
    const { error, statements } = await runCounting(t.db, tenantA, (tx) => setUserStatus(tx, { userId: user.id, status: 'banned' as 'disabled' }));
    expect(error).toMatchObject({ name: 'ValidationError', field: 'status' });
    expect(statements).toBe(0);
  });
});

describe('setUserRole', () => {
  it('gives the user another role; an unknown role is a NotFoundError and changes nothing', async () => {
    const { user } = await newUser(tenantA);
    expect(await asA((tx) => setUserRole(tx, { userId: user.id, roleId: otherRoleId }))).toMatchObject({ roleId: otherRoleId });
    await expect(asA((tx) => setUserRole(tx, { userId: user.id, roleId: 999_999 }))).rejects.toThrow(new NotFoundError('role', 999_999));
    expect((await asA((tx) => getUser(tx, { userId: user.id }))).roleId).toBe(otherRoleId);
  });
});

describe('setBudget', () => {
  it('keeps what was spent, in exact decimals; reset starts afresh; null removes the limit', async () => {
    const { user } = await newUser(tenantA, { budget: '0.3' });
    await withTenant(t.db, tenantA, (tx) => recordUsage(tx, { userId: user.id, modelId, type: 'chat', inputTokens: 100, outputTokens: 0 }), { role: 'app_gateway' }); // 0.1
    expect(await asA((tx) => setBudget(tx, { userId: user.id, budget: '0.30000000000000000001' }))).toMatchObject({
      budget: '0.30000000000000000001',
      remaining: '0.20000000000000000001',
    });
    expect(await asA((tx) => setBudget(tx, { userId: user.id, budget: '0.05' }))).toMatchObject({ budget: '0.05', remaining: '0' }); // spent more than that
    expect(await asA((tx) => setBudget(tx, { userId: user.id, budget: '2.50', reset: true }))).toMatchObject({ budget: '2.5', remaining: '2.5' });
    expect(await asA((tx) => setBudget(tx, { userId: user.id, budget: null }))).toMatchObject({ budget: null, remaining: null });
    expect(await asA((tx) => setBudget(tx, { userId: user.id, budget: 7 }))).toMatchObject({ budget: '7', remaining: '7' });
  });

  it('refuses a negative or non-decimal budget before any SQL', async () => {
    const { user } = await newUser(tenantA, { budget: '1' });
    for (const budget of ['-1', '1e3', 'ten', Number.NaN]) {
      const { error, statements } = await runCounting(t.db, tenantA, (tx) => setBudget(tx, { userId: user.id, budget }));
      expect(error).toMatchObject({ name: 'ValidationError', field: 'budget' });
      expect(statements).toBe(0);
    }
  });
});

describe('topUpBudget', () => {
  it('adds the exact amount to budget and remaining', async () => {
    const { user } = await newUser(tenantA, { budget: '0.1' });
    expect(await asA((tx) => topUpBudget(tx, { userId: user.id, amount: '0.2' }))).toMatchObject({ budget: '0.3', remaining: '0.3' });
  });

  it('refuses a user without a budget, and an amount that is not more than 0', async () => {
    const { user } = await newUser(tenantA);
    await expect(asA((tx) => topUpBudget(tx, { userId: user.id, amount: '5' }))).rejects.toMatchObject({ name: 'ValidationError', field: 'userId' });
    expect(await asA((tx) => getUserBudget(tx, { userId: user.id }))).toMatchObject({ budget: null, remaining: null });
    for (const amount of ['0', '0.000', '-3']) {
      const { error, statements } = await runCounting(t.db, tenantA, (tx) => topUpBudget(tx, { userId: user.id, amount }));
      expect(error).toMatchObject({ name: 'ValidationError', field: 'amount' });
      expect(statements).toBe(0);
    }
  });
});

describe.runIf(onServer)('top-ups racing (server: one transaction per connection)', () => {
  it('20 top-ups at once add up exactly', async () => {
    const db = t.open(8);
    try {
      const { user } = await newUser(tenantA, { budget: '1' });
      await Promise.all(Array.from({ length: 20 }, () => withTenant(db, tenantA, (tx) => topUpBudget(tx, { userId: user.id, amount: '0.1' }))));
      expect(await asA((tx) => getUserBudget(tx, { userId: user.id }))).toMatchObject({ budget: '3', remaining: '3' });
    } finally {
      await db.destroy();
    }
  });

  it('top-ups and charges at once: remaining = budget + top-ups - charges, nothing lost', async () => {
    const db = t.open(8);
    try {
      const { user } = await newUser(tenantA, { budget: '5' });
      const topUps = Array.from({ length: 10 }, () => withTenant(db, tenantA, (tx) => topUpBudget(tx, { userId: user.id, amount: '1' })));
      const charges = Array.from({ length: 10 }, () =>
        withTenant(db, tenantA, (tx) => recordUsage(tx, { userId: user.id, modelId, type: 'chat', inputTokens: 500, outputTokens: 0 }), { role: 'app_gateway' }));
      await Promise.all([...topUps, ...charges]);
      expect(await asA((tx) => getUserBudget(tx, { userId: user.id }))).toMatchObject({ budget: '15', remaining: '10' });
    } finally {
      await db.destroy();
    }
  });
});

describe('listUsers', () => {
  let tenant: string;
  beforeAll(async () => {
    tenant = (await createTenant(t.db, { name: 'Listing', slug: 'listing' })).id;
    for (let i = 0; i < 7; i++) {
      await withTenant(t.db, tenant, (tx) => createUser(tx, { email: `${i < 4 ? 'ada' : 'bob'}${i}@example.com`, roleId: i % 2 === 0 ? roleId : otherRoleId }));
    }
    const bob = await t.db.selectFrom('users').select('id').where('email', '=', 'bob6@example.com').executeTakeFirstOrThrow();
    await withTenant(t.db, tenant, (tx) => setUserStatus(tx, { userId: bob.id, status: 'disabled' }));
  });

  it('walks every user exactly once, newest first, page by page', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: Awaited<ReturnType<typeof listUsers>> = await withTenant(t.db, tenant, (tx) => listUsers(tx, { limit: 3, cursor }));
      expect(page.items.length).toBeLessThanOrEqual(3);
      seen.push(...page.items.map((u) => u.email));
      cursor = page.nextCursor;
    } while (cursor !== null);
    expect(seen).toEqual([6, 5, 4, 3, 2, 1, 0].map((i) => `${i < 4 ? 'ada' : 'bob'}${i}@example.com`));
  });

  it('filters by role, status and email prefix (lowercased), and a cursor only serves its own filters', async () => {
    const emails = async (params: Parameters<typeof listUsers>[1]) =>
      (await withTenant(t.db, tenant, (tx) => listUsers(tx, params))).items.map((u) => u.email);
    expect(await emails({ emailPrefix: ' ADA' })).toEqual(['ada3@example.com', 'ada2@example.com', 'ada1@example.com', 'ada0@example.com']);
    expect(await emails({ roleId: otherRoleId, emailPrefix: 'ada' })).toEqual(['ada3@example.com', 'ada1@example.com']);
    expect(await emails({ status: 'disabled' })).toEqual(['bob6@example.com']);
    expect(await emails({ emailPrefix: '%' })).toEqual([]); // not a LIKE pattern
    const first = await withTenant(t.db, tenant, (tx) => listUsers(tx, { emailPrefix: 'ada', limit: 1 }));
    await expect(withTenant(t.db, tenant, (tx) => listUsers(tx, { emailPrefix: 'bob', cursor: first.nextCursor }))).rejects.toMatchObject({ field: 'cursor' });
    await expect(withTenant(t.db, tenant, (tx) => listUsers(tx, { limit: 201 }))).rejects.toMatchObject({ field: 'limit' });
  });
});

describe('rotateApiKey and revokeApiKey', () => {
  it('the new key authenticates, the old one no longer; a revoked user has no key at all', async () => {
    const { user, apiKey: old } = await newUser(tenantA);
    const { user: rotated, apiKey } = await asA((tx) => rotateApiKey(tx, { userId: user.id }));
    expect(rotated.id).toBe(user.id);
    expect(apiKey).toMatch(/^sk_[0-9a-f]{32}_[A-Za-z0-9_-]{43}$/);
    expect(apiKey).not.toBe(old);
    expect(await authenticateApiKey(t.db, old)).toBeUndefined();
    expect(await authenticateApiKey(t.db, apiKey)).toEqual({ tenantId: tenantA, userId: user.id, roleId });
    await asA((tx) => revokeApiKey(tx, { userId: user.id }));
    expect(await authenticateApiKey(t.db, apiKey)).toBeUndefined();
    expect(await t.db.selectFrom('users').select('apiKeyHash').where('id', '=', user.id).executeTakeFirstOrThrow()).toEqual({ apiKeyHash: null });
  });

  it.runIf(onServer)('the old key works for other connections until the rotation commits, then stops', async () => {
    const other = t.open(1);
    try {
      const { user, apiKey: old } = await newUser(tenantA);
      let fresh = '';
      await asA(async (tx) => {
        fresh = (await rotateApiKey(tx, { userId: user.id })).apiKey;
        expect(await authenticateApiKey(other, old)).toMatchObject({ userId: user.id });
        expect(await authenticateApiKey(other, fresh)).toBeUndefined();
      });
      expect(await authenticateApiKey(other, old)).toBeUndefined();
      expect(await authenticateApiKey(other, fresh)).toMatchObject({ userId: user.id });
    } finally {
      await other.destroy();
    }
  });
});
