/**
 * The synthetic world, loaded as the owner in big set-based batches (`insert … select from
 * unnest($1::uuid[], …)`): a catalog, many tenants of Zipf-distributed sizes with users, agents,
 * conversations with branched message trees, usage history, and resources chunked into vectors
 * with clustered 1536-d embeddings (clusters unrelated to tenants) and Zipf text. Everything is
 * drawn from seeded streams: the same settings give the same data.
 */
import type { BareClient } from './backend.ts';
import { progress, say } from './progress.ts';
import { apportion, between, clusteredPoints, pick, shuffle, stream, uuid, weightedSampler, zipfWeights, type Random } from './random.ts';
import type { Settings } from './settings.ts';
import { makeTexts, type Texts } from './text.ts';

/** A tenant of the world and what the scenarios need of it. */
export interface TenantInfo {
  index: number;
  id: string;
  slug: string;
  users: string[];
  /** Users with a budget (recordUsage charges them). */
  budgeted: string[];
  /** Users without a budget. */
  unlimited: string[];
  /** The tenant's own agents. */
  agents: string[];
  /** The user each of the tenant's agents belongs to (null: tenant-wide). */
  agentOwners: Map<string, string | null>;
  vectors: number;
}

/** A conversation and the size of its message tree. */
export interface ConversationInfo {
  tenantId: string;
  id: string;
  userId: string;
  messages: number;
  deleted: boolean;
}

/** What was loaded, with handles for the scenarios. */
export interface World {
  settings: Settings;
  texts: Texts;
  /** Draws clustered embeddings; the load used it first, so later points are new. */
  points: ReturnType<typeof clusteredPoints>;
  /** Random cluster numbers (and other draws of the scenarios). */
  random: Random;
  roleId: number;
  modelIds: number[];
  toolIds: number[];
  globalAgents: string[];
  tenants: TenantInfo[];
  /** The tenant owning 80% of the vectors (settings.bigTenantVectors rows). */
  big: TenantInfo;
  /** The tenant owning 5% of the vectors. */
  five: TenantInfo;
  /** A tenant with one user and no vectors, for the ingestion runs. */
  ingest: TenantInfo;
  conversations: ConversationInfo[];
  /** Rows per table after the load. */
  counts: Record<string, number>;
  /** Seconds of each load step. */
  seconds: Record<string, number>;
}

const BASE_TIME = Date.UTC(2025, 5, 1);
const DAY = 86_400_000;

/**
 * Loads the world into a migrated database whose HNSW index has been dropped (see hnsw.ts).
 * `binaryVectors` (server): embeddings go in pgvector's binary form (see vectorBinary).
 */
export async function loadWorld(bare: BareClient, settings: Settings, options: { binaryVectors: boolean }): Promise<World> {
  const seconds: Record<string, number> = {};
  const r = stream(settings.seed, 'world');
  const texts = makeTexts(stream(settings.seed, 'vocabulary'), { clusters: settings.clusters });
  const points = clusteredPoints({ clusters: settings.clusters, seed: settings.seed });

  say('loading the synthetic world (owner, set-based batches)');
  let started = performance.now();
  const catalog = await loadCatalog(bare);
  const tenants = await loadTenants(bare, settings, r);
  const ingest = tenants.pop()!;
  const globalAgents = await loadAgents(bare, tenants, catalog, r);
  seconds.catalogTenantsUsersAgents = (performance.now() - started) / 1000;

  started = performance.now();
  const conversations = await loadConversations(bare, settings, tenants, globalAgents, texts, r);
  seconds.conversationsMessages = (performance.now() - started) / 1000;

  started = performance.now();
  await loadUsageHistory(bare, catalog.modelIds, settings.seed);
  seconds.usage = (performance.now() - started) / 1000;

  const quotas = vectorQuotas(settings, tenants.length);
  tenants.forEach((t, i) => (t.vectors = quotas[i]!));
  started = performance.now();
  await loadVectors(bare, settings, tenants, texts, points, r, options.binaryVectors);
  seconds.vectors = (performance.now() - started) / 1000;

  const counts = await tableCounts(bare);
  return {
    settings,
    texts,
    points,
    random: stream(settings.seed, 'scenarios'),
    roleId: catalog.roleId,
    modelIds: catalog.modelIds,
    toolIds: catalog.toolIds,
    globalAgents,
    tenants,
    big: tenants[0]!,
    five: tenants[1]!,
    ingest,
    conversations,
    counts,
    seconds,
  };
}

