/**
 * The growing tenant of `--growth`: created beside the bench world, then grown step by step as
 * the database owner with set-based SQL (each step adds only the difference to the next size):
 *
 * - conversations: one per about `meanMessages` messages (geometric lengths, at most 200; one in
 *   `deepEvery` is 150 long so that a thread of depth 100 exists at every size), 5% soft-deleted,
 *   users drawn Zipf-wise (power users), newer conversations later in time (the tenant ages);
 * - messages: real trees through parent_id. Message k of a conversation answers k − 1, except
 *   every seventh (k % 7 = 0), which answers k − 2 (a regenerated answer: a branch), so its depth
 *   is k − ⌊k/7⌋; depth is given, and messages_parent_fkey checks every link at the end of the
 *   statement. Ids are md5 of (conversation, k), so a parent's id is computed, not looked up;
 * - usage: the step's rows over a fixed 90-day window (so a month holds a third of them, more
 *   and more densely), with usage_roll_up disabled for the statement and the rollups filled by the
 *   trigger's own aggregation in the same transaction (see growUsage; checked exact after);
 * - chunks: bench/data.ts's loadVectors (resources of 20–80 clustered chunks, binary vectors).
 */
import type { BareClient } from '../backend.ts';
import { loadVectors, type TenantInfo, type World } from '../data.ts';
import { progress } from '../progress.ts';
import { stream, uuid, weightedSampler, zipfWeights, type Random } from '../random.ts';
import type { GrowthSettings, GrowthStep } from './settings.ts';

/** The growing tenant and what the measurements need of it. */
export interface GrowthTenant {
  info: TenantInfo;
  /** Conversations so far (numbered 0 … conversations − 1) and their lengths, users and deletion. */
  conversations: { length: number; user: number; deleted: boolean }[];
  messages: number;
  usage: number;
  chunks: number;
  /** A long text the messages' bodies are cut from. */
  corpus: string;
  random: Random;
}

/** The first minute of the tenant's conversations; conversation j starts 5 minutes after j − 1. */
const T0 = '2025-01-01T00:00:00Z';
/** Usage lies in the 90 days before this instant. */
export const USAGE_END = '2025-06-01T00:00:00Z';
/** Rows per statement of the message load (a progress line each). */
const MESSAGE_BATCH = 100_000;
const USAGE_BATCH = 250_000;

/** Creates the tenant, its users (no budget) and its tenant-wide agents. */
export async function createGrowthTenant(bare: BareClient, world: World, s: GrowthSettings): Promise<GrowthTenant> {
  const r = stream(world.settings.seed, 'growth');
  const info: TenantInfo = {
    index: world.tenants.length + 1, id: uuid(r), slug: 'tenant-growth', users: [], budgeted: [], unlimited: [],
    agents: [], agentOwners: new Map(), vectors: 0,
  };
  await bare.query(`insert into tenants (id, name, slug, plan) values ($1, 'Growing tenant', $2, 'enterprise')`, [info.id, info.slug]);
  for (let u = 0; u < s.users; u += 1) info.users.push(uuid(r));
  info.unlimited.push(...info.users);
  await bare.query(
    `insert into users (tenant_id, id, email, first_name, last_name, role_id)
     select $1, id, 'user' || n || '@growth.example', 'First', 'Last', $3 from unnest($2::uuid[]) with ordinality as u(id, n)`,
    [info.id, info.users, world.roleId],
  );
  for (let a = 0; a < s.agents; a += 1) {
    const id = uuid(r);
    info.agents.push(id);
    info.agentOwners.set(id, null);
  }
  await bare.query(
    `insert into agents (id, tenant_id, user_id, model_id, prompt_id, name, description, model_parameters)
     select id, $1, null, $3, 1, 'Growth agent ' || n, 'An agent of the growing tenant', '{}' from unnest($2::uuid[]) with ordinality as a(id, n)`,
    [info.id, info.agents, world.modelIds[0]],
  );
  return { info, conversations: [], messages: 0, usage: 0, chunks: 0, corpus: world.texts.message(r, 1200), random: r };
}

/** Seconds each part of a step took. */
export type StepSeconds = Record<'conversationsMessages' | 'usage' | 'chunks', number>;

/** Grows the tenant to `step` (adds the difference only). The HNSW index must be absent: hnsw.ts builds it after. */
export async function growTo(bare: BareClient, world: World, g: GrowthTenant, step: GrowthStep, s: GrowthSettings): Promise<StepSeconds> {
  let t = performance.now();
  await growConversations(bare, g, step.rows - g.messages, s);
  const conversationsMessages = (performance.now() - t) / 1000;
  t = performance.now();
  await growUsage(bare, world, g, step.rows - g.usage);
  const usage = (performance.now() - t) / 1000;
  t = performance.now();
  const add = step.chunks - g.chunks;
  if (add > 0) {
    await loadVectors(bare, world.settings, [{ ...g.info, vectors: add }], world.texts, world.points, g.random, true);
    g.chunks += add;
  }
  return { conversationsMessages, usage, chunks: (performance.now() - t) / 1000 };
}

