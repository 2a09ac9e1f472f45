import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BudgetExceededError, NotFoundError, ValidationError } from '../../src/db/errors.ts';
import type { DB } from '../../src/db/schema.generated.ts';
import { withTenant } from '../../src/db/tenant.ts';
import type { TenantTx } from '../../src/db/tenant-tx.ts';
import { getTenantSpend, getUserBudget, releaseReservation, reserveBudget, settleUsage } from '../../src/queries/budgets.ts';
import { updateTenant } from '../../src/queries/tenants.ts';
import { listUsage } from '../../src/queries/usage-log.ts';
import { listBudgetAlerts, resolveBudgetAlert } from '../../src/queries/budget-alerts.ts';
import { recordUsage, type RecordUsageParams } from '../../src/queries/usage.ts';
import { setBudget } from '../../src/queries/user-admin.ts';
import { insertCatalog, insertTenant } from '../support/fixtures.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';
import { insertModel, insertUsageRows, insertUser } from '../support/usage-fixtures.ts';

let t: TestDb;
let roleId: number;
/** 0.1 per 1k input tokens: 1000 input tokens cost exactly 0.1. */
let dime: number;

beforeAll(async () => {
  t = await openTestDb();
  ({ roleId } = await insertCatalog(t.db));
  dime = await insertModel(t.db, { input: '0.1' });
});
afterAll(() => t?.close());

/** A charge of exactly `tenths` × 0.1 on the dime model. */
function dimes(userId: string, tenths = 1, extra: Partial<RecordUsageParams> = {}): RecordUsageParams {
  return { userId, modelId: dime, type: 'chat', inputTokens: 1000 * tenths, outputTokens: 0, ...extra };
}
const asGateway = <T>(db: Kysely<DB>, tenantId: string, fn: (tx: TenantTx) => Promise<T>) => withTenant(db, tenantId, fn, { role: 'app_gateway' });
const asServer = <T>(db: Kysely<DB>, tenantId: string, fn: (tx: TenantTx) => Promise<T>) => withTenant(db, tenantId, fn, { role: 'app_server' });

/** UTC midnight of `at`'s day. */
function utcDay(at: Date): Date {
  return new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate()));
}

