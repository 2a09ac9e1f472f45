import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BudgetExceededError, IdempotencyConflictError } from '../../src/db/errors.ts';
import type { DB } from '../../src/db/schema.generated.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { recordUsage, type RecordUsageParams, type UsageRow } from '../../src/queries/usage.ts';
import * as root from '../../src/index.ts';
import { insertCatalog, insertTenant } from '../support/fixtures.ts';
import { holdTx, waitUntilBlocked } from '../support/hold-tx.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';
import { insertModel, insertUsageRows, insertUser, remainingOf, usageOf } from '../support/usage-fixtures.ts';

let t: TestDb;
let roleId: number;
/** 0.003 input / 0.015 output per 1k tokens (insertCatalog's model). */
let model: number;
/** 0.1 per 1k input tokens: 1000 input tokens cost exactly 0.1. */
let dime: number;
let tenant: { tenantId: string; userId: string };
/** Two global agents, and two messages of the tenant. */
let agents: [string, string];
let messages: [string, string];

beforeAll(async () => {
  t = await openTestDb();
  ({ roleId, modelId: model } = await insertCatalog(t.db));
  dime = await insertModel(t.db, { input: '0.1' });
  tenant = await insertTenant(t.db, roleId);
  const agent = () =>
    t.db.insertInto('agents').values({ tenantId: null, modelId: model, name: 'Global helper' }).returning('id').executeTakeFirstOrThrow();
  agents = [(await agent()).id, (await agent()).id];
  const conversation = await t.db
    .insertInto('conversations')
    .values({ tenantId: tenant.tenantId, userId: tenant.userId, title: 'usage' })
    .returning('id')
    .executeTakeFirstOrThrow();
  const message = () =>
    t.db
      .insertInto('messages')
      .values({ tenantId: tenant.tenantId, conversationId: conversation.id, role: 'assistant', content: JSON.stringify({ text: 'hi' }) })
      .returning('id')
      .executeTakeFirstOrThrow();
  messages = [(await message()).id, (await message()).id];
});
afterAll(() => t?.close());

const charge = (params: RecordUsageParams, db: Kysely<DB> = t.db) => withTenant(db, tenant.tenantId, (tx) => recordUsage(tx, params));
const newKey = () => `req-${randomUUID()}`;
const countUsage = async () => (await sql<{ n: number }>`select count(*)::int as n from usage`.execute(t.db)).rows[0]?.n;

/** The rejection of `promise`, which must reject. */
async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    (value) => {
      throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
    },
    (error: unknown) => error,
  );
}

