/**
 * usage_rollups (migration 0021) and usage_day_rollups (0025) are exact: after random concurrent charges, reservations, settles,
 * releases, rolled-back charges and back-dated rows written by the owner, every bucket equals the
 * sum of its usage rows, and costSummary (which sums the buckets for whole days and reads usage
 * for the partial days at its ends) returns, for every grouping and for aligned and unaligned
 * ranges, exactly what a full scan of usage gives. While the writers run (on a server, where they
 * run at once), an observer checks in single statements, each one snapshot, that the buckets equal
 * the usage rows: exact at every instant, not only at the end. Then the owner's paths that change
 * or remove usage rows (an agent's deletion sets agent_id NULL; a user's deletion cascades).
 */
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DB } from '../../src/db/schema.generated.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { releaseReservation, reserveBudget, settleUsage } from '../../src/queries/budgets.ts';
import { updateTenant } from '../../src/queries/tenants.ts';
import { costSummary, recordUsage, type CostGrouping, type CostPeriod, type CostSummaryRow } from '../../src/queries/usage.ts';
import { insertCatalog, insertTenant } from '../support/fixtures.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';
import { insertModel, insertUser } from '../support/usage-fixtures.ts';

const DAY = 86_400_000;
const PERIODS: CostPeriod[] = ['day', 'week', 'month'];
const GROUPINGS: (CostGrouping | undefined)[] = [undefined, 'model', 'user', 'agent'];

let t: TestDb;
let db: Kysely<DB>;
let roleId: number;
let models: number[];

/** A small seeded generator (mulberry32): the same operations every run. */
function random(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4_294_967_296;
  };
  return { next, int: (n: number) => Math.floor(next() * n), pick: <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)]! };
}

/** Runs `tasks` with at most `width` at once. */
async function pool(tasks: (() => Promise<unknown>)[], width: number): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (i < tasks.length) await tasks[i++]!();
    }),
  );
}

interface World {
  tenantId: string;
  users: string[];
  agents: (string | null)[];
}

/** A tenant with budgeted (small, daily, lifetime) and unlimited users and two agents (and none). */
async function world(capped: boolean): Promise<World> {
  const { tenantId, userId } = await insertTenant(db, roleId);
  const users = [userId, await insertUser(db, tenantId, roleId, null)];
  for (const budget of ['0.5', '2', '0.05', '10']) users.push(await insertUser(db, tenantId, roleId, budget));
  await db.updateTable('users').set({ budgetPeriod: 'day' }).where('id', '=', users[3]!).execute();
  const agents: (string | null)[] = [null];
  for (const name of ['first', 'second']) {
    agents.push((await db.insertInto('agents').values({ tenantId, modelId: models[0]!, name }).returning('id').executeTakeFirstOrThrow()).id);
  }
  if (capped) await withTenant(db, tenantId, (tx) => updateTenant(tx, { settings: { maxMonthlySpend: '6' } }));
  return { tenantId, users, agents };
}

/**
 * Buckets that differ from the sums of their usage rows, in one statement (one snapshot), as the
 * owner: usage_rollups (per user, 0021) and usage_day_rollups (per stripe of users, 0025).
 */