/**
 * The agents `userId` of tenant `t` may use: the global ones, the tenant's tenant-wide ones and
 * the user's own (the world shares none), as listAgentsForUser lists them.
 */
export function agentsUsableBy(globalAgents: readonly string[], t: TenantInfo, userId: string): string[] {
  return [...globalAgents, ...t.agents.filter((id) => {
    const owner = t.agentOwners.get(id);
    return owner === null || owner === userId;
  })];
}

/** Vectors per tenant: 80% the big one, 5% the second, the other 15% Zipf-shared by the rest. */
function vectorQuotas(settings: Settings, tenants: number): number[] {
  const total = Math.round(settings.bigTenantVectors / 0.8);
  const five = Math.round(total * 0.05);
  const rest = apportion(total - settings.bigTenantVectors - five, zipfWeights(tenants - 2, 1));
  return [settings.bigTenantVectors, five, ...rest];
}

async function loadCatalog(bare: BareClient) {
  const [role] = await bare.query<{ id: number }>(`insert into roles (name) values ('member') returning id`);
  const [provider] = await bare.query<{ id: number }>(`insert into providers (name, endpoint) values ('bench', 'https://llm.example') returning id`);
  const models = await bare.query<{ id: number }>(
    `insert into models (provider_id, name, internal_name, type, cost_1k_input, cost_1k_output, cost_1k_cache_read, cost_1k_cache_write)
     values ($1, 'Small', 'bench-small', 'chat', 0.00015, 0.0006, 0.000075, 0.0003),
            ($1, 'Large', 'bench-large', 'chat', 0.003, 0.015, 0.0003, 0.00375),
            ($1, 'Embed', 'bench-embed', 'embedding', 0.00002, 0, 0, 0)
     returning id`,
    [provider!.id],
  );
  await bare.query(`insert into prompts (name, version, content) select 'prompt-' || g, 1, repeat('You are a helpful assistant. ', 20) from generate_series(1, 3) g`);
  const tools = await bare.query<{ id: number }>(
    `insert into tools (name, description, type, endpoint, custom_config)
     select 'tool-' || g, 'Tool number ' || g, 'http', 'https://tools.example/' || g, jsonb_build_object('timeout', g * 1000)
     from generate_series(1, 8) g returning id`,
  );
  return { roleId: role!.id, modelIds: models.map((m) => m.id), toolIds: tools.map((t) => t.id) };
}

/** settings.tenants tenants of Zipf sizes (s = 1), then one extra tenant for ingestion (returned last). */
async function loadTenants(bare: BareClient, settings: Settings, r: Random): Promise<TenantInfo[]> {
  const perTenant = apportion(settings.users, zipfWeights(settings.tenants, 1), 2);
  perTenant.push(1); // the ingestion tenant
  const tenants: TenantInfo[] = perTenant.map((_, index) => {
    const slug = index === settings.tenants ? 'bench-ingest' : `tenant-${String(index).padStart(3, '0')}`;
    return { index, id: uuid(r), slug, users: [], budgeted: [], unlimited: [], agents: [], agentOwners: new Map(), vectors: 0 };
  });
  await bare.query(
    `insert into tenants (id, name, slug, plan) select id, 'Tenant ' || slug, slug, plan
     from unnest($1::uuid[], $2::text[], $3::text[]) as t(id, slug, plan)`,
    [tenants.map((t) => t.id), tenants.map((t) => t.slug), tenants.map((t) => (t.index < 5 ? 'enterprise' : 'team'))],
  );
  const rows: { tenant: string; id: string; email: string; budget: string | null }[] = [];
  tenants.forEach((t, i) => {
    for (let u = 0; u < perTenant[i]!; u += 1) {
      const id = uuid(r);
      const budgeted = r() < 0.8 || u === 0;
      t.users.push(id);
      (budgeted ? t.budgeted : t.unlimited).push(id);
      rows.push({ tenant: t.id, id, email: `user${u}@${t.slug}.example`, budget: budgeted ? '1000000.00' : null });
    }
  });
  const [role] = await bare.query<{ id: number }>(`select id from roles where name = 'member'`);
  await bare.query(
    `insert into users (tenant_id, id, email, first_name, last_name, role_id, budget, remaining)
     select tenant_id, id, email, 'First', 'Last', $5, budget, budget
     from unnest($1::uuid[], $2::uuid[], $3::text[], $4::numeric[]) as u(tenant_id, id, email, budget)`,
    [rows.map((x) => x.tenant), rows.map((x) => x.id), rows.map((x) => x.email), rows.map((x) => x.budget), role!.id],
  );
  return tenants;
}

