/**
 * Shared setup of tests/queries/conversations.test.ts and messages.test.ts: two tenants (A with two
 * users, B with one), a global agent, an agent of A and a private agent of B, all inserted as the
 * owner; and a way to see the exact SQL a query function runs, to EXPLAIN it.
 */
import { randomUUID } from 'node:crypto';
import { CompiledQuery, sql, type Kysely } from 'kysely';
import type { TenantTx } from '../../src/db/tenant-tx.ts';
import type { DB } from '../../src/db/schema.generated.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { insertCatalog, insertTenant } from './fixtures.ts';
import { QueryRecorder } from './query-recorder.ts';

export interface ChatWorld {
  modelId: number;
  roleId: number;
  /** Tenant A: `userId` and a second user `otherUserId`. */
  a: { tenantId: string; userId: string; otherUserId: string; agentId: string };
  /** Tenant B, with an agent only B can see. */
  b: { tenantId: string; userId: string; agentId: string };
  /** An agent with tenant_id NULL, visible to every tenant. */
  globalAgentId: string;
}

/** Inserts (as the owner) the tenants, users and agents every conversation test starts from. */
export async function insertChatWorld(db: Kysely<DB>): Promise<ChatWorld> {
  const { roleId, modelId } = await insertCatalog(db);
  const a = await insertTenant(db, roleId);
  const b = await insertTenant(db, roleId);
  const other = await db
    .insertInto('users')
    .values({ tenantId: a.tenantId, email: `other-${randomUUID().slice(0, 8)}@example.com`, roleId })
    .returning('id')
    .executeTakeFirstOrThrow();
  const agent = (tenantId: string | null, name: string) =>
    db.insertInto('agents').values({ tenantId, modelId, name }).returning('id').executeTakeFirstOrThrow();
  const globalAgent = await agent(null, 'Global helper');
  const aAgent = await agent(a.tenantId, 'A helper');
  const bAgent = await agent(b.tenantId, 'B private helper');
  return {
    modelId,
    roleId,
    a: { ...a, otherUserId: other.id, agentId: aAgent.id },
    b: { ...b, agentId: bAgent.id },
    globalAgentId: globalAgent.id,
  };
}


/** One node of an EXPLAIN (format json) plan. */
export interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Index Cond'?: string;
  'Relation Name'?: string;
  Plans?: PlanNode[];
  [key: string]: unknown;
}

/** The plan node and all below it, depth first. */
export function planNodes(node: PlanNode): PlanNode[] {
  return [node, ...(node.Plans ?? []).flatMap(planNodes)];
}

/**
 * Runs `fn` under withTenant, then EXPLAINs (format json), again as that tenant's app_user, the last
 * statement `fn` ran, with its parameters: the exact SQL a query function sends.
 */
export async function explainLast(db: Kysely<DB>, tenantId: string, fn: (tx: TenantTx) => Promise<unknown>): Promise<{ sql: string; plan: PlanNode }> {
  const capture = new QueryRecorder();
  const spy = db.withPlugin(capture);
  await withTenant(spy, tenantId, fn);
  const last = capture.queries.at(-1);
  if (last === undefined) throw new Error('fn ran no query');
  const compiled = spy.getExecutor().compileQuery(last.node, last.queryId);
  const plan = await withTenant(db, tenantId, (tx) =>
    tx.executeQuery<Record<string, unknown>>(CompiledQuery.raw(`explain (format json) ${compiled.sql}`, [...compiled.parameters])),
  );
  // The single column is "QUERY PLAN" (how the camelCase plugin names it does not matter).
  const json = Object.values(plan.rows[0] ?? {})[0];
  const parsed = (typeof json === 'string' ? JSON.parse(json) : json) as { Plan: PlanNode }[];
  return { sql: compiled.sql, plan: parsed[0]!.Plan };
}

/**
 * Runs `fn` under withTenant and reports what it threw and how many statements it sent (withTenant's
 * own set-up statement not counted): proves that validation happens before any SQL.
 */
export async function runCounting(db: Kysely<DB>, tenantId: string, fn: (tx: TenantTx) => Promise<unknown>): Promise<{ error: unknown; statements: number }> {
  const capture = new QueryRecorder();
  let error: unknown;
  let statements = 0;
  await withTenant(db.withPlugin(capture), tenantId, async (tx) => {
    const before = capture.queries.length;
    try {
      await fn(tx);
    } catch (caught) {
      error = caught;
    }
    statements = capture.queries.length - before;
  });
  return { error, statements };
}

/**
 * Inserts (as the owner, set-based) a tenant with 20 users, `conversations` conversations (half of
 * them of `userId`, every tenth soft-deleted) and `messagesPer` messages in each; then ANALYZE.
 */
export async function insertBigTenant(
  db: Kysely<DB>,
  roleId: number,
  options: { conversations: number; messagesPer: number },
): Promise<{ tenantId: string; userId: string; conversationId: string }> {
  const slug = `big-${randomUUID().slice(0, 8)}`;
  const tenant = await db.insertInto('tenants').values({ name: slug, slug }).returning('id').executeTakeFirstOrThrow();
  const tenantId = tenant.id;
  await sql`
    insert into users (tenant_id, email, role_id)
    select ${tenantId}::uuid, format('u%s@%s.example', lpad(g::text, 2, '0'), ${slug}::text), ${roleId}::int
    from generate_series(0, 19) g`.execute(db);
  await sql`
    with u as (select array_agg(id order by email) as ids from users where tenant_id = ${tenantId}::uuid)
    insert into conversations (tenant_id, user_id, title, deleted, deleted_at, last_activity_at, created_at)
    select ${tenantId}::uuid,
           case when g % 2 = 0 then u.ids[1] else u.ids[2 + g % 19] end,
           'conversation ' || g,
           g % 10 = 0,
           case when g % 10 = 0 then now() end,
           now() - g * interval '1 second',
           now() - g * interval '1 second'
    from u, generate_series(1, ${options.conversations}::int) g`.execute(db);
  await sql`
    insert into messages (tenant_id, conversation_id, role, content, created_at)
    select c.tenant_id, c.id, case when m % 2 = 0 then 'assistant' else 'user' end,
           jsonb_build_object('text', 'message ' || m), c.created_at + m * interval '1 millisecond'
    from conversations c, generate_series(1, ${options.messagesPer}::int) m
    where c.tenant_id = ${tenantId}::uuid`.execute(db);
  await sql`analyze tenants, users, conversations, messages`.execute(db);
  const user = await db.selectFrom('users').select('id').where('tenantId', '=', tenantId).orderBy('email').executeTakeFirstOrThrow();
  const busy = await db
    .selectFrom('conversations')
    .select('id')
    .where('tenantId', '=', tenantId)
    .where('userId', '=', user.id)
    .orderBy('lastActivityAt', 'desc')
    .executeTakeFirstOrThrow();
  return { tenantId, userId: user.id, conversationId: busy.id };
}