/** Adds conversations until `add` more messages exist (the last one cut to fit). */
async function growConversations(bare: BareClient, g: GrowthTenant, add: number, s: GrowthSettings): Promise<void> {
  if (add <= 0) return;
  const userOf = weightedSampler(zipfWeights(g.info.users.length, 0.7));
  const first = g.conversations.length;
  for (let left = add; left > 0; ) {
    const j = g.conversations.length;
    const drawn = j % s.deepEvery === 0 ? 150 : Math.min(200, Math.max(1, Math.round(-Math.log(1 - g.random()) * s.meanMessages)));
    const length = Math.min(drawn, left);
    g.conversations.push({ length, user: userOf(g.random), deleted: g.random() < 0.05 });
    left -= length;
  }
  const fresh = g.conversations.slice(first).map((c, i) => ({ ...c, j: first + i }));
  await bare.query(
    `insert into conversations (tenant_id, id, user_id, agent_id, agent_scope, title, deleted, deleted_at, last_activity_at, created_at, updated_at)
     select $1, md5('gc:' || c.j)::uuid, ($2::uuid[])[c.u + 1], a.id, a.scope, 'Conversation ' || c.j, c.deleted,
            case when c.deleted then c.last_at + interval '1 hour' end, c.last_at, c.created_at, c.last_at
     from (select j, u, len, deleted, $4::timestamptz + j * interval '5 minutes' as created_at,
                  $4::timestamptz + j * interval '5 minutes' + (len - 1) * interval '1 second' as last_at
           from unnest($5::int[], $6::int[], $7::int[], $8::boolean[]) as x(j, u, len, deleted)) c
     join agents a on a.id = ($3::uuid[])[1 + c.j % array_length($3::uuid[], 1)]`,
    [g.info.id, g.info.users, g.info.agents, T0, fresh.map((c) => c.j), fresh.map((c) => c.user), fresh.map((c) => c.length), fresh.map((c) => c.deleted)],
  );
  const bar = progress('growing tenant: messages (threads through parent_id)', add, 'messages');
  let done = 0;
  for (let i = 0; i < fresh.length; ) {
    const batch: typeof fresh = [];
    let n = 0;
    while (i < fresh.length && n < MESSAGE_BATCH) {
      batch.push(fresh[i]!);
      n += fresh[i]!.length;
      i += 1;
    }
    await bare.query(
      `insert into messages (tenant_id, id, conversation_id, parent_id, role, content, depth, created_at, updated_at)
       select $1, md5('gm:' || c.j || ':' || k)::uuid, md5('gc:' || c.j)::uuid,
              case when k = 0 then null when k % 7 = 0 then md5('gm:' || c.j || ':' || (k - 2))::uuid else md5('gm:' || c.j || ':' || (k - 1))::uuid end,
              case when k % 2 = 0 then 'user' else 'assistant' end,
              jsonb_build_object('text', substr($2, 1 + (c.j * 7919 + k * 104729) % 3000,
                case when k % 2 = 0 then 20 + (c.j + k * 31) % 200 else 200 + (c.j + k * 53) % 1000 end)),
              k - k / 7,
              $3::timestamptz + c.j * interval '5 minutes' + k * interval '1 second',
              $3::timestamptz + c.j * interval '5 minutes' + k * interval '1 second'
       from unnest($4::int[], $5::int[]) as c(j, len) cross join lateral generate_series(0, c.len - 1) as k`,
      [g.info.id, g.corpus, T0, batch.map((c) => c.j), batch.map((c) => c.length)],
    );
    done += n;
    bar.update(done);
  }
  bar.finish();
  g.messages += add;
}

/**
 * Adds `add` usage rows. usage_roll_up (migrations 0021, 0025) would upsert two buckets per row;
 * instead, in one transaction, the trigger is disabled, the rows inserted, their sums added to
 * usage_rollups and usage_day_rollups with the trigger's own keys (tenant, UTC day of created_at,
 * user or stripe, model, agent; NULLS NOT DISTINCT) and arithmetic (insert … on conflict do update adding cost, tokens, calls),
 * and the trigger enabled again: the same rollups, exact when the transaction commits (checked by
 * checkRollups). ALTER TABLE … DISABLE TRIGGER is transactional: a failure leaves it enabled.
 */