describe('budget periods', () => {
  it("getUserBudget reports the period, the current UTC window, spent, held and remaining; 'none' is the lifetime", async () => {
    const { tenantId } = await insertTenant(t.db, roleId);
    const userId = await insertUser(t.db, tenantId, roleId, '1');
    expect(await asServer(t.db, tenantId, (tx) => getUserBudget(tx, { userId }))).toEqual({
      budget: '1', period: 'none', windowStart: null, windowEnd: null, spent: '0', held: '0', remaining: '1',
    });
    await asServer(t.db, tenantId, (tx) => setBudget(tx, { userId, budget: '1.00', period: 'month' }));
    await asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId, 3)));
    const now = new Date();
    const monthStart = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
    const monthEnd = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
    expect(await asGateway(t.db, tenantId, (tx) => getUserBudget(tx, { userId }))).toEqual({
      budget: '1', period: 'month', windowStart: monthStart, windowEnd: monthEnd, spent: '0.3', held: '0', remaining: '0.7',
    });
    await asServer(t.db, tenantId, (tx) => setBudget(tx, { userId, budget: '1', period: 'week' }));
    const week = await asServer(t.db, tenantId, (tx) => getUserBudget(tx, { userId }));
    expect(week.windowStart!.getUTCDay()).toBe(1); // ISO weeks start on Monday
    expect(week.windowEnd!.getTime() - week.windowStart!.getTime()).toBe(7 * 86_400_000);
    expect(week).toMatchObject({ period: 'week', spent: '0', remaining: '1' }); // a new period starts at the full budget
  });

  it('a charge in a later window starts again at the full budget, with no scheduler; the read shows the new window before any charge', async () => {
    const { tenantId } = await insertTenant(t.db, roleId);
    const userId = await insertUser(t.db, tenantId, roleId, '0.5');
    await asServer(t.db, tenantId, (tx) => setBudget(tx, { userId, budget: '0.5', period: 'day' }));
    for (let i = 0; i < 5; i++) await asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId)));
    await expect(asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId)))).rejects.toMatchObject({ name: 'BudgetExceededError', limit: 'user', remaining: '0' });
    const today = utcDay(new Date());
    const stored = await t.db.selectFrom('users').select(['remaining', 'budgetWindowStart']).where('id', '=', userId).executeTakeFirstOrThrow();
    expect(stored).toEqual({ remaining: '0.0', budgetWindowStart: today });
    // Yesterday's window, spent out: what the row holds when the last charge was before midnight.
    const yesterday = new Date(today.getTime() - 86_400_000);
    await t.db.updateTable('users').set({ budgetWindowStart: yesterday }).where('id', '=', userId).execute();
    expect(await asGateway(t.db, tenantId, (tx) => getUserBudget(tx, { userId }))).toMatchObject({ windowStart: today, spent: '0', remaining: '0.5' });
    const usage = await asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId, 2)));
    expect(usage.createdAt.getTime()).toBeGreaterThanOrEqual(today.getTime());
    const after = await t.db.selectFrom('users').select(['remaining', 'budgetWindowStart']).where('id', '=', userId).executeTakeFirstOrThrow();
    expect(after).toEqual({ remaining: '0.3', budgetWindowStart: today });
  });

  it('the gateway cannot raise remaining or move the window anywhere but to the current one (raw SQL as app_gateway)', async () => {
    const { tenantId } = await insertTenant(t.db, roleId);
    const userId = await insertUser(t.db, tenantId, roleId, '1');
    await asServer(t.db, tenantId, (tx) => setBudget(tx, { userId, budget: '1', period: 'day' }));
    await asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId, 10)));
    const attempts = [
      sql`update users set remaining = budget where id = ${userId}`,
      sql`update users set budget_window_start = now() + interval '1 day', remaining = budget where id = ${userId}`,
      sql`update users set budget_window_start = now() - interval '3 days', remaining = budget where id = ${userId}`,
      // Already in the current window: moving it "on" to the same window is no reset.
      sql`update users set budget_window_start = app.budget_window_start('day', 0, now()), remaining = budget where id = ${userId}`,
      sql`update users set held = 0, held_until = null where id = ${userId}`,
      sql`update users set budget_period = 'none' where id = ${userId}`,
    ];
    for (const attempt of attempts) {
      const error = await asGateway(t.db, tenantId, (tx) => attempt.execute(tx)).catch((e: { code?: string }) => e);
      expect((error as { code?: string }).code).toBe('42501');
    }
    expect(await asGateway(t.db, tenantId, (tx) => getUserBudget(tx, { userId }))).toMatchObject({ spent: '1', remaining: '0' });
  });

  it('refuses a bad period or offset before any SQL', async () => {
    const { tenantId, userId } = await insertTenant(t.db, roleId);
    await expect(asServer(t.db, tenantId, (tx) => setBudget(tx, { userId, budget: '1', period: 'year' as never }))).rejects.toMatchObject({ name: 'ValidationError', field: 'period' });
    await expect(asServer(t.db, tenantId, (tx) => setBudget(tx, { userId, budget: '1', period: 'day', windowOffsetMs: 86_400_000 }))).rejects.toMatchObject({ name: 'ValidationError', field: 'windowOffsetMs' });
  });

  it.runIf(onServer)('charges racing across a window boundary: each counted in exactly one window, none lost, neither window overspent', async () => {
    const { tenantId } = await insertTenant(t.db, roleId);
    const userId = await insertUser(t.db, tenantId, roleId, '0.3');
    const pool = t.open(16);
    try {
      // Six transactions begin (their instant is fixed), then six more a little later; the
      // boundary of the user's day is then set between the two groups (windowOffsetMs), and all
      // twelve charge 0.1 at once against 0.3 per day.
      let open!: () => void;
      const gate = new Promise<void>((resolve) => (open = resolve));
      const instants: Date[] = [];
      const charge = () =>
        asGateway(pool, tenantId, async (tx) => {
          const { rows } = await sql<{ at: Date }>`select now() as at`.execute(tx);
          instants.push(rows[0]!.at);
          await gate;
          return { at: rows[0]!.at, usage: await recordUsage(tx, dimes(userId)) };
        });
      const early = Array.from({ length: 6 }, charge);
      while (instants.length < 6) await new Promise((r) => setTimeout(r, 5));
      const lastEarly = Math.max(...instants.map((d) => d.getTime()));
      await new Promise((r) => setTimeout(r, 30));
      const late = Array.from({ length: 6 }, charge);
      while (instants.length < 12) await new Promise((r) => setTimeout(r, 5));
      const boundary = new Date(lastEarly + 1); // after every early instant (now() has microseconds), before every late one
      expect(Math.min(...instants.slice(6).map((d) => d.getTime()))).toBeGreaterThan(boundary.getTime());
      await asServer(t.db, tenantId, (tx) => setBudget(tx, { userId, budget: '0.3', period: 'day', windowOffsetMs: boundary.getTime() - utcDay(boundary).getTime() }));
      open();
      const results = await Promise.allSettled([...early, ...late]);
      const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
      for (const error of refused) expect(error).toMatchObject({ name: 'BudgetExceededError', limit: 'user' });
      const charged = results.flatMap((r, i) => (r.status === 'fulfilled' ? [{ ...r.value, late: i >= 6 }] : []));

      const rows = await t.db.selectFrom('usage').select(['id', 'cost', 'createdAt']).where('userId', '=', userId).execute();
      expect(rows.map((r) => r.id).sort()).toEqual(charged.map((c) => c.usage.id).sort()); // every admitted charge has its row, no other row
      const before = rows.filter((r) => r.createdAt < boundary);
      const after = rows.filter((r) => r.createdAt >= boundary);
      expect(before.length).toBeLessThanOrEqual(3); // 0.3 in the closing window
      expect(after.length).toBe(3); // the six late charges fill the new window exactly
      for (const c of charged) {
        // A charge falls in its instant's window, or (an early one after the new window opened) at the new window's start.
        if (c.late) expect(c.usage.createdAt.getTime()).toBe(c.at.getTime());
        else expect([c.at.getTime(), boundary.getTime()]).toContain(c.usage.createdAt.getTime());
      }
      const stored = await t.db.selectFrom('users').select(['remaining', 'budgetWindowStart']).where('id', '=', userId).executeTakeFirstOrThrow();
      expect(stored.budgetWindowStart).toEqual(boundary);
      expect(Number(stored.remaining)).toBe(0);
      expect(refused.length).toBe(12 - rows.length);
    } finally {
      await pool.destroy();
    }
  });
});