describe('recordUsage: an idempotency key is bound to its request', () => {
  it('a repeat with the same parameters returns the first row; omitted optional ones count as 0 and null, UUIDs in any case', async () => {
    const userId = await insertUser(t.db, tenant.tenantId, roleId, '1');
    const key = newKey();
    const full: RecordUsageParams = {
      userId, modelId: model, type: 'chat', inputTokens: 1234, outputTokens: 56, cacheReadTokens: 7, cacheWriteTokens: 8,
      agentId: agents[0], messageId: messages[0], idempotencyKey: key,
    };
    const first = await charge(full);
    const upper = { ...full, userId: userId.toUpperCase(), agentId: agents[0].toUpperCase(), messageId: messages[0].toUpperCase() };
    await expect(charge(upper)).resolves.toEqual(first);

    const short = newKey();
    const bare = await charge({ userId, modelId: dime, type: 'chat', inputTokens: 1000, outputTokens: 0, idempotencyKey: short });
    await expect(
      charge({ userId, modelId: dime, type: 'chat', inputTokens: 1000, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0, agentId: null, messageId: null, idempotencyKey: short }),
    ).resolves.toEqual(bare);
    expect((await usageOf(t.db, userId)).map((u) => u.idempotencyKey)).toEqual([key, short]);
    expect(first.cost).toBe('0.004542');
    expect(await remainingOf(t.db, userId)).toBe('0.895458');
  });

  it('a repeat that differs in any one parameter throws IdempotencyConflictError naming the key and that field, and charges nothing', async () => {
    const userId = await insertUser(t.db, tenant.tenantId, roleId, '5');
    const otherUser = await insertUser(t.db, tenant.tenantId, roleId, '5');
    const key = newKey();
    const params: RecordUsageParams = {
      userId, modelId: model, type: 'chat', inputTokens: 1234, outputTokens: 56, cacheReadTokens: 7, cacheWriteTokens: 8,
      agentId: agents[0], messageId: messages[0], idempotencyKey: key,
    };
    const first = await charge(params);
    const before = { rows: await countUsage(), mine: await remainingOf(t.db, userId), other: await remainingOf(t.db, otherUser) };
    const variants: Record<string, Partial<RecordUsageParams>> = {
      userId: { userId: otherUser },
      modelId: { modelId: dime },
      type: { type: 'Chat' },
      inputTokens: { inputTokens: 1235 },
      outputTokens: { outputTokens: 0 },
      cacheReadTokens: { cacheReadTokens: undefined },
      cacheWriteTokens: { cacheWriteTokens: 9 },
      agentId: { agentId: agents[1] },
      messageId: { messageId: null },
    };
    for (const [field, change] of Object.entries(variants)) {
      const error = await rejectionOf(charge({ ...params, ...change }));
      expect(error, field).toBeInstanceOf(IdempotencyConflictError);
      expect(error, field).toMatchObject({ name: 'IdempotencyConflictError', key, fields: [field] });
      const message = (error as Error).message;
      expect(message).toContain(key);
      expect(message).toContain(field);
      // Never the first request's values: they may be another user's.
      const rest = message.replace(key, '');
      for (const value of [userId, first.id, first.cost, agents[0], messages[0], '1234']) expect(rest, field).not.toContain(value);
    }
    await expect(rejectionOf(charge({ ...params, inputTokens: 1, type: 'embedding', messageId: messages[1] }))).resolves.toMatchObject({
      key, fields: ['type', 'inputTokens', 'messageId'],
    });
    expect(await countUsage()).toBe(before.rows);
    expect(await remainingOf(t.db, userId)).toBe(before.mine);
    expect(await remainingOf(t.db, otherUser)).toBe(before.other);
    await expect(charge(params)).resolves.toEqual(first);
  });

  it("another user who reuses a key gets IdempotencyConflictError, never the first user's row, and is not charged", async () => {
    const victim = await insertUser(t.db, tenant.tenantId, roleId, '1');
    const intruder = await insertUser(t.db, tenant.tenantId, roleId, '1');
    const key = newKey();
    const first = await charge({ userId: victim, modelId: dime, type: 'chat', inputTokens: 1000, outputTokens: 0, idempotencyKey: key });
    const error = await rejectionOf(charge({ userId: intruder, modelId: dime, type: 'chat', inputTokens: 1000, outputTokens: 0, idempotencyKey: key }));
    expect(error).toMatchObject({ name: 'IdempotencyConflictError', key, fields: ['userId'] });
    expect((error as Error).message).not.toContain(victim);
    expect((error as Error).message).not.toContain(first.id);
    expect(await usageOf(t.db, intruder)).toEqual([]);
    expect(await remainingOf(t.db, intruder)).toBe('1');
    expect(await remainingOf(t.db, victim)).toBe('0.9');
  });

  it('a repeat after a price change is the same request: it returns the first row at its first cost and charges nothing', async () => {
    const priced = await insertModel(t.db, { input: '0.1' });
    const userId = await insertUser(t.db, tenant.tenantId, roleId, '1');
    const key = newKey();
    const params: RecordUsageParams = { userId, modelId: priced, type: 'chat', inputTokens: 1000, outputTokens: 0, idempotencyKey: key };
    const first = await charge(params);
    expect(first.cost).toBe('0.1');
    await t.db.updateTable('models').set({ cost1kInput: '0.7' }).where('id', '=', priced).execute();
    await expect(charge(params)).resolves.toEqual(first);
    expect(await remainingOf(t.db, userId)).toBe('0.9');
    // The new price applies to a new key.
    await expect(charge({ ...params, idempotencyKey: newKey() })).resolves.toMatchObject({ cost: '0.7' });
  });

  it('a keyed row written before keys were bound to their request (by another path, defaults left out) is matched by its stored columns', async () => {
    const userId = await insertUser(t.db, tenant.tenantId, roleId, '1');
    const key = newKey();
    await insertUsageRows(t.db, [{ tenantId: tenant.tenantId, userId, modelId: dime, type: 'embedding', inputTokens: 10, cost: '0.5', idempotencyKey: key }]);
    const same = { userId, modelId: dime, type: 'embedding', inputTokens: 10, outputTokens: 0, idempotencyKey: key };
    await expect(charge(same)).resolves.toMatchObject({ userId, cost: '0.5', inputTokens: 10, outputTokens: 0, cacheReadTokens: 0, agentId: null, idempotencyKey: key });
    await expect(charge({ ...same, outputTokens: 1 })).rejects.toMatchObject({ name: 'IdempotencyConflictError', key, fields: ['outputTokens'] });
    expect(await usageOf(t.db, userId)).toHaveLength(1);
    expect(await remainingOf(t.db, userId)).toBe('1');
  });

  it('a conflicting repeat is an IdempotencyConflictError, not a BudgetExceededError, once the budget no longer covers it', async () => {
    const userId = await insertUser(t.db, tenant.tenantId, roleId, '0.1');
    const key = newKey();
    const params: RecordUsageParams = { userId, modelId: dime, type: 'chat', inputTokens: 1000, outputTokens: 0, idempotencyKey: key };
    const first = await charge(params);
    expect(await remainingOf(t.db, userId)).toBe('0.0');
    await expect(charge({ ...params, inputTokens: 2000 })).rejects.toMatchObject({ name: 'IdempotencyConflictError', fields: ['inputTokens'] });
    await expect(charge(params)).resolves.toEqual(first);
    await expect(charge({ ...params, idempotencyKey: newKey() })).rejects.toBeInstanceOf(BudgetExceededError);
  });

  it('in one transaction, a conflicting repeat after the first charge throws and changes nothing: a caller that catches it commits the first charge alone', async () => {
    const userId = await insertUser(t.db, tenant.tenantId, roleId, '1');
    const key = newKey();
    const params: RecordUsageParams = { userId, modelId: dime, type: 'chat', inputTokens: 1000, outputTokens: 0, idempotencyKey: key };
    const [first, error] = await withTenant(t.db, tenant.tenantId, async (tx) => [
      await recordUsage(tx, params),
      await recordUsage(tx, { ...params, outputTokens: 10 }).catch((e: unknown) => e),
    ]);
    expect(error).toMatchObject({ name: 'IdempotencyConflictError', key, fields: ['outputTokens'] });
    expect(await usageOf(t.db, userId)).toEqual([{ id: (first as UsageRow).id, cost: '0.1', idempotencyKey: key, inputTokens: 1000, outputTokens: 0 }]);
    expect(await remainingOf(t.db, userId)).toBe('0.9');
  });

  it('is exported from the package root', () => {
    expect(root.IdempotencyConflictError).toBe(IdempotencyConflictError);
  });
});

