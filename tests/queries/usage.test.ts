import { randomUUID } from 'node:crypto';
import { CompiledQuery, sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BudgetExceededError, NotFoundError, TenantContextError, ValidationError } from '../../src/db/errors.ts';
import type { TenantTx } from '../../src/db/tenant-tx.ts';
import type { DB } from '../../src/db/schema.generated.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { costSummary, recordUsage, type CostSummaryRow, type RecordUsageParams } from '../../src/queries/usage.ts';
import { getUserBudget } from '../../src/queries/budgets.ts';
import { insertAgentsOfEveryKind } from '../support/agent-fixtures.ts';
import { insertCatalog, insertTenant } from '../support/fixtures.ts';
import { holdTx, waitUntilBlocked } from '../support/hold-tx.ts';
import { QueryRecorder } from '../support/query-recorder.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';
import { insertModel, insertUsageRows, insertUser, remainingOf, usageOf } from '../support/usage-fixtures.ts';

let t: TestDb;
let roleId: number;
/** 0.003 input / 0.015 output per 1k tokens (insertCatalog's model). */
let model: number;
/** 0.1 per 1k input tokens: 1000 input tokens cost exactly 0.1. */
let dime: number;
/** Cache prices only. */
let cached: number;
let a: { tenantId: string; userId: string };
let b: { tenantId: string; userId: string };

beforeAll(async () => {
  t = await openTestDb();
  ({ roleId, modelId: model } = await insertCatalog(t.db));
  dime = await insertModel(t.db, { input: '0.1' });
  cached = await insertModel(t.db, { input: '0.003', cacheRead: '0.0003', cacheWrite: '0.00375' });
  a = await insertTenant(t.db, roleId);
  b = await insertTenant(t.db, roleId);
});
afterAll(() => t?.close());

/** A global agent and a message of tenant a's first user, for a charge to name. */
async function agentAndMessage(name: string): Promise<{ agentId: string; messageId: string }> {
  const agent = await t.db.insertInto('agents').values({ tenantId: null, modelId: model, name }).returning('id').executeTakeFirstOrThrow();
  const conversation = await t.db
    .insertInto('conversations')
    .values({ tenantId: a.tenantId, userId: a.userId, title: name })
    .returning('id')
    .executeTakeFirstOrThrow();
  const message = await t.db
    .insertInto('messages')
    .values({ tenantId: a.tenantId, conversationId: conversation.id, role: 'assistant', content: JSON.stringify({ text: 'hi' }) })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { agentId: agent.id, messageId: message.id };
}

/** One charge of exactly 0.1 on the `dime` model. */
function dimeCall(userId: string, extra: Partial<RecordUsageParams> = {}): RecordUsageParams {
  return { userId, modelId: dime, type: 'chat', inputTokens: 1000, outputTokens: 0, ...extra };
}