async function driftedBuckets(executor: Kysely<any>): Promise<unknown[]> {
  const { rows } = await sql`
    with rolled as (
      select tenant_id, day, user_id, model_id, agent_id, cost, input_tokens, output_tokens, calls from usage_rollups
    ), scanned as (
      select tenant_id, (created_at at time zone 'UTC')::date as day, user_id, model_id, agent_id,
             sum(cost) as cost, sum(input_tokens) as input_tokens, sum(output_tokens) as output_tokens, count(*) as calls
      from usage group by 1, 2, 3, 4, 5
    ), rolled_by_day as (
      select tenant_id, day, stripe, model_id, agent_id, cost, input_tokens, output_tokens, calls from usage_day_rollups
    ), scanned_by_day as (
      -- The stripe as the migration documents it: the last byte of the user's id modulo 8.
      select tenant_id, (created_at at time zone 'UTC')::date as day, get_byte(uuid_send(user_id), 15) % 8 as stripe, model_id, agent_id,
             sum(cost) as cost, sum(input_tokens) as input_tokens, sum(output_tokens) as output_tokens, count(*) as calls
      from usage group by 1, 2, 3, 4, 5
    )
    select 'usage_rollups' as "table", r.*, s.* from rolled r full join scanned s
      on s.tenant_id = r.tenant_id and s.day = r.day and s.user_id = r.user_id and s.model_id = r.model_id
         and s.agent_id is not distinct from r.agent_id
    where r.cost is distinct from s.cost or r.input_tokens is distinct from s.input_tokens
       or r.output_tokens is distinct from s.output_tokens or r.calls is distinct from s.calls
    union all
    select 'usage_day_rollups', r.tenant_id, r.day, null, r.model_id, r.agent_id, r.cost, r.input_tokens, r.output_tokens, r.calls,
           s.tenant_id, s.day, null, s.model_id, s.agent_id, s.cost, s.input_tokens, s.output_tokens, s.calls
    from rolled_by_day r full join scanned_by_day s
      on s.tenant_id = r.tenant_id and s.day = r.day and s.stripe = r.stripe and s.model_id = r.model_id
         and s.agent_id is not distinct from r.agent_id
    where r.cost is distinct from s.cost or r.input_tokens is distinct from s.input_tokens
       or r.output_tokens is distinct from s.output_tokens or r.calls is distinct from s.calls`.execute(executor.withoutPlugins());
  return rows;
}

/**
 * costSummary's answer computed independently: a full scan of the tenant's usage as the owner,
 * grouped the way costSummary documents (UTC day, ISO week, month; model, user or agent).
 */
async function fullScan(tenantId: string, from: Date, to: Date, groupBy: CostPeriod, by: CostGrouping | undefined): Promise<CostSummaryRow[]> {
  const key = by === undefined ? undefined : sql.id({ model: 'model_id', user: 'user_id', agent: 'agent_id' }[by]);
  const { rows } = await sql<{ period: Date; key: string | number | null; cost: string; input: string; output: string; calls: string }>`
    select date_trunc(${sql.lit(groupBy)}, created_at at time zone 'UTC') at time zone 'UTC' as period,
           ${key ?? sql`null`} as key, trim_scale(sum(cost))::text as cost,
           sum(input_tokens)::text as input, sum(output_tokens)::text as output, count(*)::text as calls
    from usage where tenant_id = ${tenantId}::uuid and created_at >= ${from} and created_at < ${to}
    group by 1, 2 order by 1, 2`.execute(db.withoutPlugins());
  return rows.map((r) => ({
    period: r.period,
    ...(by === undefined ? {} : { key: r.key }),
    cost: r.cost,
    inputTokens: Number(r.input),
    outputTokens: Number(r.output),
    calls: Number(r.calls),
  }));
}

beforeAll(async () => {
  t = await openTestDb({ poolMax: 10 });
  db = t.db;
  let modelId: number;
  ({ roleId, modelId } = await insertCatalog(db));
  // Prices whose products have long fractions, so that any rounding would show.
  models = [modelId, await insertModel(db, { input: '0.0001234567', output: '0.0009876543' }), await insertModel(db, { input: '0.3', cacheRead: '0.00003' })];
});
afterAll(() => t?.close());