/** 5 global agents; 1–5 agents per tenant (a third of them a user's own), each with 0–3 tools. */
async function loadAgents(bare: BareClient, tenants: TenantInfo[], catalog: { modelIds: number[]; toolIds: number[] }, r: Random): Promise<string[]> {
  const rows: { id: string; tenant: string | null; user: string | null }[] = [];
  const globalAgents = Array.from({ length: 5 }, () => uuid(r));
  for (const id of globalAgents) rows.push({ id, tenant: null, user: null });
  for (const t of tenants) {
    const n = 1 + Math.min(4, Math.floor(t.users.length / 10));
    for (let i = 0; i < n; i += 1) {
      const id = uuid(r);
      const user = r() < 1 / 3 ? pick(r, t.users) : null;
      t.agents.push(id);
      t.agentOwners.set(id, user);
      rows.push({ id, tenant: t.id, user });
    }
  }
  await bare.query(
    `insert into agents (id, tenant_id, user_id, model_id, prompt_id, name, description, model_parameters)
     select id, tenant_id, user_id, ($4::int[])[(1 + n % 2)::int], (1 + n % 3)::int, 'Agent ' || n, 'An agent for benchmarks', '{"temperature": 0.2}'
     from unnest($1::uuid[], $2::uuid[], $3::uuid[]) with ordinality as a(id, tenant_id, user_id, n)`,
    [rows.map((x) => x.id), rows.map((x) => x.tenant), rows.map((x) => x.user), catalog.modelIds],
  );
  const pairs: [string, string, number][] = [];
  for (const row of rows) {
    for (const tool of shuffle(r, [...catalog.toolIds]).slice(0, between(r, 0, 3))) pairs.push([row.tenant ?? '00000000-0000-0000-0000-000000000000', row.id, tool]);
  }
  // agent_scope: the agent's tenant, or the nil UUID for a global agent (migration 0019).
  await bare.query(
    `insert into agent_tools (agent_scope, agent_id, tool_id) select * from unnest($1::uuid[], $2::uuid[], $3::int[])`,
    [pairs.map((p) => p[0]), pairs.map((p) => p[1]), pairs.map((p) => p[2])],
  );
  return globalAgents;
}

/**
 * Conversations (Zipf over tenants, and over users within a tenant: power users), 5% soft-deleted,
 * each with a message tree: mostly a chain, one message in seven a branch (an edit or a
 * regenerated answer) from an earlier message. Messages are inserted with explicit created_at.
 */
