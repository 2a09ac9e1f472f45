import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError, ReadOnlyError } from '../../src/db/errors.ts';
import type { TenantTx } from '../../src/db/tenant-tx.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { createAgent, resolveAgent } from '../../src/queries/agents.ts';
import { createTool, getTool, listTools, updateTool, type Tool } from '../../src/queries/tools.ts';
import { insertAgentCatalog, insertTenantWithUsers, type AgentCatalog } from '../support/agent-fixtures.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let cat: AgentCatalog;
let a: { tenantId: string; userId: string; secondUserId: string };
let b: { tenantId: string; userId: string; secondUserId: string };

beforeAll(async () => {
  t = await openTestDb();
  cat = await insertAgentCatalog(t.db);
  a = await insertTenantWithUsers(t.db, cat.roleId, 'tools-a');
  b = await insertTenantWithUsers(t.db, cat.roleId, 'tools-b');
});
afterAll(() => t?.close());

const inA = <T>(fn: (tx: TenantTx) => Promise<T>) => withTenant(t.db, a.tenantId, fn);
const inB = <T>(fn: (tx: TenantTx) => Promise<T>) => withTenant(t.db, b.tenantId, fn);
const ownerRow = (toolId: number) => t.db.selectFrom('tools').selectAll().where('id', '=', toolId).executeTakeFirstOrThrow();

describe('createTool', () => {
  it("creates a tool of the current tenant, usable by the tenant's agents", async () => {
    const tool = await inA((tx) =>
      createTool(tx, { name: 'crm-lookup', type: 'http', endpoint: 'https://crm.example.com/api', customConfig: { timeoutMs: 5000 } }));
    expect(tool).toMatchObject({
      tenantId: a.tenantId, name: 'crm-lookup', type: 'http', endpoint: 'https://crm.example.com/api', customConfig: { timeoutMs: 5000 },
      description: null, authenticationType: null, transportType: null,
    });
    const agent = await inA((tx) => createAgent(tx, { name: 'CRM', modelId: cat.modelId, toolIds: [tool.id, cat.tools.search] }));
    expect((await inA((tx) => resolveAgent(tx, { agentId: agent.id, userId: a.userId }))).tools.map((x) => x.name)).toEqual(['crm-lookup', 'search']);
  });

  it('names are unique per owner: a second tool of that name is refused, a global name or another tenant\'s is free', async () => {
    const name = `dup-${randomUUID().slice(0, 6)}`;
    await inA((tx) => createTool(tx, { name }));
    await inA(async (tx) => {
      await expect(createTool(tx, { name })).rejects.toMatchObject({ name: 'ValidationError', field: 'name' });
      // Nothing aborted: the transaction goes on.
      expect((await createTool(tx, { name: `${name}-2` })).name).toBe(`${name}-2`);
    });
    expect((await inB((tx) => createTool(tx, { name }))).tenantId).toBe(b.tenantId);
    expect((await inA((tx) => createTool(tx, { name: 'search' }))).tenantId).toBe(a.tenantId);
  });

  it("another tenant's tool is invisible: not found by getTool, refused for agents", async () => {
    const theirs = await inB((tx) => createTool(tx, { name: `secret-${randomUUID().slice(0, 6)}` }));
    await expect(inA((tx) => getTool(tx, { toolId: theirs.id }))).rejects.toMatchObject({ name: 'NotFoundError', entity: 'tool' });
    await expect(inA((tx) => createAgent(tx, { name: 'Thief', modelId: cat.modelId, toolIds: [theirs.id] }))).rejects.toMatchObject({
      entity: 'tool', id: String(theirs.id),
    });
  });

  it('validates before any SQL', async () => {
    await expect(inA((tx) => createTool(tx, { name: '' }))).rejects.toMatchObject({ field: 'name' });
    await expect(inA((tx) => createTool(tx, { name: 'x', customConfig: 'no' as never }))).rejects.toMatchObject({ field: 'customConfig' });
    await expect(inA((tx) => createTool(tx, { name: 'x', endpoint: 'e'.repeat(2001) }))).rejects.toMatchObject({ field: 'endpoint' });
    await expect(inA((tx) => createTool(tx, { name: 'x', type: 1 as never }))).rejects.toMatchObject({ field: 'type' });
  });
});

