/**
 * The cms's writes to agents, prompts and tools, attacked with raw SQL inside withTenant as the
 * cms's role (app_cms): global rows stay read-only, another tenant's rows stay invisible, a row
 * cannot be written for another tenant or as global, and a prompt version never changes.
 */
import { sql, type RawBuilder } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withTenant } from '../../src/db/tenant.ts';
import { createPromptVersion } from '../../src/queries/prompts.ts';
import { createTool } from '../../src/queries/tools.ts';
import { createAgent } from '../../src/queries/agents.ts';
import { insertAgentCatalog, insertTenantWithUsers, type AgentCatalog } from '../support/agent-fixtures.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let cat: AgentCatalog;
let a: { tenantId: string; userId: string };
let b: { tenantId: string; userId: string };
let bPromptId: number;
let bToolId: number;
let bAgentId: string;
let aPromptId: number;

beforeAll(async () => {
  t = await openTestDb();
  cat = await insertAgentCatalog(t.db);
  a = await insertTenantWithUsers(t.db, cat.roleId, 'walls-a');
  b = await insertTenantWithUsers(t.db, cat.roleId, 'walls-b');
  await withTenant(t.db, b.tenantId, async (tx) => {
    bPromptId = (await createPromptVersion(tx, { name: 'b-prompt', content: 'B secret' })).id;
    bToolId = (await createTool(tx, { name: 'b-tool' })).id;
    bAgentId = (await createAgent(tx, { name: 'B agent', modelId: cat.modelId })).id;
  });
  aPromptId = (await withTenant(t.db, a.tenantId, (tx) => createPromptVersion(tx, { name: 'a-prompt', content: 'A' }))).id;
});
afterAll(() => t?.close());

/** Runs `statement` as app_cms in tenant A and rolls back: its rows, or the SQLSTATE it failed with. */
async function asCms(statement: RawBuilder<unknown>): Promise<{ rows: unknown[] } | { code: string }> {
  let outcome: { rows: unknown[] } | { code: string } = { code: 'not run' };
  await withTenant(
    t.db,
    a.tenantId,
    async (tx) => {
      try {
        outcome = { rows: (await statement.execute(tx)).rows };
      } catch (error) {
        outcome = { code: (error as { code?: string }).code ?? String(error) };
      }
      throw new Error('roll back');
    },
    { role: 'app_cms' },
  ).catch(() => {});
  return outcome;
}

/** Everything that must not change, read as the owner. */
async function globalsAndB() {
  const read = (table: string) => sql`select to_jsonb(x) as row from ${sql.table(table)} x where tenant_id is null or tenant_id = ${b.tenantId}::uuid order by 1`.execute(t.db.withoutPlugins());
  return {
    agents: (await read('agents')).rows,
    prompts: (await read('prompts')).rows,
    tools: (await read('tools')).rows,
    agentTools: (await sql`select agent_id, tool_id from agent_tools order by 1, 2`.execute(t.db.withoutPlugins())).rows,
  };
}