describe('tenant spend cap', () => {
  it("a charge must fit the tenant's monthly cap as well as the user's budget; the refusal says which limit", async () => {
    const { tenantId } = await insertTenant(t.db, roleId);
    const unlimited = await insertUser(t.db, tenantId, roleId, null);
    const budgeted = await insertUser(t.db, tenantId, roleId, '0.15');
    await asServer(t.db, tenantId, (tx) => updateTenant(tx, { settings: { maxMonthlySpend: '0.3' } }));
    await asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(budgeted)));
    const userRefusal = await asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(budgeted))).catch((e: unknown) => e);
    expect(userRefusal).toBeInstanceOf(BudgetExceededError);
    expect(userRefusal).toMatchObject({ limit: 'user', remaining: '0.05', cost: '0.1' });
    await asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(unlimited, 2)));
    const tenantRefusal = await asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(unlimited))).catch((e: unknown) => e);
    expect(tenantRefusal).toMatchObject({ name: 'BudgetExceededError', limit: 'tenant', remaining: '0', cost: '0.1' });
    expect((tenantRefusal as Error).message).toContain("tenant's monthly spend cap");
    const now = new Date();
    expect(await asServer(t.db, tenantId, (tx) => getTenantSpend(tx))).toEqual({
      cap: '0.3',
      windowStart: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)),
      windowEnd: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)),
      spent: '0.3', held: '0', remaining: '0',
    });
    const { n } = await t.db.selectFrom('usage').select((eb) => eb.fn.countAll<number>().as('n')).where('tenantId', '=', tenantId).executeTakeFirstOrThrow();
    expect(Number(n)).toBe(2);
  });

  it('a new month starts the cap again at the first charge; the gateway cannot lower spent or start a month early', async () => {
    const { tenantId } = await insertTenant(t.db, roleId);
    const userId = await insertUser(t.db, tenantId, roleId, null);
    await asServer(t.db, tenantId, (tx) => updateTenant(tx, { settings: { maxMonthlySpend: 1 } }));
    await asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId, 10)));
    await expect(asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId)))).rejects.toMatchObject({ limit: 'tenant' });
    for (const attempt of [
      sql`update tenant_spend set spent = 0`,
      sql`update tenant_spend set window_start = now() + interval '40 days', spent = 0`,
      sql`update tenant_spend set held = 0`,
      sql`delete from tenant_spend`,
    ]) {
      const error = await asGateway(t.db, tenantId, (tx) => attempt.execute(tx)).catch((e: { code?: string }) => e);
      expect((error as { code?: string }).code).toBe('42501');
    }
    // Last month's row, as the owner: the next charge opens this month.
    await t.db.updateTable('tenantSpend').set({ windowStart: sql`app.budget_window_start('month', 0, now()) - interval '1 month'` }).where('tenantId', '=', tenantId).execute();
    expect(await asGateway(t.db, tenantId, (tx) => getTenantSpend(tx))).toMatchObject({ spent: '0', remaining: '1' });
    await asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId, 4)));
    expect(await asGateway(t.db, tenantId, (tx) => getTenantSpend(tx))).toMatchObject({ spent: '0.4', remaining: '0.6' });
  });
});