describe('usage_rollups', () => {
  let worlds: World[];
  /** Every usage row is within [start, end): back-dated rows go up to 40 days back. */
  const end = new Date(Math.ceil(Date.now() / DAY) * DAY + DAY);
  const start = new Date(end.getTime() - 45 * DAY);

  beforeAll(async () => {
    worlds = [await world(false), await world(true)];
    const rnd = random(20_250_707);
    const tasks: (() => Promise<unknown>)[] = [];
    let keys = 0;
    for (let i = 0; i < 400; i++) {
      const w = rnd.pick(worlds);
      const userId = rnd.pick(w.users);
      const agentId = rnd.pick(w.agents);
      const modelId = rnd.pick(models);
      const tokens = { inputTokens: rnd.int(20_000), outputTokens: rnd.int(5_000), cacheReadTokens: rnd.int(3) === 0 ? rnd.int(9_000) : 0 };
      // A budget or cap that does not cover it, a key repeated with other parameters, a transaction
      // rolled back on purpose, or one PostgreSQL rolled back as a deadlock victim (transactions
      // that write several buckets, here and in the owner's multi-row inserts, can lock them in
      // opposite orders; seen in CI): nothing written, which the comparison checks too. Anything
      // else fails.
      const refused = (error: Error & { code?: string }) => {
        if (!['BudgetExceededError', 'IdempotencyConflictError'].includes(error.name) && error.message !== 'rolled back' && error.code !== '40P01') {
          throw error;
        }
        return undefined;
      };
      const kind = rnd.int(10);
      if (kind < 4) {
        // A charge; one in three repeats an earlier idempotency key (charged once, or a conflict).
        const idempotencyKey = rnd.int(3) === 0 ? `key-${rnd.int(Math.max(1, keys))}` : `key-${keys++}`;
        tasks.push(() => withTenant(db, w.tenantId, (tx) => recordUsage(tx, { userId, agentId, modelId, type: 'chat', ...tokens, idempotencyKey })).catch(refused));
      } else if (kind < 6) {
        // A reservation, then its settle (the cost may be above or below the hold) or its release.
        const amount = rnd.pick(['0.001', '0.01', '0.2']);
        const settle = rnd.int(4) !== 0;
        tasks.push(async () => {
          const hold = await withTenant(db, w.tenantId, (tx) => reserveBudget(tx, { userId, amount })).catch(refused);
          if (hold === undefined) return;
          await withTenant(db, w.tenantId, async (tx) => {
            if (settle) await settleUsage(tx, { reservationId: hold.id, agentId, modelId, type: 'chat', ...tokens });
            else await releaseReservation(tx, { reservationId: hold.id });
          }).catch(refused);
        });
      } else if (kind < 7) {
        // Charges in a transaction that rolls back: their buckets must roll back with them.
        tasks.push(() =>
          withTenant(db, w.tenantId, async (tx) => {
            await recordUsage(tx, { userId: w.users[1]!, agentId, modelId, type: 'chat', ...tokens });
            await recordUsage(tx, { userId: w.users[1]!, agentId: null, modelId, type: 'chat', ...tokens });
            throw new Error('rolled back');
          }).catch(refused),
        );
      } else if (kind < 8) {
        // Two charges of two users in one transaction.
        tasks.push(() =>
          withTenant(db, w.tenantId, async (tx) => {
            await recordUsage(tx, { userId: w.users[1]!, agentId, modelId, type: 'chat', ...tokens });
            await recordUsage(tx, { userId: w.users[0]!, agentId, modelId, type: 'embedding', ...tokens });
          }).catch(refused),
        );
      } else {
        // Back-dated rows written by the owner (an import, a correction): any instant of the last
        // 40 days, a third of them within a second of a UTC midnight.
        const day = Math.floor(end.getTime() / DAY) - 1 - rnd.int(40);
        const ms = rnd.int(3) === 0 ? rnd.pick([0, 1, DAY - 1, 999, DAY - 1000]) : rnd.int(DAY);
        const rows = Array.from({ length: 1 + rnd.int(3) }, () => ({
          tenantId: w.tenantId, userId: rnd.pick(w.users), modelId: rnd.pick(models), type: 'chat',
          agentId, agentScope: agentId === null ? null : w.tenantId,
          inputTokens: rnd.int(10_000), outputTokens: rnd.int(10_000), cost: `${rnd.int(1000)}.${String(rnd.int(1e9)).padStart(9, '0')}`,
          createdAt: new Date(day * DAY + ms),
        }));
        tasks.push(() => db.insertInto('usage').values(rows).execute().catch(refused));
      }
    }
    // On a server the writers run at once (8 at a time) while an observer compares the buckets
    // with the usage rows in single statements; PGlite runs them one after the other.
    let writing = true;
    const drift: unknown[] = [];
    const observer = (async () => {
      while (writing && onServer) {
        drift.push(...(await driftedBuckets(db)));
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    await pool(tasks, 8).finally(() => {
      writing = false;
    });
    await observer;
    expect(drift).toEqual([]);
  }, 300_000);

  it('holds in every bucket exactly the sums of its usage rows, and wrote some of each kind', async () => {
    expect(await driftedBuckets(db)).toEqual([]);
    const [counts] = (await sql<{ buckets: number; days: number; rows: number; settled: number; agentless: number }>`
      select (select count(*)::int from usage_rollups) as buckets, (select count(distinct day)::int from usage_rollups) as days,
             (select count(*)::int from usage) as rows, (select count(*)::int from budget_holds where status = 'settled') as settled,
             (select count(*)::int from usage_rollups where agent_id is null) as agentless`.execute(db)).rows;
    expect(counts!.rows).toBeGreaterThan(counts!.buckets);
    expect(counts!.days).toBeGreaterThan(20);
    expect(counts!.settled).toBeGreaterThan(0);
    expect(counts!.agentless).toBeGreaterThan(0);
  });

  it('costSummary equals a full scan of usage for every period and grouping, over aligned and unaligned ranges', async () => {
    const rnd = random(7);
    const ranges: [Date, Date][] = [
      [start, end],
      [new Date(end.getTime() - 10 * DAY), new Date(end.getTime() - 3 * DAY)], // whole days
      [new Date(start.getTime() + 12_345_678), new Date(end.getTime() - 54_321)], // partial days at both ends
      [new Date(end.getTime() - 2 * DAY + 1), new Date(end.getTime() - DAY - 1)], // within one day
      [new Date(end.getTime() - 7 * DAY - 1), new Date(end.getTime() - 5 * DAY + 1)], // a millisecond into the days beyond
      [new Date(end.getTime() - 3 * DAY), new Date(end.getTime() - 3 * DAY)], // empty
      [new Date(end.getTime() - 4 * DAY + 500), new Date(end.getTime() - 3 * DAY + 500)], // one day's length, across a midnight
    ];
    for (let i = 0; i < 5; i++) {
      const a = start.getTime() + rnd.int(45 * DAY);
      const b = start.getTime() + rnd.int(45 * DAY);
      ranges.push([new Date(Math.min(a, b)), new Date(Math.max(a, b))]);
    }
    const problems: string[] = [];
    let compared = 0;
    for (const w of worlds) {
      for (const [from, to] of ranges) {
        for (const groupBy of PERIODS) {
          for (const by of GROUPINGS) {
            const params = by === undefined ? { from, to, groupBy } : { from, to, groupBy, by };
            const got = await withTenant(db, w.tenantId, (tx) => costSummary(tx, params), { role: 'app_server' });
            const expected = await fullScan(w.tenantId, from, to, groupBy, by);
            compared += expected.length;
            // The SQL orders keys its own way (uuid order); compare as sets of rows.
            const text = (rows: CostSummaryRow[]) => rows.map((r) => JSON.stringify(r)).sort();
            if (JSON.stringify(text(got)) !== JSON.stringify(text(expected))) {
              problems.push(`${from.toISOString()}..${to.toISOString()} by ${groupBy}/${by ?? '-'}: got ${JSON.stringify(got)}, full scan ${JSON.stringify(expected)}`);
            }
          }
        }
      }
    }
    expect(problems).toEqual([]);
    expect(compared).toBeGreaterThan(500);
  });

  it("follows the owner's changes of usage: an agent's deletion moves its rows to the no-agent bucket, a user's deletion takes its buckets away, updates move amounts", async () => {
    const w = worlds[0]!;
    const agentId = w.agents[1]!;
    const userId = w.users[1]!;
    const before = await sql<{ n: number }>`select count(*)::int as n from usage where agent_id = ${agentId}::uuid`.execute(db);
    expect(before.rows[0]!.n).toBeGreaterThan(0);
    await db.deleteFrom('userAgents').where('agentId', '=', agentId).execute();
    await db.deleteFrom('agents').where('id', '=', agentId).execute(); // usage.agent_id set NULL by its foreign key
    await db.deleteFrom('users').where('tenantId', '=', w.tenantId).where('id', '=', userId).execute(); // usage and buckets cascade
    expect(await driftedBuckets(db)).toEqual([]);
    // The owner's corrections: amounts changed, rows moved to another day (and back into a bucket that exists).
    await sql`update usage set cost = cost * 3, input_tokens = input_tokens + 1 where tenant_id = ${w.tenantId}::uuid and output_tokens % 3 = 0`.execute(db);
    await sql`update usage set created_at = created_at - interval '2 days' where tenant_id = ${w.tenantId}::uuid and output_tokens % 4 = 1`.execute(db);
    await sql`update usage set message_id = null where tenant_id = ${w.tenantId}::uuid`.execute(db); // not a bucket's column: nothing to move
    expect(await driftedBuckets(db)).toEqual([]);
    const left = await sql<{ agent: number; user: number }>`
      select (select count(*)::int from usage_rollups where agent_id = ${agentId}::uuid) as agent,
             (select count(*)::int from usage_rollups where tenant_id = ${w.tenantId}::uuid and user_id = ${userId}::uuid) as user`.execute(db);
    expect(left.rows[0]).toEqual({ agent: 0, user: 0 });
    const [from, to] = [start, end];
    for (const by of GROUPINGS) {
      const got = await withTenant(db, w.tenantId, (tx) => costSummary(tx, by === undefined ? { from, to, groupBy: 'week' } : { from, to, groupBy: 'week', by }));
      const text = (rows: CostSummaryRow[]) => rows.map((r) => JSON.stringify(r)).sort();
      expect(text(got)).toEqual(text(await fullScan(w.tenantId, from, to, 'week', by)));
    }
  });

  it('no app role can write a bucket, not even inside its own tenant', async () => {
    const w = worlds[0]!;
    for (const role of ['app_server', 'app_gateway', 'app_cms', 'app_user'] as const) {
      for (const statement of [
        sql`insert into usage_rollups (tenant_id, day, user_id, model_id, cost, input_tokens, output_tokens, calls)
            values (${w.tenantId}::uuid, current_date, ${w.users[0]!}::uuid, ${models[0]!}, 1, 1, 1, 1)`,
        sql`update usage_rollups set cost = 0`,
        sql`delete from usage_rollups`,
        sql`insert into usage_day_rollups (tenant_id, day, stripe, model_id, cost, input_tokens, output_tokens, calls)
            values (${w.tenantId}::uuid, current_date, 0, ${models[0]!}, 1, 1, 1, 1)`,
        sql`update usage_day_rollups set cost = 0`,
        sql`delete from usage_day_rollups`,
      ]) {
        let outcome = 'not run';
        await withTenant(db, w.tenantId, async (tx) => {
          await sql`select set_config('role', ${role}, true)`.execute(tx);
          outcome = await statement.execute(tx).then(() => 'allowed', (error: { code?: string }) => error.code ?? String(error));
        }).catch(() => {}); // a refused statement aborts the transaction: its rollback is expected
        expect(outcome, `${role}: ${statement.compile(db).sql.trim().split(' ')[0]}`).toBe('42501');
      }
    }
    expect(await driftedBuckets(db)).toEqual([]);
  });
});
