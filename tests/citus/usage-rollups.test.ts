/**
 * The usage rollups on Citus (migrations 0021 and 0025): the trigger on usage fires on the shard
 * the row lands on (usage_<shardid>) and must write the colocated shards of usage_rollups and
 * usage_day_rollups by name. Rows written by the owner (the paths the package's functions do not
 * take on Citus yet: recordUsage's statement is one of the Citus gaps, vitest.citus.config.ts),
 * then moved and deleted; both tables must equal a full scan of usage throughout. Runs only on a
 * Citus coordinator (TEST_DATABASE_URL; README "Citus").
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertChatWorld, type ChatWorld } from '../support/conversation-fixtures.ts';
import { onCitus, openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let w: ChatWorld;

beforeAll(async () => {
  if (!onCitus) return;
  t = await openTestDb();
  w = await insertChatWorld(t.db);
});
afterAll(() => t?.close());

/** Buckets of both rollup tables that differ from the sums of their usage rows (one statement per table). */
async function drifted(): Promise<unknown[]> {
  const db = t.db.withoutPlugins();
  const perUser = await sql`
    select * from (select tenant_id, day, user_id, model_id, agent_id, cost, calls from usage_rollups) r
    full join (select tenant_id, (created_at at time zone 'UTC')::date as day, user_id, model_id, agent_id, sum(cost) as cost, count(*) as calls
               from usage group by 1, 2, 3, 4, 5) s
      on s.tenant_id = r.tenant_id and s.day = r.day and s.user_id = r.user_id and s.model_id = r.model_id and s.agent_id is not distinct from r.agent_id
    where r.cost is distinct from s.cost or r.calls is distinct from s.calls`.execute(db);
  const perStripe = await sql`
    select * from (select tenant_id, day, stripe, model_id, agent_id, cost, calls from usage_day_rollups) r
    full join (select tenant_id, (created_at at time zone 'UTC')::date as day, get_byte(uuid_send(user_id), 15) % 8 as stripe, model_id, agent_id,
                      sum(cost) as cost, count(*) as calls
               from usage group by 1, 2, 3, 4, 5) s
      on s.tenant_id = r.tenant_id and s.day = r.day and s.stripe = r.stripe and s.model_id = r.model_id and s.agent_id is not distinct from r.agent_id
    where r.cost is distinct from s.cost or r.calls is distinct from s.calls`.execute(db);
  return [...perUser.rows, ...perStripe.rows];
}

describe.runIf(onCitus)('usage rollups on Citus', () => {
  it('the trigger on the shards keeps both rollup tables exact through inserts, updates and deletes', async () => {
    const users = [
      { tenantId: w.a.tenantId, userId: w.a.userId },
      { tenantId: w.a.tenantId, userId: w.a.otherUserId },
      { tenantId: w.b.tenantId, userId: w.b.userId },
    ];
    for (let i = 0; i < 30; i++) {
      const u = users[i % users.length]!;
      await t.db
        .insertInto('usage')
        .values({
          tenantId: u.tenantId, userId: u.userId, modelId: w.modelId, type: 'chat', inputTokens: 100 + i, outputTokens: 10 * i,
          cost: `0.00${i + 1}`, createdAt: new Date(Date.UTC(2026, 0, 1 + (i % 4), 12)),
        })
        .execute();
    }
    expect(await drifted()).toEqual([]);
    const { rows } = await sql<{ perUser: number; perStripe: number }>`
      select (select count(*)::int from usage_rollups) as "perUser", (select count(*)::int from usage_day_rollups) as "perStripe"`.execute(t.db);
    expect(rows[0]!.perUser).toBeGreaterThan(0);
    expect(rows[0]!.perStripe).toBeGreaterThan(0);
    // The owner's corrections: amounts changed, rows moved to another day, rows deleted.
    await sql`update usage set cost = cost * 3 where tenant_id = ${w.a.tenantId}::uuid and output_tokens % 20 = 0`.execute(t.db);
    // (A constant: Citus refuses `created_at - interval …` in an UPDATE, timestamptz arithmetic
    // being STABLE: "STABLE functions used in UPDATE queries cannot be called with column references".)
    await sql`update usage set created_at = '2025-12-30T12:00:00Z' where tenant_id = ${w.b.tenantId}::uuid and input_tokens % 2 = 0`.execute(t.db);
    await sql`delete from usage where tenant_id = ${w.a.tenantId}::uuid and input_tokens % 3 = 0`.execute(t.db);
    expect(await drifted()).toEqual([]);
  });
});