describe('as app_cms with raw SQL in tenant A', () => {
  it('global agents, prompts and tools: readable, never written (0 rows updated or deleted, inserts refused)', async () => {
    const before = await globalsAndB();
    expect(await asCms(sql`select id from agents where id = ${cat.globalAgentId}`)).toEqual({ rows: [{ id: cat.globalAgentId }] });
    expect(await asCms(sql`select id from prompts where id = ${cat.promptId}`)).toEqual({ rows: [{ id: cat.promptId }] });
    expect(await asCms(sql`select id from tools where id = ${cat.tools.search}`)).toEqual({ rows: [{ id: cat.tools.search }] });
    expect(await asCms(sql`update agents set name = 'pwned' where tenant_id is null returning id`)).toEqual({ rows: [] });
    expect(await asCms(sql`delete from agents where tenant_id is null returning id`)).toEqual({ rows: [] });
    expect(await asCms(sql`update tools set endpoint = 'https://evil.example.com' where tenant_id is null returning id`)).toEqual({ rows: [] });
    expect(await asCms(sql`update tools set tenant_id = ${a.tenantId} where tenant_id is null returning id`)).toEqual({ rows: [] });
    expect(await asCms(sql`delete from agent_tools where agent_id = ${cat.globalAgentId} returning tool_id`)).toEqual({ rows: [] });
    // agent_scope defaults to the tenant, which the global agent's scope is not: the foreign key
    // refuses; naming the global scope, the policy does.
    expect(await asCms(sql`insert into agent_tools (agent_id, tool_id) values (${cat.plainGlobalAgentId}, ${cat.tools.code})`)).toEqual({ code: '23503' });
    expect(
      await asCms(sql`insert into agent_tools (agent_scope, agent_id, tool_id) values ('00000000-0000-0000-0000-000000000000', ${cat.plainGlobalAgentId}, ${cat.tools.code})`),
    ).toEqual({ code: '42501' });
    expect(await asCms(sql`insert into prompts (name, version, content) values ('global-by-cms', 1, 'x')`)).toEqual({ code: '42501' });
    expect(await asCms(sql`insert into tools (name) values ('global-by-cms')`)).toEqual({ code: '42501' });
    expect(await asCms(sql`insert into agents (model_id, name) values (${cat.modelId}, 'global-by-cms')`)).toEqual({ code: '42501' });
    // The cms has no DELETE on prompts and tools, nor UPDATE on prompts: versions never change.
    expect(await asCms(sql`delete from tools where tenant_id is null`)).toEqual({ code: '42501' });
    expect(await asCms(sql`delete from prompts where tenant_id is null`)).toEqual({ code: '42501' });
    expect(await asCms(sql`update prompts set content = 'pwned' where id = ${cat.promptId}`)).toEqual({ code: '42501' });
    expect(await asCms(sql`update prompts set content = 'changed' where id = ${aPromptId}`)).toEqual({ code: '42501' });
    expect(await globalsAndB()).toEqual(before);
  });

  it("another tenant's agents, prompts and tools: invisible, unwritable, and rows cannot be made for that tenant", async () => {
    const before = await globalsAndB();
    expect(await asCms(sql`select id from prompts where tenant_id = ${b.tenantId} or id = ${bPromptId}`)).toEqual({ rows: [] });
    expect(await asCms(sql`select id from tools where tenant_id = ${b.tenantId} or id = ${bToolId}`)).toEqual({ rows: [] });
    expect(await asCms(sql`select id from agents where id = ${bAgentId}`)).toEqual({ rows: [] });
    expect(await asCms(sql`update tools set name = 'pwned' where id = ${bToolId} returning id`)).toEqual({ rows: [] });
    expect(await asCms(sql`update agents set retired_at = now() where id = ${bAgentId} returning id`)).toEqual({ rows: [] });
    expect(await asCms(sql`insert into prompts (tenant_id, name, version, content) values (${b.tenantId}, 'planted', 1, 'x')`)).toEqual({ code: '42501' });
    expect(await asCms(sql`insert into tools (tenant_id, name) values (${b.tenantId}, 'planted')`)).toEqual({ code: '42501' });
    // Moving A's own tool to B is refused by the policy's WITH CHECK.
    const own = await withTenant(t.db, a.tenantId, (tx) => createTool(tx, { name: 'a-tool' }));
    expect(await asCms(sql`update tools set tenant_id = ${b.tenantId} where id = ${own.id}`)).toEqual({ code: '42501' });
    expect(await globalsAndB()).toEqual(before);
  });

  it("the tenant's own rows: writable as the functions write them", async () => {
    expect(await asCms(sql`insert into tools (tenant_id, name) values (${a.tenantId}, 'raw-own') returning name`)).toEqual({ rows: [{ name: 'raw-own' }] });
    expect(await asCms(sql`insert into prompts (tenant_id, name, version, content) values (${a.tenantId}, 'raw-own', 1, 'x') returning version`)).toEqual({ rows: [{ version: 1 }] });
  });
});