describe('reservations', () => {
  it('a hold counts against the budget until released; charges and other holds must fit around it', async () => {
    const { tenantId } = await insertTenant(t.db, roleId);
    const userId = await insertUser(t.db, tenantId, roleId, '1');
    const hold = await asGateway(t.db, tenantId, (tx) => reserveBudget(tx, { userId, amount: '0.50' }));
    expect(hold).toMatchObject({ userId, amount: '0.5', status: 'held', usageId: null });
    expect(hold.expiresAt.getTime() - hold.createdAt.getTime()).toBe(600_000);
    expect(await asGateway(t.db, tenantId, (tx) => getUserBudget(tx, { userId }))).toMatchObject({ spent: '0', held: '0.5', remaining: '0.5' });
    await expect(asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId, 6)))).rejects.toMatchObject({ name: 'BudgetExceededError', limit: 'user', remaining: '0.5' });
    await expect(asGateway(t.db, tenantId, (tx) => reserveBudget(tx, { userId, amount: '0.6' }))).rejects.toMatchObject({ name: 'BudgetExceededError', limit: 'user', remaining: '0.5', cost: '0.6' });
    await asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId, 5)));
    const released = await asGateway(t.db, tenantId, (tx) => releaseReservation(tx, { reservationId: hold.id }));
    expect(released).toMatchObject({ id: hold.id, status: 'released' });
    expect(await asGateway(t.db, tenantId, (tx) => getUserBudget(tx, { userId }))).toMatchObject({ spent: '0.5', held: '0', remaining: '0.5' });
    // Releasing again changes nothing.
    expect(await asGateway(t.db, tenantId, (tx) => releaseReservation(tx, { reservationId: hold.id }))).toMatchObject({ status: 'released' });
    await expect(asGateway(t.db, tenantId, (tx) => releaseReservation(tx, { reservationId: randomUUID() }))).rejects.toBeInstanceOf(NotFoundError);
  });

  it('settleUsage charges the real cost: a smaller one releases the difference; a settled hold cannot be settled again', async () => {
    const { tenantId } = await insertTenant(t.db, roleId);
    const userId = await insertUser(t.db, tenantId, roleId, '1');
    const hold = await asGateway(t.db, tenantId, (tx) => reserveBudget(tx, { userId, amount: '0.5' }));
    const { userId: _u, ...call } = dimes(userId, 1);
    const usage = await asGateway(t.db, tenantId, (tx) => settleUsage(tx, { reservationId: hold.id, ...call }));
    expect(usage).toMatchObject({ userId, cost: '0.1' });
    expect(await asGateway(t.db, tenantId, (tx) => getUserBudget(tx, { userId }))).toMatchObject({ spent: '0.1', held: '0', remaining: '0.9' });
    const settled = await t.db.selectFrom('budgetHolds').select(['status', 'usageId']).where('id', '=', hold.id).executeTakeFirstOrThrow();
    expect(settled).toEqual({ status: 'settled', usageId: usage.id });
    await expect(asGateway(t.db, tenantId, (tx) => settleUsage(tx, { reservationId: hold.id, ...call }))).rejects.toMatchObject({ name: 'ValidationError', field: 'reservationId' });
    await expect(asGateway(t.db, tenantId, (tx) => settleUsage(tx, { reservationId: randomUUID(), ...call }))).rejects.toBeInstanceOf(NotFoundError);
  });

  it('the overspend bound: settles above their holds overspend the window by exactly the sum of (cost − hold), no more', async () => {
    const { tenantId } = await insertTenant(t.db, roleId);
    const userId = await insertUser(t.db, tenantId, roleId, '1');
    const first = await asGateway(t.db, tenantId, (tx) => reserveBudget(tx, { userId, amount: '0.5' }));
    const second = await asGateway(t.db, tenantId, (tx) => reserveBudget(tx, { userId, amount: '0.5' }));
    await expect(asGateway(t.db, tenantId, (tx) => reserveBudget(tx, { userId, amount: '0.01' }))).rejects.toMatchObject({ limit: 'user', remaining: '0' });
    const { userId: _u, ...call } = dimes(userId, 8);
    await asGateway(t.db, tenantId, (tx) => settleUsage(tx, { reservationId: first.id, ...call })); // 0.8 on a hold of 0.5
    // The other hold is still covered; nothing else fits.
    await expect(asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId)))).rejects.toMatchObject({ limit: 'user', remaining: '0' });
    await asGateway(t.db, tenantId, (tx) => settleUsage(tx, { reservationId: second.id, ...dimes(userId, 5), userId: undefined } as never));
    const { total } = await t.db.selectFrom('usage').select(sql<string>`trim_scale(sum(cost))::text`.as('total')).where('userId', '=', userId).executeTakeFirstOrThrow();
    expect(total).toBe('1.3'); // budget 1 + (0.8 − 0.5)
    expect(await asGateway(t.db, tenantId, (tx) => getUserBudget(tx, { userId }))).toMatchObject({ held: '0', remaining: '0' });
    await expect(asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId)))).rejects.toBeInstanceOf(BudgetExceededError);
  });

  it('an expired hold frees itself: no call needed, it no longer counts (and can still be released)', async () => {
    const { tenantId } = await insertTenant(t.db, roleId);
    const userId = await insertUser(t.db, tenantId, roleId, '1');
    await asGateway(t.db, tenantId, (tx) => reserveBudget(tx, { userId, amount: '1', ttlSeconds: 1 }));
    await expect(asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId)))).rejects.toMatchObject({ limit: 'user', remaining: '0' });
    await new Promise((r) => setTimeout(r, 1100));
    expect(await asGateway(t.db, tenantId, (tx) => getUserBudget(tx, { userId }))).toMatchObject({ held: '0', remaining: '1' });
    await asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId)));
    const [hold] = await t.db.selectFrom('budgetHolds').select('id').where('userId', '=', userId).execute();
    expect(await asGateway(t.db, tenantId, (tx) => releaseReservation(tx, { reservationId: hold!.id }))).toMatchObject({ status: 'released' });
  });

  it("holds count against the tenant's cap too", async () => {
    const { tenantId } = await insertTenant(t.db, roleId);
    const userId = await insertUser(t.db, tenantId, roleId, null);
    await asServer(t.db, tenantId, (tx) => updateTenant(tx, { settings: { maxMonthlySpend: '0.5' } }));
    await asGateway(t.db, tenantId, (tx) => reserveBudget(tx, { userId, amount: '0.4' }));
    await expect(asGateway(t.db, tenantId, (tx) => reserveBudget(tx, { userId, amount: '0.2' }))).rejects.toMatchObject({ limit: 'tenant', remaining: '0.1' });
    await expect(asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId, 2)))).rejects.toMatchObject({ limit: 'tenant', remaining: '0.1' });
    expect(await asServer(t.db, tenantId, (tx) => getTenantSpend(tx))).toMatchObject({ spent: '0', held: '0.4', remaining: '0.1' });
  });

  it('validates its parameters; an unknown or disabled user is refused', async () => {
    const { tenantId, userId } = await insertTenant(t.db, roleId);
    for (const bad of [{ amount: '0' }, { amount: '-1' }, { amount: 'abc' }]) {
      await expect(asGateway(t.db, tenantId, (tx) => reserveBudget(tx, { userId, ...bad }))).rejects.toMatchObject({ name: 'ValidationError', field: 'amount' });
    }
    await expect(asGateway(t.db, tenantId, (tx) => reserveBudget(tx, { userId, amount: '1', ttlSeconds: 86_401 }))).rejects.toBeInstanceOf(ValidationError);
    await expect(asGateway(t.db, tenantId, (tx) => reserveBudget(tx, { userId: randomUUID(), amount: '1' }))).rejects.toMatchObject({ name: 'NotFoundError', entity: 'user' });
    await t.db.updateTable('users').set({ status: 'disabled' }).where('id', '=', userId).execute();
    await expect(asGateway(t.db, tenantId, (tx) => reserveBudget(tx, { userId, amount: '1' }))).rejects.toMatchObject({ name: 'UserDisabledError' });
  });

  it('100 concurrent reservations against a budget worth 10: exactly 10 admitted, held exactly the budget', async () => {
    const { tenantId } = await insertTenant(t.db, roleId);
    const userId = await insertUser(t.db, tenantId, roleId, '1');
    const pool = onServer ? t.open(8) : t.db;
    try {
      const results = await Promise.allSettled(
        Array.from({ length: 100 }, () => asGateway(pool, tenantId, (tx) => reserveBudget(tx, { userId, amount: '0.1' }))),
      );
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(10);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ name: 'BudgetExceededError', limit: 'user', remaining: '0' });
      expect(await asGateway(t.db, tenantId, (tx) => getUserBudget(tx, { userId }))).toMatchObject({ held: '1', remaining: '0' });
    } finally {
      if (pool !== t.db) await pool.destroy();
    }
  });
});