describe('recordUsage', () => {
  it('charges the exact cost computed in SQL from the model prices and returns the row', async () => {
    // 1234 × 0.003 / 1000 + 567 × 0.015 / 1000 = 0.003702 + 0.008505
    const userId = await insertUser(t.db, a.tenantId, roleId, '1');
    const usage = await withTenant(t.db, a.tenantId, (tx) =>
      recordUsage(tx, { userId, modelId: model, type: 'chat', inputTokens: 1234, outputTokens: 567 }),
    );
    expect(usage).toEqual({
      id: expect.any(String),
      userId,
      modelId: model,
      agentId: null,
      messageId: null,
      type: 'chat',
      inputTokens: 1234,
      outputTokens: 567,
      cacheReadTokens: 0,
      cacheWriteTokens: 0,
      cost: '0.012207',
      idempotencyKey: null,
      createdAt: expect.any(Date),
    });
    expect(await remainingOf(t.db, userId)).toBe('0.987793');
    expect(await usageOf(t.db, userId)).toEqual([
      { id: usage.id, cost: '0.012207', idempotencyKey: null, inputTokens: 1234, outputTokens: 567 },
    ]);
    await expect(withTenant(t.db, a.tenantId, (tx) => getUserBudget(tx, { userId }))).resolves.toMatchObject({
      budget: '1',
      remaining: '0.987793',
    });
  });

  it('prices cache reads and writes, and keeps tiny costs exact', async () => {
    const userId = await insertUser(t.db, a.tenantId, roleId, null);
    const usage = await withTenant(t.db, a.tenantId, async (tx) => [
      await recordUsage(tx, { userId, modelId: cached, type: 'chat', inputTokens: 1, outputTokens: 0, cacheReadTokens: 10_000, cacheWriteTokens: 2_000 }),
      await recordUsage(tx, { userId, modelId: cached, type: 'chat', inputTokens: 1, outputTokens: 0 }),
      await recordUsage(tx, { userId, modelId: cached, type: 'chat', inputTokens: 0, outputTokens: 0 }),
    ]);
    // 1 × 0.003/1000 + 10000 × 0.0003/1000 + 2000 × 0.00375/1000
    expect(usage.map((u) => u.cost)).toEqual(['0.010503', '0.000003', '0']);
    expect(usage[0]).toMatchObject({ cacheReadTokens: 10_000, cacheWriteTokens: 2_000 });
  });

  it('10 charges of 0.1 from a budget of 1.0 leave exactly 0; the 11th throws BudgetExceededError and writes nothing', async () => {
    const userId = await insertUser(t.db, a.tenantId, roleId, '1.0');
    for (let i = 0; i < 10; i++) {
      const usage = await withTenant(t.db, a.tenantId, (tx) => recordUsage(tx, dimeCall(userId)));
      expect(usage.cost).toBe('0.1');
    }
    const eleventh = withTenant(t.db, a.tenantId, (tx) => recordUsage(tx, dimeCall(userId, { idempotencyKey: 'eleventh' })));
    await expect(eleventh).rejects.toBeInstanceOf(BudgetExceededError);
    await expect(eleventh).rejects.toMatchObject({ name: 'BudgetExceededError', userId, cost: '0.1', remaining: '0' });
    const { rows } = await sql<{ remaining: string; exactlyZero: boolean }>`
      select remaining::text, remaining = 0 as exactly_zero from users where id = ${userId}`.execute(t.db);
    expect(rows[0]).toEqual({ remaining: '0.0', exactlyZero: true });
    const usage = await usageOf(t.db, userId);
    expect(usage).toHaveLength(10);
    expect(usage.every((u) => u.idempotencyKey === null)).toBe(true);
    await expect(withTenant(t.db, a.tenantId, (tx) => getUserBudget(tx, { userId }))).resolves.toMatchObject({ budget: '1', remaining: '0' });
  });

  it('leaves no usage row when the caller catches BudgetExceededError and commits the same transaction', async () => {
    const userId = await insertUser(t.db, a.tenantId, roleId, '0.15');
    const caught = await withTenant(t.db, a.tenantId, async (tx) => {
      await recordUsage(tx, dimeCall(userId));
      const error = await recordUsage(tx, dimeCall(userId, { idempotencyKey: 'caught' })).catch((e: unknown) => e);
      // The transaction is still usable after the refusal.
      await recordUsage(tx, { ...dimeCall(userId), inputTokens: 500 });
      return error;
    });
    expect(caught).toBeInstanceOf(BudgetExceededError);
    expect(caught).toMatchObject({ cost: '0.1', remaining: '0.05' });
    // One transaction, one now(): the rows' order is not defined.
    expect((await usageOf(t.db, userId)).map((u) => u.cost).sort()).toEqual(['0.05', '0.1']);
    expect(await remainingOf(t.db, userId)).toBe('0.00');
  });

  it('charges a user without a budget (NULL) without limit and leaves remaining NULL', async () => {
    const userId = await insertUser(t.db, a.tenantId, roleId, null);
    await withTenant(t.db, a.tenantId, async (tx) => {
      for (let i = 0; i < 25; i++) await recordUsage(tx, dimeCall(userId));
    });
    expect(await remainingOf(t.db, userId)).toBeNull();
    const { rows } = await sql<{ total: string; n: number }>`
      select sum(cost)::text as total, count(*)::int as n from usage where user_id = ${userId}`.execute(t.db);
    expect(rows[0]).toEqual({ total: '2.5', n: 25 });
    await expect(withTenant(t.db, a.tenantId, (tx) => getUserBudget(tx, { userId }))).resolves.toMatchObject({ budget: null, remaining: null });
  });

  it('records a zero-cost call against an exhausted budget', async () => {
    const userId = await insertUser(t.db, a.tenantId, roleId, '0');
    const usage = await withTenant(t.db, a.tenantId, (tx) => recordUsage(tx, { ...dimeCall(userId), inputTokens: 0 }));
    expect(usage.cost).toBe('0');
    await expect(withTenant(t.db, a.tenantId, (tx) => recordUsage(tx, { ...dimeCall(userId), inputTokens: 1 }))).rejects.toMatchObject({
      name: 'BudgetExceededError',
      cost: '0.0001',
      remaining: '0',
    });
  });

  it('links the agent (global or own) and the message of the call', async () => {
    const { agentId, messageId } = await agentAndMessage('Global helper');
    const usage = await withTenant(t.db, a.tenantId, (tx) => recordUsage(tx, { ...dimeCall(a.userId), agentId, messageId, type: 'title' }));
    expect(usage).toMatchObject({ agentId, messageId, type: 'title', cost: '0.1' });
  });

  it('returns the row as stored, also when the ids were given in upper case', async () => {
    // The statement sends back only what the server decides (id, cost, instant); the rest comes
    // from the call, and must be what a read of the row gives.
    const { agentId, messageId } = await agentAndMessage('Upper-case helper');
    const usage = await withTenant(t.db, a.tenantId, (tx) =>
      recordUsage(tx, {
        userId: a.userId.toUpperCase(),
        modelId: cached,
        agentId: agentId.toUpperCase(),
        messageId: messageId.toUpperCase(),
        type: 'tool: ünïcode ✓',
        inputTokens: 7,
        outputTokens: 11,
        cacheReadTokens: 13,
        cacheWriteTokens: 17,
        idempotencyKey: `upper-${randomUUID()}`,
      }),
    );
    const stored = await t.db
      .selectFrom('usage')
      .select(['id', 'userId', 'modelId', 'agentId', 'messageId', 'type', 'inputTokens', 'outputTokens', 'cacheReadTokens', 'cacheWriteTokens', 'idempotencyKey', 'createdAt'])
      .select(sql<string>`trim_scale(cost)::text`.as('cost'))
      .where('id', '=', usage.id)
      .executeTakeFirstOrThrow();
    expect(usage).toEqual(stored);
    expect(usage.userId).toBe(a.userId.toLowerCase());
  });

  it("charges only for an agent the user may use (global, tenant-wide, own, shared); another user's private agent is refused as an unknown one, nothing charged", async () => {
    const userId = await insertUser(t.db, a.tenantId, roleId, '10');
    const otherUserId = await insertUser(t.db, a.tenantId, roleId, null);
    const globalAgentId = (await t.db.insertInto('agents').values({ tenantId: null, modelId: model, name: 'Global' }).returning('id').executeTakeFirstOrThrow()).id;
    const kinds = await insertAgentsOfEveryKind(t.db, { modelId: model, globalAgentId, tenantId: a.tenantId, userId, otherUserId, otherTenantId: b.tenantId });
    // As the gateway, the service that charges: its grants (agents, user_agents columns) are enough.
    const asGateway = <T>(fn: (tx: TenantTx) => Promise<T>) => withTenant(t.db, a.tenantId, fn, { role: 'app_gateway' });
    for (const [kind, agentId] of Object.entries(kinds.unusable)) {
      const error = await asGateway((tx) => recordUsage(tx, dimeCall(userId, { agentId, idempotencyKey: `unusable-${kind}` }))).catch((e: unknown) => e);
      expect({ kind, error }).toEqual({ kind, error: new NotFoundError('agent', agentId) });
    }
    expect(await usageOf(t.db, userId)).toEqual([]);
    expect(await remainingOf(t.db, userId)).toBe('10');
    for (const [kind, agentId] of Object.entries(kinds.usable)) {
      const usage = await asGateway((tx) => recordUsage(tx, dimeCall(userId, { agentId })));
      expect({ kind, agentId: usage.agentId, cost: usage.cost }).toEqual({ kind, agentId, cost: '0.1' });
    }
    expect(await usageOf(t.db, userId)).toHaveLength(4);
    expect(await remainingOf(t.db, userId)).toBe('9.6');
    // The private agent's owner is charged for it.
    expect((await asGateway((tx) => recordUsage(tx, dimeCall(otherUserId, { agentId: kinds.unusable.othersPrivate })))).agentId).toBe(kinds.unusable.othersPrivate);
  });

  it('refuses bad parameters with a ValidationError before any SQL', async () => {
    const spy = new QueryRecorder();
    const spied = t.db.withPlugin(spy);
    const userId = a.userId;
    const bad: [string, Partial<RecordUsageParams> & Record<string, unknown>][] = [
      ['inputTokens', { inputTokens: -1 }],
      ['outputTokens', { outputTokens: 1.5 }],
      ['inputTokens', { inputTokens: Number.NaN }],
      ['inputTokens', { inputTokens: '12' as unknown as number }],
      ['cacheReadTokens', { cacheReadTokens: -5 }],
      ['cacheWriteTokens', { cacheWriteTokens: 2 ** 31 }],
      ['outputTokens', { outputTokens: Number.MAX_SAFE_INTEGER + 1 }],
      ['userId', { userId: 'not-a-uuid' }],
      ['userId', { userId: "x'; drop table usage; --" }],
      ['agentId', { agentId: '123' }],
      ['messageId', { messageId: 'nope' }],
      ['modelId', { modelId: 0 }],
      ['modelId', { modelId: 1.5 }],
      ['type', { type: '   ' }],
      ['type', { type: undefined as unknown as string }],
      ['idempotencyKey', { idempotencyKey: '' }],
      ['idempotencyKey', { idempotencyKey: 'k'.repeat(201) }],
    ];
    await withTenant(spied, a.tenantId, async (tx) => {
      const before = spy.queries.length;
      for (const [field, change] of bad) {
        const attempt = recordUsage(tx, { ...dimeCall(userId), ...change });
        await expect(attempt, field).rejects.toBeInstanceOf(ValidationError);
        await expect(attempt, field).rejects.toMatchObject({ field });
      }
      for (const [field, params] of [
        ['from', { from: new Date('nope'), to: new Date(), groupBy: 'day' }],
        ['to', { from: new Date('2025-02-01'), to: new Date('2025-01-01'), groupBy: 'day' }],
        ['groupBy', { from: new Date(0), to: new Date(), groupBy: 'year' }],
        ['by', { from: new Date(0), to: new Date(), groupBy: 'day', by: 'tenant' }],
      ] as const) {
        await expect(costSummary(tx, params as never), field).rejects.toMatchObject({ name: 'ValidationError', field });
      }
      await expect(getUserBudget(tx, { userId: '42' })).rejects.toMatchObject({ name: 'ValidationError', field: 'userId' });
      expect(spy.queries.length).toBe(before);
    });
  });

  it('with a repeated idempotency key returns the first row and charges once', async () => {
    const userId = await insertUser(t.db, a.tenantId, roleId, '0.25');
    const key = `req-${randomUUID()}`;
    const first = await withTenant(t.db, a.tenantId, (tx) => recordUsage(tx, dimeCall(userId, { idempotencyKey: key })));
    const again = await withTenant(t.db, a.tenantId, (tx) => recordUsage(tx, dimeCall(userId, { idempotencyKey: key })));
    const inOneTx = await withTenant(t.db, a.tenantId, async (tx) => [
      await recordUsage(tx, dimeCall(userId, { idempotencyKey: key })),
      await recordUsage(tx, dimeCall(userId, { idempotencyKey: key })),
    ]);
    expect(again).toEqual(first);
    expect(inOneTx).toEqual([first, first]);
    expect(await remainingOf(t.db, userId)).toBe('0.15');
    // Once the budget no longer covers the cost, a repeat still answers with the first row.
    await withTenant(t.db, a.tenantId, (tx) => recordUsage(tx, dimeCall(userId)));
    expect(await remainingOf(t.db, userId)).toBe('0.05');
    await expect(withTenant(t.db, a.tenantId, (tx) => recordUsage(tx, dimeCall(userId, { idempotencyKey: key })))).resolves.toEqual(first);
    expect(await remainingOf(t.db, userId)).toBe('0.05');
    expect((await usageOf(t.db, userId)).map((u) => u.idempotencyKey)).toEqual([key, null]);
  });

  it('returns costs as decimal text without trailing zeros, also a repeat that reads a row stored with them', async () => {
    const userId = await insertUser(t.db, a.tenantId, roleId, '5.000');
    const trailing = await insertModel(t.db, { input: '0.1000', output: '0.20' });
    const usage = await withTenant(t.db, a.tenantId, (tx) => recordUsage(tx, { userId, modelId: trailing, type: 'chat', inputTokens: 1000, outputTokens: 500 }));
    expect(usage.cost).toBe('0.2');
    // A row written by another path (as the owner) with trailing zeros: the repeat reads it.
    const key = `stored-${randomUUID()}`;
    await insertUsageRows(t.db, [{ tenantId: a.tenantId, userId, modelId: dime, type: 'chat', cost: '0.1000', idempotencyKey: key, inputTokens: 1000, outputTokens: 0 }]);
    const repeat = await withTenant(t.db, a.tenantId, (tx) => recordUsage(tx, dimeCall(userId, { idempotencyKey: key })));
    expect(repeat).toMatchObject({ cost: '0.1', idempotencyKey: key });
    await expect(withTenant(t.db, a.tenantId, (tx) => getUserBudget(tx, { userId }))).resolves.toMatchObject({ budget: '5', remaining: '4.8' });
    await expect(withTenant(t.db, a.tenantId, (tx) => recordUsage(tx, { userId, modelId: trailing, type: 'chat', inputTokens: 50_000, outputTokens: 0 }))).rejects.toMatchObject({
      name: 'BudgetExceededError', cost: '5', remaining: '4.8',
    });
  });

  it('an idempotency key is per tenant: the same key in another tenant is another charge', async () => {
    const key = `shared-${randomUUID()}`;
    const inA = await withTenant(t.db, a.tenantId, (tx) => recordUsage(tx, dimeCall(a.userId, { idempotencyKey: key })));
    const inB = await withTenant(t.db, b.tenantId, (tx) => recordUsage(tx, dimeCall(b.userId, { idempotencyKey: key })));
    expect(inB.id).not.toBe(inA.id);
    expect(inB.userId).toBe(b.userId);
  });

  it("treats another tenant's user, agent or message as missing, and an unknown model as missing; nothing changes", async () => {
    const victim = await insertUser(t.db, b.tenantId, roleId, '5');
    const bAgent = await t.db.insertInto('agents').values({ tenantId: b.tenantId, modelId: model, name: 'B agent' }).returning('id').executeTakeFirstOrThrow();
    const bConversation = await t.db
      .insertInto('conversations')
      .values({ tenantId: b.tenantId, userId: victim, title: 'B' })
      .returning('id')
      .executeTakeFirstOrThrow();
    const bMessage = await t.db
      .insertInto('messages')
      .values({ tenantId: b.tenantId, conversationId: bConversation.id, role: 'user', content: JSON.stringify({ text: 'b' }) })
      .returning('id')
      .executeTakeFirstOrThrow();
    const countUsage = async () => (await sql<{ n: number }>`select count(*)::int as n from usage`.execute(t.db)).rows[0]?.n;
    const before = await countUsage();
    const aRemaining = await remainingOf(t.db, a.userId);

    const asA = <T>(fn: (tx: TenantTx) => Promise<T>) => withTenant(t.db, a.tenantId, fn);
    await expect(asA((tx) => recordUsage(tx, dimeCall(victim)))).rejects.toMatchObject({ name: 'NotFoundError', entity: 'user', id: victim });
    await expect(asA((tx) => recordUsage(tx, dimeCall(randomUUID())))).rejects.toBeInstanceOf(NotFoundError);
    await expect(asA((tx) => recordUsage(tx, { ...dimeCall(a.userId), modelId: 2_000_000_000 }))).rejects.toMatchObject({
      name: 'NotFoundError',
      entity: 'model',
      id: '2000000000',
    });
    await expect(asA((tx) => recordUsage(tx, dimeCall(a.userId, { agentId: bAgent.id })))).rejects.toMatchObject({ entity: 'agent', id: bAgent.id });
    await expect(asA((tx) => recordUsage(tx, dimeCall(a.userId, { messageId: bMessage.id })))).rejects.toMatchObject({ entity: 'message', id: bMessage.id });
    await expect(asA((tx) => getUserBudget(tx, { userId: victim }))).rejects.toMatchObject({ name: 'NotFoundError', entity: 'user', id: victim });

    expect(await countUsage()).toBe(before);
    expect(await remainingOf(t.db, victim)).toBe('5');
    expect(await remainingOf(t.db, a.userId)).toBe(aRemaining);
  });

  it('outside withTenant throws TenantContextError', async () => {
    // @ts-expect-error a plain Transaction is not a TenantTx (and throws TenantContextError at run time)
    await expect(t.db.transaction().execute((tx) => recordUsage(tx, dimeCall(a.userId)))).rejects.toBeInstanceOf(TenantContextError);
    // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
    await expect(costSummary(t.db, { from: new Date(0), to: new Date(), groupBy: 'day' })).rejects.toBeInstanceOf(TenantContextError);
    // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
    await expect(getUserBudget(t.db, { userId: a.userId })).rejects.toBeInstanceOf(TenantContextError);
  });
});

