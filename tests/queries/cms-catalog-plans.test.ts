/**
 * The plans of the new lists of the cms (migration 0016's indexes): listAgentShares and
 * listPromptVersions read an index range in order, first page and next, with no Seq Scan and no Sort.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withTenant } from '../../src/db/tenant.ts';
import { listAgentShares } from '../../src/queries/agent-shares.ts';
import { createAgent } from '../../src/queries/agents.ts';
import { listPromptVersions } from '../../src/queries/prompts.ts';
import { insertAgentCatalog, insertTenantWithUsers, type AgentCatalog } from '../support/agent-fixtures.ts';
import { explainLast, planNodes } from '../support/conversation-fixtures.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let cat: AgentCatalog;
let a: { tenantId: string; userId: string };
let agentId: string;
const SHARES = 3000;
const VERSIONS = 500;
/** Other prompts and agents, so that one name or one agent is a small part of its table, as in production. */
const OTHERS = 20_000;

beforeAll(async () => {
  t = await openTestDb();
  cat = await insertAgentCatalog(t.db);
  a = await insertTenantWithUsers(t.db, cat.roleId, 'plans-a');
  const other = await insertTenantWithUsers(t.db, cat.roleId, 'plans-b');
  agentId = (await withTenant(t.db, a.tenantId, (tx) => createAgent(tx, { name: 'Widely shared', modelId: cat.modelId }))).id;
  // As the owner: SHARES users of A, each sharing the agent and the global one; B shares the global one too.
  for (const [tenantId, agents] of [[a.tenantId, [agentId, cat.globalAgentId]], [other.tenantId, [cat.globalAgentId]]] as const) {
    const users = await t.db
      .insertInto('users')
      .values(Array.from({ length: SHARES }, () => ({ tenantId, email: `${randomUUID()}@example.com`, roleId: cat.roleId })))
      .returning('id')
      .execute();
    for (const agent of agents) {
      const scope = agent === agentId ? tenantId : '00000000-0000-0000-0000-000000000000';
      await t.db
        .insertInto('userAgents')
        .values(users.map((u) => ({ tenantId, userId: u.id, agentId: agent, agentScope: scope, role: 'viewer' })))
        .execute();
    }
  }
  await t.db
    .insertInto('prompts')
    .values(Array.from({ length: VERSIONS }, (_, i) => ({ tenantId: a.tenantId, name: 'long-lived', version: i + 1, content: `v${i + 1}` })))
    .execute();
  for (let i = 0; i < OTHERS; i += 5000) {
    await t.db.insertInto('prompts').values(Array.from({ length: 5000 }, (_, j) => ({ name: `global-${i + j}`, version: 1, content: 'g' }))).execute();
    await t.db.insertInto('prompts').values(Array.from({ length: 5000 }, (_, j) => ({ tenantId: other.tenantId, name: `b-${i + j}`, version: 1, content: 'b' }))).execute();
    await t.db.insertInto('agents').values(Array.from({ length: 5000 }, (_, j) => ({ tenantId: other.tenantId, modelId: cat.modelId, name: `B ${i + j}` }))).execute();
  }
  await sql`analyze user_agents, prompts, agents, users`.execute(t.db);
});
afterAll(() => t?.close());

/**
 * No Seq Scan, and the page is a Limit over an Index Scan of `index` (no Sort between) whose condition
 * names every key column it is given: read in index order and stopped, never sorted. (A Sort of
 * the at most limit + 1 rows of that page, above it, is allowed.)
 */
function expectIndexRange(plan: Parameters<typeof planNodes>[0], text: string, index: string, keyColumns: string[]) {
  const nodes = planNodes(plan);
  const shown = JSON.stringify(plan, null, 1);
  expect(nodes.filter((n) => n['Node Type'] === 'Seq Scan'), text).toEqual([]);
  // The Limit of the page: over the index scan, with no Sort between them (Result nodes only project).
  const limit = nodes.find((n) => n['Node Type'] === 'Limit' && planNodes(n).some((m) => m['Index Name'] === index));
  expect(limit, shown).toBeDefined();
  expect(planNodes(limit!).filter((n) => n['Node Type'] === 'Sort'), shown).toEqual([]);
  const scan = planNodes(limit!).find((n) => n['Index Name'] === index)!;
  expect(scan['Node Type'], shown).toMatch(/^Index (Only )?Scan$/);
  for (const column of keyColumns) expect(scan['Index Cond'], shown).toMatch(new RegExp(`\\b${column} = `));
}

describe('plans', () => {
  it('listAgentShares reads user_agents_tenant_agent_created_idx in order, first page and next', async () => {
    const first = await explainLast(t.db, a.tenantId, (tx) => listAgentShares(tx, { agentId, limit: 50 }));
    const page = await withTenant(t.db, a.tenantId, (tx) => listAgentShares(tx, { agentId, limit: 50 }));
    expect(page.items).toHaveLength(50);
    const next = await explainLast(t.db, a.tenantId, (tx) => listAgentShares(tx, { agentId, limit: 50, cursor: page.nextCursor }));
    for (const { sql: text, plan } of [first, next]) expectIndexRange(plan, text, 'user_agents_tenant_agent_created_idx', ['tenant_id', 'agent_id']);
  });

  it('listPromptVersions reads prompts_scope_name_version_key backwards, first page and next', async () => {
    const first = await explainLast(t.db, a.tenantId, (tx) => listPromptVersions(tx, { name: 'long-lived', limit: 50 }));
    const page = await withTenant(t.db, a.tenantId, (tx) => listPromptVersions(tx, { name: 'long-lived', limit: 50 }));
    expect(page.items.map((p) => p.version).slice(0, 2)).toEqual([VERSIONS, VERSIONS - 1]);
    const next = await explainLast(t.db, a.tenantId, (tx) => listPromptVersions(tx, { name: 'long-lived', limit: 50, cursor: page.nextCursor }));
    for (const { sql: text, plan } of [first, next]) expectIndexRange(plan, text, 'prompts_scope_name_version_key', ['scope', 'name']);
  });
});