describe('updateTool', () => {
  it('changes the fields given; null clears a text field', async () => {
    const tool = await inA((tx) => createTool(tx, { name: `u-${randomUUID().slice(0, 6)}`, description: 'old', endpoint: 'https://a.example.com' }));
    const updated = await inA((tx) => updateTool(tx, { toolId: tool.id, description: null, endpoint: 'https://b.example.com', customConfig: { v: 2 } }));
    expect(updated).toMatchObject({ id: tool.id, name: tool.name, description: null, endpoint: 'https://b.example.com', customConfig: { v: 2 } });
    expect(await inA((tx) => getTool(tx, { toolId: tool.id }))).toEqual(updated);
  });

  it('refuses a global tool (ReadOnlyError), another tenant\'s (NotFoundError) and a taken name, writing nothing', async () => {
    const before = await ownerRow(cat.tools.search);
    await expect(inA((tx) => updateTool(tx, { toolId: cat.tools.search, endpoint: 'https://evil.example.com' }))).rejects.toBeInstanceOf(ReadOnlyError);
    expect(await ownerRow(cat.tools.search)).toEqual(before);
    const theirs = await inB((tx) => createTool(tx, { name: `b-${randomUUID().slice(0, 6)}` }));
    await expect(inA((tx) => updateTool(tx, { toolId: theirs.id, description: 'mine' }))).rejects.toBeInstanceOf(NotFoundError);
    expect((await ownerRow(theirs.id)).description).toBeNull();
    const [x, y] = await inA(async (tx) => [await createTool(tx, { name: `x-${randomUUID()}` }), await createTool(tx, { name: `y-${randomUUID()}` })]);
    await expect(inA((tx) => updateTool(tx, { toolId: y!.id, name: x!.name }))).rejects.toMatchObject({ name: 'ValidationError', field: 'name' });
    expect((await ownerRow(y!.id)).name).toBe(y!.name);
    await expect(inA((tx) => updateTool(tx, { toolId: y!.id }))).rejects.toMatchObject({ field: 'changes' });
  });
});

describe('listTools', () => {
  it("pages through the global tools and the tenant's own by id; owner narrows it; never another tenant's", async () => {
    const ours: Tool[] = [];
    for (let i = 0; i < 3; i++) ours.push(await inA((tx) => createTool(tx, { name: `page-${i}-${randomUUID().slice(0, 6)}` })));
    await inB((tx) => createTool(tx, { name: `b-page-${randomUUID().slice(0, 6)}` }));
    const seen: Tool[] = [];
    let cursor: string | null = null;
    do {
      const page: Awaited<ReturnType<typeof listTools>> = await inA((tx) => listTools(tx, { limit: 2, cursor }));
      expect(page.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor !== null);
    const expected = await t.db.selectFrom('tools').select('id').where((eb) => eb.or([eb('tenantId', 'is', null), eb('tenantId', '=', a.tenantId)])).orderBy('id').execute();
    expect(seen.map((x) => x.id)).toEqual(expected.map((r) => r.id));
    expect(seen.every((x) => x.tenantId === null || x.tenantId === a.tenantId)).toBe(true);
    const own = await inA((tx) => listTools(tx, { owner: 'tenant', limit: 200 }));
    expect(own.items.every((x) => x.tenantId === a.tenantId)).toBe(true);
    expect(own.items.map((x) => x.id)).toEqual(expect.arrayContaining(ours.map((x) => x.id)));
    const global = await inA((tx) => listTools(tx, { owner: 'global', limit: 200 }));
    const globalIds = await t.db.selectFrom('tools').select('id').where('tenantId', 'is', null).orderBy('id').limit(200).execute();
    expect(global.items.map((x) => x.id)).toEqual(globalIds.map((r) => r.id));
    expect(global.items.map((x) => x.id)).toEqual(expect.arrayContaining(Object.values(cat.tools)));
    const first = await inA((tx) => listTools(tx, { limit: 1 }));
    await expect(inA((tx) => listTools(tx, { owner: 'tenant', cursor: first.nextCursor }))).rejects.toMatchObject({ field: 'cursor' });
    await expect(inB((tx) => listTools(tx, { cursor: first.nextCursor }))).rejects.toMatchObject({ field: 'cursor' });
  });
});