describe('concurrent charges', () => {
  /** The server: a pool of 8 connections, so the calls really overlap. PGlite: its one connection, calls serialize. */
  let pool: Kysely<DB>;
  beforeAll(() => {
    pool = onServer ? t.open(8) : t.db;
  });

  it('100 concurrent charges against a budget worth 10: exactly 10 succeed, 90 are refused, remaining ends at exactly 0', async () => {
    const userId = await insertUser(t.db, a.tenantId, roleId, '1.0');
    const results = await Promise.allSettled(
      Array.from({ length: 100 }, () => withTenant(pool, a.tenantId, (tx) => recordUsage(tx, dimeCall(userId)))),
    );
    const succeeded = results.filter((r) => r.status === 'fulfilled');
    const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    expect(succeeded).toHaveLength(10);
    expect(refused).toHaveLength(90);
    for (const error of refused) {
      expect(error).toBeInstanceOf(BudgetExceededError);
      expect(error).toMatchObject({ userId, cost: '0.1', remaining: '0' });
    }
    const { rows } = await sql<{ remaining: string; n: number; total: string }>`
      select trim_scale(u.remaining)::text as remaining, count(g.id)::int as n, sum(g.cost)::text as total
      from users u join usage g on g.tenant_id = u.tenant_id and g.user_id = u.id
      where u.id = ${userId} group by u.remaining`.execute(t.db);
    expect(rows).toEqual([{ remaining: '0', n: 10, total: '1.0' }]);
  });

  it('20 concurrent calls with one idempotency key (budget worth one call): one row, one charge, 20 identical answers', async () => {
    const userId = await insertUser(t.db, a.tenantId, roleId, '0.1');
    const key = `race-${randomUUID()}`;
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => withTenant(pool, a.tenantId, (tx) => recordUsage(tx, dimeCall(userId, { idempotencyKey: key })))),
    );
    expect(new Set(answers.map((u) => u.id)).size).toBe(1);
    for (const answer of answers) expect(answer).toEqual(answers[0]);
    expect(await usageOf(t.db, userId)).toEqual([{ id: answers[0]?.id, cost: '0.1', idempotencyKey: key, inputTokens: 1000, outputTokens: 0 }]);
    expect(await remainingOf(t.db, userId)).toBe('0.0');
  });

  it('20 concurrent calls with one idempotency key (no budget, nothing locked): one row, 20 identical answers', async () => {
    const userId = await insertUser(t.db, a.tenantId, roleId, null);
    const key = `race-${randomUUID()}`;
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => withTenant(pool, a.tenantId, (tx) => recordUsage(tx, dimeCall(userId, { idempotencyKey: key })))),
    );
    for (const answer of answers) expect(answer).toEqual(answers[0]);
    expect(await usageOf(t.db, userId)).toEqual([{ id: answers[0]?.id, cost: '0.1', idempotencyKey: key, inputTokens: 1000, outputTokens: 0 }]);
  });

  it('a mix of 30 keyed and 30 unkeyed concurrent charges never overdraws and charges each key once', async () => {
    const userId = await insertUser(t.db, a.tenantId, roleId, '2.0');
    const keys = Array.from({ length: 10 }, (_, i) => `mix-${i}-${randomUUID()}`);
    const calls = [
      ...Array.from({ length: 30 }, (_, i) => dimeCall(userId, { idempotencyKey: keys[i % 10] })),
      ...Array.from({ length: 30 }, () => dimeCall(userId)),
    ];
    const results = await Promise.allSettled(calls.map((call) => withTenant(pool, a.tenantId, (tx) => recordUsage(tx, call))));
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(BudgetExceededError);
    const rows = await usageOf(t.db, userId);
    expect(rows).toHaveLength(20);
    const keyed = rows.filter((r) => r.idempotencyKey !== null).map((r) => r.idempotencyKey);
    expect(new Set(keyed).size).toBe(keyed.length);
    expect(await remainingOf(t.db, userId)).toBe('0.0');
    // Every successful answer is one of the stored rows.
    const ids = new Set(rows.map((r) => r.id));
    for (const r of results) if (r.status === 'fulfilled') expect(ids.has(r.value.id)).toBe(true);
  });
});