async function loadConversations(
  bare: BareClient,
  settings: Settings,
  tenants: TenantInfo[],
  globalAgents: string[],
  texts: Texts,
  r: Random,
): Promise<ConversationInfo[]> {
  const perTenant = apportion(settings.conversations, zipfWeights(tenants.length, 1), 1);
  const conversations: ConversationInfo[] = [];
  const convRows: { c: ConversationInfo; agent: string; title: string; created: number; last: number }[] = [];
  tenants.forEach((t, i) => {
    const userOf = weightedSampler(zipfWeights(t.users.length, 0.7));
    for (let k = 0; k < perTenant[i]!; k += 1) {
      const last = BASE_TIME - Math.floor(r() * 90 * DAY);
      const created = last - Math.floor(r() * 3 * DAY) - 60_000;
      const messages = Math.min(200, Math.max(1, Math.round(-Math.log(1 - r()) * settings.meanMessages)));
      const c: ConversationInfo = { tenantId: t.id, id: uuid(r), userId: t.users[userOf(r)]!, messages, deleted: r() < 0.05 };
      conversations.push(c);
      convRows.push({ c, agent: pick(r, agentsUsableBy(globalAgents, t, c.userId)), title: texts.message(r, between(r, 2, 6)), created, last });
    }
  });
  const totalMessages = conversations.reduce((a, c) => a + c.messages, 0);
  const bar = progress('conversations and messages', totalMessages, 'messages');
  for (let i = 0; i < convRows.length; i += 5000) {
    const batch = convRows.slice(i, i + 5000);
    await bare.query(
      `insert into conversations (tenant_id, id, user_id, agent_id, agent_scope, title, deleted, deleted_at, last_activity_at, created_at, updated_at)
       select c.tenant_id, c.id, c.user_id, c.agent_id, a.scope, c.title, c.deleted, case when c.deleted then c.last_at + interval '1 hour' end,
              c.last_at, c.created_at, c.last_at
       from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::boolean[], $7::timestamptz[], $8::timestamptz[])
         as c(tenant_id, id, user_id, agent_id, title, deleted, last_at, created_at)
       join agents a on a.id = c.agent_id`,
      [
        batch.map((x) => x.c.tenantId), batch.map((x) => x.c.id), batch.map((x) => x.c.userId), batch.map((x) => x.agent),
        batch.map((x) => x.title), batch.map((x) => x.c.deleted), batch.map((x) => new Date(x.last).toISOString()),
        batch.map((x) => new Date(x.created).toISOString()),
      ],
    );
  }
  let done = 0;
  let cols = messageColumns();
  const flush = async () => {
    if (cols.id.length === 0) return;
    await bare.query(
      `insert into messages (tenant_id, id, conversation_id, parent_id, role, content, created_at, updated_at)
       select tenant_id, id, conversation_id, parent_id, role, jsonb_build_object('text', body), created_at, created_at
       from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::timestamptz[])
         as m(tenant_id, id, conversation_id, parent_id, role, body, created_at)`,
      [cols.tenant, cols.id, cols.conversation, cols.parent, cols.role, cols.body, cols.created],
    );
    done += cols.id.length;
    bar.update(done);
    cols = messageColumns();
  };
  for (const { c, created, last } of convRows) {
    const ids: string[] = [];
    const step = Math.max(1, Math.floor((last - created) / c.messages));
    for (let m = 0; m < c.messages; m += 1) {
      const id = uuid(r);
      const parent = m === 0 ? null : r() < 1 / 7 ? pick(r, ids) : ids[m - 1]!;
      ids.push(id);
      cols.tenant.push(c.tenantId);
      cols.id.push(id);
      cols.conversation.push(c.id);
      cols.parent.push(parent);
      cols.role.push(m === 0 ? 'user' : r() < 0.03 ? 'tool' : m % 2 === 1 ? 'assistant' : 'user');
      cols.body.push(texts.message(r, m % 2 === 1 ? between(r, 20, 120) : between(r, 3, 40)));
      cols.created.push(new Date(last - (c.messages - 1 - m) * step).toISOString());
    }
    if (cols.id.length >= 5000) await flush();
  }
  await flush();
  bar.finish();
  return conversations;
}

function messageColumns() {
  return {
    tenant: [] as string[], id: [] as string[], conversation: [] as string[], parent: [] as (string | null)[],
    role: [] as string[], body: [] as string[], created: [] as string[],
  };
}

/** Past usage: 0–6 calls per user (seeded in SQL), and `remaining` set to budget − sum(cost). */
async function loadUsageHistory(bare: BareClient, modelIds: number[], seed: number): Promise<void> {
  await bare.transaction(async (q) => {
    await q(`select setseed($1)`, [((seed % 1000) / 1000) * 2 - 1]);
    await q(
      `insert into usage (tenant_id, user_id, model_id, type, input_tokens, output_tokens, cost, created_at)
       select u.tenant_id, u.id, m.model_id, 'chat', m.input_tokens, m.output_tokens,
              (m.input_tokens * md.cost_1k_input + m.output_tokens * md.cost_1k_output) * 0.001, m.created_at
       from users u
       cross join lateral (
         select ($1::int[])[1 + floor(random() * 2)::int] as model_id, (100 + random() * 4000)::int as input_tokens,
                (50 + random() * 1000)::int as output_tokens, timestamptz '2025-06-01' - random() * interval '90 days' as created_at
         from generate_series(1, floor(random() * 7)::int + (u.id is null)::int)
       ) m
       join models md on md.id = m.model_id`,
      [modelIds],
    );
    await q(
      `update users u set remaining = u.budget - s.spent
       from (select tenant_id, user_id, sum(cost) as spent from usage group by 1, 2) s
       where s.tenant_id = u.tenant_id and s.user_id = u.id and u.budget is not null`,
    );
  });
}

/**
 * Resources of 20–80 chunks each (shuffled across tenants), one topic cluster per document (80%
 * of its chunks; the rest random), each chunk with a clustered embedding and 40–120 words of text.
 * `loadBatch` rows per INSERT; the next batch is built while the server stores the previous one.
 * Embeddings go as pgvector text with 5 decimals (unnest of text[]), or with `binary` as pgvector's
 * binary form, one Buffer parameter per row of a multi-row VALUES (node-postgres sends Buffers in
 * binary format; the server decodes them with vector_recv, no printing or parsing of numbers).
 */