describe('listUsage', () => {
  it('pages the spend log newest first, filtered by user, model, agent and time range', async () => {
    const { tenantId } = await insertTenant(t.db, roleId);
    const ada = await insertUser(t.db, tenantId, roleId, null);
    const bob = await insertUser(t.db, tenantId, roleId, null);
    const other = await insertModel(t.db, { input: '1' });
    const base = Date.UTC(2026, 0, 1);
    await insertUsageRows(
      t.db,
      Array.from({ length: 7 }, (_, i) => ({
        tenantId, userId: i % 2 === 0 ? ada : bob, modelId: i < 5 ? dime : other, type: 'chat', inputTokens: i, outputTokens: 0,
        cost: '0.10', createdAt: new Date(base + i * 60_000),
      })),
    );
    const all: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await asServer(t.db, tenantId, (tx) => listUsage(tx, { limit: 3, cursor }));
      all.push(...page.items.map((u) => String(u.inputTokens)));
      expect(page.items.every((u) => u.cost === '0.1')).toBe(true);
      cursor = page.nextCursor;
    } while (cursor !== null);
    expect(all).toEqual(['6', '5', '4', '3', '2', '1', '0']);
    const adas = await asServer(t.db, tenantId, (tx) => listUsage(tx, { userId: ada }));
    expect(adas.items.map((u) => u.inputTokens)).toEqual([6, 4, 2, 0]);
    const ranged = await asServer(t.db, tenantId, (tx) => listUsage(tx, { modelId: dime, from: new Date(base + 60_000), to: new Date(base + 4 * 60_000) }));
    expect(ranged.items.map((u) => u.inputTokens)).toEqual([3, 2, 1]);
    const first = await asServer(t.db, tenantId, (tx) => listUsage(tx, { limit: 1 }));
    await expect(asServer(t.db, tenantId, (tx) => listUsage(tx, { userId: ada, cursor: first.nextCursor }))).rejects.toMatchObject({ name: 'ValidationError', field: 'cursor' });
    // Another tenant sees none of it.
    const stranger = await insertTenant(t.db, roleId);
    expect((await asServer(t.db, stranger.tenantId, (tx) => listUsage(tx, { userId: ada }))).items).toEqual([]);
  });
});