describe('recordUsage: concurrent calls with one key and different parameters', () => {
  /** The server: a pool of 8 connections, so the calls really overlap. PGlite: its one connection, calls serialize. */
  let pool: Kysely<DB>;
  beforeAll(() => {
    pool = onServer ? t.open(8) : t.db;
  });

  it('20 concurrent calls with one key and 20 token counts: one charge, its caller gets the row, 19 get IdempotencyConflictError', async () => {
    const userId = await insertUser(t.db, tenant.tenantId, roleId, '10');
    const key = newKey();
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => charge({ userId, modelId: dime, type: 'chat', inputTokens: 1000 + i, outputTokens: 0, idempotencyKey: key }, pool)),
    );
    const won = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    expect(won).toHaveLength(1);
    expect(refused).toHaveLength(19);
    for (const error of refused) expect(error).toMatchObject({ name: 'IdempotencyConflictError', key, fields: ['inputTokens'] });
    const winner = won[0]!;
    expect(await usageOf(t.db, userId)).toEqual([{ id: winner.id, cost: winner.cost, idempotencyKey: key, inputTokens: winner.inputTokens, outputTokens: 0 }]);
    const { rows } = await sql<{ expected: string }>`select (10 - ${winner.cost}::numeric)::text as expected`.execute(t.db);
    expect(await remainingOf(t.db, userId)).toBe(rows[0]?.expected);
  });

  it('20 concurrent calls with one key from 20 users: one is charged, 19 get IdempotencyConflictError naming userId, their budgets untouched', async () => {
    const users = await Promise.all(Array.from({ length: 20 }, () => insertUser(t.db, tenant.tenantId, roleId, '1')));
    const key = newKey();
    const results = await Promise.allSettled(
      users.map((userId) => charge({ userId, modelId: dime, type: 'chat', inputTokens: 1000, outputTokens: 0, idempotencyKey: key }, pool)),
    );
    const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [{ row: r.value, userId: users[i] }] : []));
    expect(won).toHaveLength(1);
    expect(won[0]!.row.userId).toBe(won[0]!.userId);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ name: 'IdempotencyConflictError', key, fields: ['userId'] });
    for (const userId of users) {
      expect(await remainingOf(t.db, userId), userId).toBe(userId === won[0]!.userId ? '0.9' : '1');
      expect(await usageOf(t.db, userId), userId).toHaveLength(userId === won[0]!.userId ? 1 : 0);
    }
  });

  it('two groups of 10 identical concurrent calls with one key: the winning group all get the one row, the other group all get IdempotencyConflictError', async () => {
    const userId = await insertUser(t.db, tenant.tenantId, roleId, '0.5');
    const key = newKey();
    const groups = { one: 1000, two: 2000 };
    const calls = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? 'one' : 'two') as keyof typeof groups);
    const results = await Promise.allSettled(
      calls.map((group) => charge({ userId, modelId: dime, type: 'chat', inputTokens: groups[group], outputTokens: 0, idempotencyKey: key }, pool)),
    );
    const stored = await usageOf(t.db, userId);
    expect(stored).toHaveLength(1);
    const winner = stored[0]!.inputTokens === 1000 ? 'one' : 'two';
    results.forEach((r, i) => {
      if (calls[i] === winner) {
        expect(r.status).toBe('fulfilled');
        if (r.status === 'fulfilled') expect(r.value).toMatchObject({ id: stored[0]!.id, inputTokens: groups[winner] });
      } else {
        expect(r.status).toBe('rejected');
        if (r.status === 'rejected') expect(r.reason).toMatchObject({ name: 'IdempotencyConflictError', key, fields: ['inputTokens'] });
      }
    });
    expect(await remainingOf(t.db, userId)).toBe(winner === 'one' ? '0.4' : '0.3');
  });
});