export async function loadVectors(
  bare: BareClient,
  settings: Settings,
  tenants: TenantInfo[],
  texts: Texts,
  points: ReturnType<typeof clusteredPoints>,
  r: Random,
  binary: boolean,
): Promise<void> {
  const docs: { tenant: string; id: string; size: number; cluster: number }[] = [];
  for (const t of tenants) {
    for (let left = t.vectors; left > 0; ) {
      const size = Math.min(left, between(r, 20, 80));
      docs.push({ tenant: t.id, id: uuid(r), size, cluster: Math.floor(r() * settings.clusters) });
      left -= size;
    }
  }
  shuffle(r, docs);
  for (let i = 0; i < docs.length; i += 5000) {
    const batch = docs.slice(i, i + 5000);
    await bare.query(
      `insert into resources (tenant_id, id, name, type, metadata)
       select tenant_id, id, 'document ' || n, 'document', jsonb_build_object('chunks', size)
       from unnest($1::uuid[], $2::uuid[], $3::int[]) with ordinality as d(tenant_id, id, size, n)`,
      [batch.map((d) => d.tenant), batch.map((d) => d.id), batch.map((d) => d.size)],
    );
  }
  const total = docs.reduce((a, d) => a + d.size, 0);
  const bar = progress('vectors (1536-d)', total, 'vectors');
  let inflight: Promise<unknown> = Promise.resolve();
  let done = 0;
  let cols = { tenant: [] as string[], resource: [] as string[], position: [] as number[], content: [] as string[], embedding: [] as (string | Buffer)[] };
  const send = async () => {
    const batch = cols;
    cols = { tenant: [], resource: [], position: [], content: [], embedding: [] };
    await inflight;
    done += batch.tenant.length;
    bar.update(done);
    if (binary) {
      const params: unknown[] = [];
      const rows = batch.tenant.map((tenant, i) => {
        params.push(tenant, batch.resource[i], batch.position[i], batch.content[i], batch.embedding[i]);
        const n = params.length;
        return `($${n - 4}::uuid, $${n - 3}::uuid, $${n - 2}::int, $${n - 1}::text, $${n}::vector)`;
      });
      inflight = bare.query(`insert into vectors (tenant_id, resource_id, position, content, embedding) values ${rows.join(', ')}`, params);
    } else {
      inflight = bare.query(
        `insert into vectors (tenant_id, resource_id, position, content, embedding)
         select tenant_id, resource_id, position, content, embedding::vector
         from unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::text[]) as v(tenant_id, resource_id, position, content, embedding)`,
        [batch.tenant, batch.resource, batch.position, batch.content, batch.embedding],
      );
    }
  };
  for (const doc of docs) {
    for (let p = 0; p < doc.size; p += 1) {
      const cluster = r() < 0.8 ? doc.cluster : Math.floor(r() * settings.clusters);
      cols.tenant.push(doc.tenant);
      cols.resource.push(doc.id);
      cols.position.push(p);
      cols.content.push(texts.chunk(r, cluster, between(r, 40, 120)));
      const embedding = points.point(cluster);
      cols.embedding.push(binary ? vectorBinary(embedding) : vectorText(embedding));
      if (cols.tenant.length >= settings.loadBatch) await send();
    }
  }
  if (cols.tenant.length > 0) await send();
  await inflight;
  bar.finish();
}

/** pgvector text of an embedding, 5 decimals (compact to send and parse; what the database stores is the truth). */
export function vectorText(values: readonly number[]): string {
  let out = '[';
  for (let i = 0; i < values.length; i += 1) out += (i === 0 ? '' : ',') + Math.round(values[i]! * 1e5) / 1e5;
  return `${out}]`;
}

/** pgvector's binary form: int16 dimensions, int16 0, then each value as a big-endian float4. */
export function vectorBinary(values: readonly number[]): Buffer {
  const buffer = Buffer.allocUnsafe(4 + 4 * values.length);
  buffer.writeInt16BE(values.length, 0);
  buffer.writeInt16BE(0, 2);
  for (let i = 0; i < values.length; i += 1) buffer.writeFloatBE(values[i]!, 4 + 4 * i);
  return buffer;
}

async function tableCounts(bare: BareClient): Promise<Record<string, number>> {
  const tables = ['tenants', 'users', 'agents', 'agent_tools', 'conversations', 'messages', 'usage', 'resources', 'vectors'];
  const rows = await bare.query<{ name: string; n: number }>(
    tables.map((t) => `select '${t}' as name, count(*)::int as n from ${t}`).join(' union all '),
  );
  return Object.fromEntries(rows.map((row) => [row.name, Number(row.n)]));
}