describe('budget alerts', () => {
  it('a charge crossing 80 % records a warning, one reaching 100 % a critical alert, each once per window; resolve and filter them', async () => {
    const { tenantId } = await insertTenant(t.db, roleId);
    const userId = await insertUser(t.db, tenantId, roleId, '1');
    await asServer(t.db, tenantId, (tx) => setBudget(tx, { userId, budget: '1', period: 'day' }));
    await asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId, 7)));
    expect((await asServer(t.db, tenantId, (tx) => listBudgetAlerts(tx))).items).toEqual([]);
    const crossing = await asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId, 2))); // 0.9: past 80 %
    await asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId, 0))); // nothing spent: nothing crossed
    const reaching = await asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId, 1))); // exactly 100 %
    const today = utcDay(new Date());
    const page = await asServer(t.db, tenantId, (tx) => listBudgetAlerts(tx, { status: 'open' }));
    expect(page.items).toEqual([
      expect.objectContaining({ scope: 'user', userId, windowStart: today, threshold: 100, severity: 'critical', budget: '1', spent: '1', usageId: reaching.id, resolvedAt: null }),
      expect.objectContaining({ scope: 'user', userId, windowStart: today, threshold: 80, severity: 'warning', budget: '1', spent: '0.9', usageId: crossing.id, resolvedAt: null }),
    ]);
    const resolved = await asServer(t.db, tenantId, (tx) => resolveBudgetAlert(tx, { alertId: page.items[1]!.id }));
    expect(resolved.resolvedAt).toBeInstanceOf(Date);
    expect((await asServer(t.db, tenantId, (tx) => listBudgetAlerts(tx, { status: 'open' }))).items.map((a) => a.threshold)).toEqual([100]);
    expect((await asServer(t.db, tenantId, (tx) => listBudgetAlerts(tx, { status: 'resolved' }))).items.map((a) => a.threshold)).toEqual([80]);
    // The next window crosses again: a new alert for it (yesterday's window, as the owner, stands for the closed one).
    await t.db.updateTable('users').set({ budgetWindowStart: new Date(today.getTime() - 86_400_000) }).where('id', '=', userId).execute();
    await t.db.updateTable('budgetAlerts').set({ windowStart: new Date(today.getTime() - 86_400_000) }).where('userId', '=', userId).execute();
    await asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId, 9)));
    const all = await asServer(t.db, tenantId, (tx) => listBudgetAlerts(tx, { userId, limit: 2 }));
    expect(all.items.map((a) => [a.threshold, a.windowStart])).toEqual([[80, today], [100, new Date(today.getTime() - 86_400_000)]]);
    await expect(asServer(t.db, tenantId, (tx) => resolveBudgetAlert(tx, { alertId: randomUUID() }))).rejects.toBeInstanceOf(NotFoundError);
    const stranger = await insertTenant(t.db, roleId);
    await expect(asServer(t.db, stranger.tenantId, (tx) => resolveBudgetAlert(tx, { alertId: page.items[0]!.id }))).rejects.toBeInstanceOf(NotFoundError);
  });

  it("the tenant's cap alerts at its own thresholds (budgetAlertThresholds); a refused charge records none", async () => {
    const { tenantId } = await insertTenant(t.db, roleId);
    const userId = await insertUser(t.db, tenantId, roleId, null);
    await asServer(t.db, tenantId, (tx) => updateTenant(tx, { settings: { maxMonthlySpend: '1', budgetAlertThresholds: [100, 50] } }));
    await asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId, 6)));
    await expect(asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId, 5)))).rejects.toMatchObject({ limit: 'tenant' });
    await asGateway(t.db, tenantId, (tx) => recordUsage(tx, dimes(userId, 4)));
    const alerts = (await asServer(t.db, tenantId, (tx) => listBudgetAlerts(tx, { scope: 'tenant' }))).items;
    expect(alerts.map((a) => [a.threshold, a.severity, a.userId, a.spent, a.budget])).toEqual([[100, 'critical', null, '1', '1'], [50, 'warning', null, '0.6', '1']]);
    await expect(asServer(t.db, tenantId, (tx) => updateTenant(tx, { settings: { budgetAlertThresholds: [0] } }))).rejects.toMatchObject({ name: 'ValidationError', field: 'settings.budgetAlertThresholds[0]' });
    const raw = await asServer(t.db, tenantId, (tx) => sql`update tenants set settings = settings || '{"budgetAlertThresholds": [80.5]}'`.execute(tx)).catch((e: { code?: string }) => e);
    expect((raw as { code?: string }).code).toBe('23514');
  });

  it.runIf(onServer)('a service LISTENing on budget_alerts is notified at commit, with the tenant and the alert', async () => {
    const { tenantId } = await insertTenant(t.db, roleId);
    const userId = await insertUser(t.db, tenantId, roleId, '1');
    const pg = await import('pg');
    const listener = new pg.default.Client({ connectionString: t.url });
    await listener.connect();
    try {
      const received: string[] = [];
      listener.on('notification', (n) => received.push(n.payload ?? ''));
      await listener.query('listen budget_alerts');
      await asGateway(t.db, tenantId, async (tx) => {
        await recordUsage(tx, dimes(userId, 8));
        await new Promise((r) => setTimeout(r, 100));
        expect(received).toEqual([]); // not before commit
      });
      for (let i = 0; i < 100 && received.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      const [alert] = (await asServer(t.db, tenantId, (tx) => listBudgetAlerts(tx))).items;
      expect(received.map((p) => JSON.parse(p))).toEqual([{ tenantId, alertId: alert!.id }]);
    } finally {
      await listener.end();
    }
  });

  it.runIf(onServer)('concurrent charges crossing one threshold record it once', async () => {
    const { tenantId } = await insertTenant(t.db, roleId);
    const userId = await insertUser(t.db, tenantId, roleId, '1');
    const pool = t.open(8);
    try {
      await Promise.allSettled(Array.from({ length: 20 }, () => asGateway(pool, tenantId, (tx) => recordUsage(tx, dimes(userId)))));
    } finally {
      await pool.destroy();
    }
    const alerts = (await asServer(t.db, tenantId, (tx) => listBudgetAlerts(tx))).items;
    // Newest first by the charge's instant (its transaction's start), which need not be the order they committed in.
    expect(alerts.map((a) => [a.threshold, a.spent]).sort((x, y) => Number(x[0]) - Number(y[0]))).toEqual([[80, '0.8'], [100, '1']]);
  });
});