describe('recordUsage: a conflicting key under locks (server only)', () => {
  let pool: Kysely<DB>;
  beforeAll(() => {
    if (onServer) pool = t.open(4);
  });

  it.runIf(onServer)('a different request with an uncommitted key waits for it, then throws IdempotencyConflictError and charges nothing', async () => {
    const userId = await insertUser(t.db, tenant.tenantId, roleId, null);
    const key = newKey();
    const params: RecordUsageParams = { userId, modelId: dime, type: 'chat', inputTokens: 1000, outputTokens: 0, idempotencyKey: key };
    const first = holdTx(pool, tenant.tenantId, (tx) => recordUsage(tx, params));
    const firstRow = await first.didWork;
    const other = holdTx(pool, tenant.tenantId, (tx) => recordUsage(tx, { ...params, outputTokens: 5 }));
    await waitUntilBlocked(t.db, await other.pid, await first.pid);
    first.commit();
    other.commit();
    await expect(first.done).resolves.toEqual(firstRow);
    await expect(other.done).rejects.toMatchObject({ name: 'IdempotencyConflictError', key, fields: ['outputTokens'] });
    expect(await usageOf(t.db, userId)).toHaveLength(1);
  });

  it.runIf(onServer)('when the uncommitted first request rolls back, the waiting different one is charged under the key', async () => {
    const userId = await insertUser(t.db, tenant.tenantId, roleId, '1');
    const key = newKey();
    const params: RecordUsageParams = { userId, modelId: dime, type: 'chat', inputTokens: 1000, outputTokens: 0, idempotencyKey: key };
    const first = holdTx(pool, tenant.tenantId, (tx) => recordUsage(tx, params));
    await first.didWork;
    const other = holdTx(pool, tenant.tenantId, (tx) => recordUsage(tx, { ...params, inputTokens: 3000 }));
    await waitUntilBlocked(t.db, await other.pid, await first.pid);
    first.rollback();
    await first.done;
    const row = await other.didWork;
    other.commit();
    await other.done;
    expect(await usageOf(t.db, userId)).toEqual([{ id: row.id, cost: '0.3', idempotencyKey: key, inputTokens: 3000, outputTokens: 0 }]);
    expect(await remainingOf(t.db, userId)).toBe('0.7');
  });
});