describe('lock behaviour (server only)', () => {
  let pool: Kysely<DB>;
  beforeAll(() => {
    if (onServer) pool = t.open(4);
  });

  it.runIf(onServer)('a charge waits for an uncommitted charge of the same budgeted user, then sees the remaining it left', async () => {
    const userId = await insertUser(t.db, a.tenantId, roleId, '0.1');
    const first = holdTx(pool, a.tenantId, (tx) => recordUsage(tx, dimeCall(userId)));
    await first.didWork;
    const second = holdTx(pool, a.tenantId, (tx) => recordUsage(tx, dimeCall(userId)));
    await waitUntilBlocked(t.db, await second.pid, await first.pid);
    first.commit();
    await first.done;
    await expect(second.done).rejects.toMatchObject({ name: 'BudgetExceededError', cost: '0.1', remaining: '0' });
    expect(await usageOf(t.db, userId)).toHaveLength(1);
  });

  it.runIf(onServer)('when the first charge rolls back, the waiting one gets the budget', async () => {
    const userId = await insertUser(t.db, a.tenantId, roleId, '0.1');
    const first = holdTx(pool, a.tenantId, (tx) => recordUsage(tx, dimeCall(userId)));
    await first.didWork;
    const second = holdTx(pool, a.tenantId, (tx) => recordUsage(tx, dimeCall(userId)));
    await waitUntilBlocked(t.db, await second.pid, await first.pid);
    first.rollback();
    await first.done;
    const usage = await second.didWork;
    second.commit();
    await second.done;
    expect(await usageOf(t.db, userId)).toEqual([{ id: usage.id, cost: '0.1', idempotencyKey: null, inputTokens: 1000, outputTokens: 0 }]);
    expect(await remainingOf(t.db, userId)).toBe('0.0');
  });

  it.runIf(onServer)('a repeat of an uncommitted key waits for it, then returns its row without charging', async () => {
    const userId = await insertUser(t.db, a.tenantId, roleId, '1');
    const key = `held-${randomUUID()}`;
    const first = holdTx(pool, a.tenantId, (tx) => recordUsage(tx, dimeCall(userId, { idempotencyKey: key })));
    const firstRow = await first.didWork;
    const second = holdTx(pool, a.tenantId, (tx) => recordUsage(tx, dimeCall(userId, { idempotencyKey: key })));
    await waitUntilBlocked(t.db, await second.pid, await first.pid);
    first.commit();
    second.commit();
    await first.done;
    await expect(second.done).resolves.toEqual(firstRow);
    expect(await remainingOf(t.db, userId)).toBe('0.9');
  });

  it.runIf(onServer)('for a user without a budget: no row lock (charges of other buckets overlap); a repeated key waits on the unique index', async () => {
    const userId = await insertUser(t.db, a.tenantId, roleId, null);
    const key = `held-${randomUUID()}`;
    const first = holdTx(pool, a.tenantId, (tx) => recordUsage(tx, dimeCall(userId, { idempotencyKey: key })));
    const firstRow = await first.didWork;
    // Completes while `first` is still open: nothing of the user is locked. (Another model: a
    // charge of the same UTC day, model and agent adds to the same usage_rollups bucket, and
    // waits for the first one's bucket row; see the next test.)
    const unkeyed = holdTx(pool, a.tenantId, (tx) => recordUsage(tx, { ...dimeCall(userId), modelId: model }));
    await unkeyed.didWork;
    unkeyed.commit();
    await unkeyed.done;
    const repeat = holdTx(pool, a.tenantId, (tx) => recordUsage(tx, dimeCall(userId, { idempotencyKey: key })));
    await waitUntilBlocked(t.db, await repeat.pid, await first.pid);
    first.commit();
    repeat.commit();
    await first.done;
    await expect(repeat.done).resolves.toEqual(firstRow);
    expect(await usageOf(t.db, userId)).toHaveLength(2);
  });

  it.runIf(onServer)("for a user without a budget: two charges of one usage_rollups bucket (UTC day, model, agent) take turns on the bucket's row, and both count", async () => {
    const userId = await insertUser(t.db, a.tenantId, roleId, null);
    const first = holdTx(pool, a.tenantId, (tx) => recordUsage(tx, dimeCall(userId)));
    await first.didWork;
    const second = holdTx(pool, a.tenantId, (tx) => recordUsage(tx, dimeCall(userId)));
    await waitUntilBlocked(t.db, await second.pid, await first.pid);
    first.commit();
    await first.done;
    await second.didWork;
    second.commit();
    await second.done;
    const { rows } = await sql<{ cost: string; calls: string }>`
      select trim_scale(cost)::text as cost, calls::text from usage_rollups where user_id = ${userId}::uuid`.execute(t.db);
    expect(rows).toEqual([{ cost: '0.2', calls: '2' }]);
  });
});