async function growUsage(bare: BareClient, world: World, g: GrowthTenant, add: number): Promise<void> {
  if (add <= 0) return;
  const bar = progress('growing tenant: usage (+ both rollups)', add, 'rows');
  for (let done = 0; done < add; ) {
    const n = Math.min(USAGE_BATCH, add - done);
    await bare.transaction(async (q) => {
      await q(`select setseed($1)`, [(((g.usage + done) % 997) / 997) * 2 - 1]);
      await q(`alter table usage disable trigger usage_roll_up`);
      await q(
        `with ins as (
           -- usage_agent_id_fkey is (agent_scope, agent_id) -> agents (scope, id) MATCH FULL (migration
           -- 0011): an agent_id without its scope is refused ("MATCH FULL does not allow mixing of
           -- null and nonnull key values"), so the scope (this tenant: tenant-wide agents) goes with it.
           insert into usage (tenant_id, user_id, model_id, agent_id, agent_scope, type, input_tokens, output_tokens, cost, created_at)
           select $1, x.user_id, x.model_id, x.agent_id, case when x.agent_id is not null then $1::uuid end, 'chat', x.input_tokens, x.output_tokens,
                  (x.input_tokens * md.cost_1k_input + x.output_tokens * md.cost_1k_output) * 0.001, x.created_at
           from (
             select ($2::uuid[])[1 + floor(array_length($2::uuid[], 1) * random() ^ 2)::int] as user_id,
                    ($3::int[])[1 + floor(random() * 2)::int] as model_id,
                    case when random() < 0.2 then null else ($4::uuid[])[1 + floor(random() * array_length($4::uuid[], 1))::int] end as agent_id,
                    (100 + random() * 4000)::int as input_tokens, (50 + random() * 1000)::int as output_tokens,
                    $5::timestamptz - random() * interval '90 days' as created_at
             from generate_series(1, $6::int)
           ) x join models md on md.id = x.model_id
           returning tenant_id, user_id, model_id, agent_id, cost, input_tokens, output_tokens, created_at
         )
         , per_user as (
           insert into usage_rollups as r (tenant_id, day, user_id, model_id, agent_id, cost, input_tokens, output_tokens, calls)
           select tenant_id, (created_at at time zone 'UTC')::date, user_id, model_id, agent_id,
                  sum(cost), sum(input_tokens), sum(output_tokens), count(*)
           from ins group by 1, 2, 3, 4, 5
           on conflict (tenant_id, day, user_id, model_id, agent_id) do update
           set cost = r.cost + excluded.cost, input_tokens = r.input_tokens + excluded.input_tokens,
               output_tokens = r.output_tokens + excluded.output_tokens, calls = r.calls + excluded.calls, updated_at = now()
         )
         insert into usage_day_rollups as r (tenant_id, day, stripe, model_id, agent_id, cost, input_tokens, output_tokens, calls)
         select tenant_id, (created_at at time zone 'UTC')::date, app.usage_stripe(user_id), model_id, agent_id,
                sum(cost), sum(input_tokens), sum(output_tokens), count(*)
         from ins group by 1, 2, 3, 4, 5
         on conflict (tenant_id, day, model_id, agent_id, stripe) do update
         set cost = r.cost + excluded.cost, input_tokens = r.input_tokens + excluded.input_tokens,
             output_tokens = r.output_tokens + excluded.output_tokens, calls = r.calls + excluded.calls, updated_at = now()`,
        [g.info.id, g.info.users, world.modelIds.slice(0, 2), g.info.agents, USAGE_END, n],
      );
      await q(`alter table usage enable trigger usage_roll_up`);
    });
    done += n;
    bar.update(done);
  }
  bar.finish();
  g.usage += add;
}

/**
 * Buckets of the tenant whose sums differ from its usage rows' (0: the rollups are exact), in
 * usage_rollups (per user, 0021) and usage_day_rollups (per stripe of users, 0025) together.
 */
export async function checkRollups(bare: BareClient, tenantId: string): Promise<number> {
  const [row] = await bare.query<{ n: number }>(
    `select (select count(*)::int
             from (select (created_at at time zone 'UTC')::date as day, user_id, model_id, agent_id,
                          sum(cost) as cost, sum(input_tokens) as input_tokens, sum(output_tokens) as output_tokens, count(*) as calls
                   from usage where tenant_id = $1 group by 1, 2, 3, 4) u
             full join (select * from usage_rollups where tenant_id = $1) r
               on r.day = u.day and r.user_id = u.user_id and r.model_id = u.model_id and r.agent_id is not distinct from u.agent_id
             where u.calls is distinct from r.calls or u.cost is distinct from r.cost
                or u.input_tokens is distinct from r.input_tokens or u.output_tokens is distinct from r.output_tokens)
          + (select count(*)::int
             from (select (created_at at time zone 'UTC')::date as day, app.usage_stripe(user_id) as stripe, model_id, agent_id,
                          sum(cost) as cost, sum(input_tokens) as input_tokens, sum(output_tokens) as output_tokens, count(*) as calls
                   from usage where tenant_id = $1 group by 1, 2, 3, 4) u
             full join (select * from usage_day_rollups where tenant_id = $1) r
               on r.day = u.day and r.stripe = u.stripe and r.model_id = u.model_id and r.agent_id is not distinct from u.agent_id
             where u.calls is distinct from r.calls or u.cost is distinct from r.cost
                or u.input_tokens is distinct from r.input_tokens or u.output_tokens is distinct from r.output_tokens) as n`,
    [tenantId],
  );
  return row?.n ?? -1;
}