describe('costSummary', () => {
  let s: { tenantId: string; userId: string };
  let u2: string;
  let agent: string;
  const from = new Date('2025-03-03T00:00:00Z');
  const to = new Date('2025-04-02T00:00:00Z');

  beforeAll(async () => {
    s = await insertTenant(t.db, roleId);
    u2 = await insertUser(t.db, s.tenantId, roleId, null);
    agent = (await t.db.insertInto('agents').values({ tenantId: s.tenantId, modelId: model, name: 'S agent' }).returning('id').executeTakeFirstOrThrow()).id;
    const u1 = s.userId;
    const row = (at: string, userId: string, modelId: number, agentId: string | null, cost: string, inputTokens: number, outputTokens: number) => ({
      tenantId: s.tenantId, userId, modelId, agentId, agentScope: agentId === null ? null : s.tenantId, type: 'chat', cost, inputTokens, outputTokens, createdAt: new Date(at),
    });
    await insertUsageRows(t.db, [
      row('2025-03-02T23:59:59.999Z', u1, model, null, '100', 1, 1), // before `from`
      row('2025-03-03T00:00:00.000Z', u1, model, agent, '0.012207', 1234, 567), // Monday, at `from`
      row('2025-03-03T23:59:59.999Z', u2, model, null, '0.1', 1000, 0),
      row('2025-03-03T12:00:00.000Z', u2, model, null, '0.2', 2000, 0),
      row('2025-03-04T12:00:00.000Z', u1, dime, agent, '0.000001', 1, 2),
      row('2025-03-09T23:00:00.000Z', u2, dime, null, '2.5', 10, 20), // Sunday, same ISO week
      row('2025-03-10T00:00:00.000Z', u1, model, agent, '0.3', 5, 5), // next Monday
      row('2025-04-01T00:00:00.000Z', u1, model, null, '1.05', 7, 8), // April; its week started Monday 31 March
      row('2025-04-02T00:00:00.000Z', u1, model, null, '100', 1, 1), // at `to`: excluded
    ]);
    // Another tenant's usage in the same period is never counted.
    await insertUsageRows(t.db, [{ tenantId: b.tenantId, userId: b.userId, modelId: model, type: 'chat', cost: '1000', inputTokens: 9, outputTokens: 9, createdAt: new Date('2025-03-03T10:00:00Z') }]);
  });

  const summary = (params: { groupBy: 'day' | 'week' | 'month'; by?: 'model' | 'user' | 'agent' }) =>
    withTenant(t.db, s.tenantId, (tx) => costSummary(tx, { from, to, ...params }));
  const bucket = (period: string, cost: string, inputTokens: number, outputTokens: number, calls: number, key?: string | number | null): CostSummaryRow => ({
    period: new Date(period),
    ...(key === undefined ? {} : { key }),
    cost,
    inputTokens,
    outputTokens,
    calls,
  });
  /** Sorted as the SQL sorts: by period, then key (nulls last; uuids compare as their lowercase text). */
  const sorted = (rows: CostSummaryRow[]) =>
    [...rows].sort((x, y) =>
      x.period.getTime() - y.period.getTime() ||
      (x.key === y.key ? 0 : x.key === null ? 1 : y.key === null ? -1 : (x.key ?? 0) < (y.key ?? 0) ? -1 : 1),
    );

  it('sums per UTC day, exactly, from `from` (included) to `to` (excluded)', async () => {
    expect(await summary({ groupBy: 'day' })).toEqual([
      bucket('2025-03-03', '0.312207', 4234, 567, 3),
      bucket('2025-03-04', '0.000001', 1, 2, 1),
      bucket('2025-03-09', '2.5', 10, 20, 1),
      bucket('2025-03-10', '0.3', 5, 5, 1),
      bucket('2025-04-01', '1.05', 7, 8, 1),
    ]);
  });

  it('sums per ISO week (starting Monday, UTC)', async () => {
    expect(await summary({ groupBy: 'week' })).toEqual([
      bucket('2025-03-03', '2.812208', 4245, 589, 5),
      bucket('2025-03-10', '0.3', 5, 5, 1),
      bucket('2025-03-31', '1.05', 7, 8, 1),
    ]);
  });

  it('sums per month', async () => {
    expect(await summary({ groupBy: 'month' })).toEqual([
      bucket('2025-03-01', '3.112208', 4250, 594, 6),
      bucket('2025-04-01', '1.05', 7, 8, 1),
    ]);
  });

  it('sums per month and model', async () => {
    expect(await summary({ groupBy: 'month', by: 'model' })).toEqual(
      sorted([
        bucket('2025-03-01', '0.612207', 4239, 572, 4, model),
        bucket('2025-03-01', '2.500001', 11, 22, 2, dime),
        bucket('2025-04-01', '1.05', 7, 8, 1, model),
      ]),
    );
  });

  it('sums per week and user', async () => {
    expect(await summary({ groupBy: 'week', by: 'user' })).toEqual(
      sorted([
        bucket('2025-03-03', '0.012208', 1235, 569, 2, s.userId),
        bucket('2025-03-03', '2.8', 3010, 20, 3, u2),
        bucket('2025-03-10', '0.3', 5, 5, 1, s.userId),
        bucket('2025-03-31', '1.05', 7, 8, 1, s.userId),
      ]),
    );
  });

  it('sums per day and agent, calls without an agent under a null key', async () => {
    expect(await summary({ groupBy: 'day', by: 'agent' })).toEqual([
      bucket('2025-03-03', '0.012207', 1234, 567, 1, agent),
      bucket('2025-03-03', '0.3', 3000, 0, 2, null),
      bucket('2025-03-04', '0.000001', 1, 2, 1, agent),
      bucket('2025-03-09', '2.5', 10, 20, 1, null),
      bucket('2025-03-10', '0.3', 5, 5, 1, agent),
      bucket('2025-04-01', '1.05', 7, 8, 1, null),
    ]);
  });

  it('buckets in UTC whatever the session time zone', async () => {
    const rows = await withTenant(t.db, s.tenantId, async (tx) => {
      await sql`set local time zone 'Pacific/Kiritimati'`.execute(tx);
      return costSummary(tx, { from, to, groupBy: 'day' });
    });
    expect(rows.map((r) => r.period.toISOString().slice(0, 10))).toEqual(['2025-03-03', '2025-03-04', '2025-03-09', '2025-03-10', '2025-04-01']);
  });

  it('returns nothing for an empty period', async () => {
    await expect(withTenant(t.db, s.tenantId, (tx) => costSummary(tx, { from: to, to, groupBy: 'day' }))).resolves.toEqual([]);
  });

  it('reads whole days from the rollups and the partial days at the ends from usage, both through indexes led by tenant_id', async () => {
    const spy = new QueryRecorder();
    const spied = t.db.withPlugin(spy);
    for (const by of [undefined, 'model', 'user', 'agent'] as const) {
      const plan = await withTenant(spied, s.tenantId, async (tx) => {
        await sql`set local enable_seqscan = off`.execute(tx);
        await costSummary(tx, by === undefined ? { from, to, groupBy: 'week' } : { from, to, groupBy: 'week', by });
        const node = spy.queries.at(-1)?.node;
        if (node === undefined) throw new Error('no query seen');
        const compiled = t.db.getExecutor().compileQuery(node, { queryId: 'explain' });
        const { rows } = await tx.executeQuery<{ 'QUERY PLAN': string }>(CompiledQuery.raw(`explain ${compiled.sql}`, [...compiled.parameters]));
        return rows.map((r) => Object.values(r)[0]).join('\n');
      });
      expect(plan, String(by)).toMatch(/Index (Only )?Scan using usage_tenant_\w+_idx|Bitmap Index Scan on usage_tenant_\w+_idx/);
      // By user the per-user buckets (0021); otherwise the per-stripe ones (0025), a bounded number per day.
      const buckets = by === 'user' ? 'usage_rollups_bucket_key' : 'usage_day_rollups_bucket_key';
      expect(plan, String(by)).toMatch(new RegExp(`Index Scan using ${buckets}|Bitmap Index Scan on ${buckets}`));
      expect(plan, String(by)).toMatch(/Index Cond: \(.*tenant_id = /);
    }
  });
});
