import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentRetiredError, NotFoundError, ReadOnlyError, ValidationError } from '../../src/db/errors.ts';
import type { DB } from '../../src/db/schema.generated.ts';
import type { TenantTx } from '../../src/db/tenant-tx.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { deleteAgent, setAgentTools, updateAgent } from '../../src/queries/agent-edits.ts';
import { createAgent, getAgent, listAgentsForUser, resolveAgent, shareAgent, type Agent } from '../../src/queries/agents.ts';
import { appendMessage, listMessages } from '../../src/queries/messages.ts';
import { createConversation, getConversation } from '../../src/queries/conversations.ts';
import { createPromptVersion } from '../../src/queries/prompts.ts';
import { createTool } from '../../src/queries/tools.ts';
import { insertAgentCatalog, insertTenantWithUsers, type AgentCatalog } from '../support/agent-fixtures.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let cat: AgentCatalog;
let a: { tenantId: string; userId: string; secondUserId: string };
let b: { tenantId: string; userId: string; secondUserId: string };

beforeAll(async () => {
  t = await openTestDb();
  cat = await insertAgentCatalog(t.db);
  a = await insertTenantWithUsers(t.db, cat.roleId, 'edits-a');
  b = await insertTenantWithUsers(t.db, cat.roleId, 'edits-b');
});
afterAll(() => t?.close());

const inA = <T>(fn: (tx: TenantTx) => Promise<T>) => withTenant(t.db, a.tenantId, fn);
const inB = <T>(fn: (tx: TenantTx) => Promise<T>) => withTenant(t.db, b.tenantId, fn);
const newAgent = (params: Partial<Parameters<typeof createAgent>[1]> = {}) =>
  inA((tx) => createAgent(tx, { name: `Agent ${randomUUID().slice(0, 6)}`, modelId: cat.modelId, ...params }));
const ownerRow = (agentId: string) => t.db.selectFrom('agents').selectAll().where('id', '=', agentId).executeTakeFirstOrThrow();
const toolIdsOf = async (agentId: string) =>
  (await t.db.selectFrom('agentTools').select('toolId').where('agentId', '=', agentId).orderBy('toolId').execute()).map((r) => r.toolId);

describe('updateAgent', () => {
  it('changes the fields given and leaves the others', async () => {
    const agent = await newAgent({ description: 'first', promptId: cat.promptId, modelParameters: { temperature: 0.2 } });
    const updated = await inA((tx) => updateAgent(tx, { agentId: agent.id, name: 'Renamed', modelParameters: { temperature: 0.9, top_p: 1 } }));
    expect(updated).toMatchObject({
      id: agent.id, name: 'Renamed', description: 'first', promptId: cat.promptId, modelId: cat.modelId,
      modelParameters: { temperature: 0.9, top_p: 1 }, promptFollowsLatest: false, retiredAt: null,
    });
    expect(updated.updatedAt.getTime()).toBeGreaterThanOrEqual(agent.updatedAt.getTime());
    expect(await inA((tx) => getAgent(tx, { agentId: agent.id }))).toEqual(updated);
    const cleared = await inA((tx) => updateAgent(tx, { agentId: agent.id, description: null, promptId: null }));
    expect(cleared).toMatchObject({ description: null, promptId: null, name: 'Renamed' });
  });

  it('refuses a global agent (ReadOnlyError) and another tenant\'s (NotFoundError), writing nothing', async () => {
    const before = await ownerRow(cat.globalAgentId);
    await expect(inA((tx) => updateAgent(tx, { agentId: cat.globalAgentId, name: 'Hijacked' }))).rejects.toBeInstanceOf(ReadOnlyError);
    expect(await ownerRow(cat.globalAgentId)).toEqual(before);
    const bAgent = await inB((tx) => createAgent(tx, { name: 'B only', modelId: cat.modelId }));
    const error = await inA((tx) => updateAgent(tx, { agentId: bAgent.id, name: 'Hijacked' })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NotFoundError);
    expect(error).toMatchObject({ entity: 'agent', id: bAgent.id });
    expect((await ownerRow(bAgent.id)).name).toBe('B only');
  });

  it('refuses an unknown model, and a prompt of another tenant, as not found, and the transaction goes on', async () => {
    const agent = await newAgent();
    const bPrompt = await inB((tx) => createPromptVersion(tx, { name: 'b-secret', content: 'B only' }));
    await inA(async (tx) => {
      await expect(updateAgent(tx, { agentId: agent.id, modelId: 999_999 })).rejects.toMatchObject({ name: 'NotFoundError', entity: 'model' });
      await expect(updateAgent(tx, { agentId: agent.id, promptId: bPrompt.id })).rejects.toMatchObject({ name: 'NotFoundError', entity: 'prompt' });
      // Nothing aborted the transaction: it still works.
      expect((await updateAgent(tx, { agentId: agent.id, name: 'Still fine' })).name).toBe('Still fine');
    });
    expect((await ownerRow(agent.id)).promptId).toBeNull();
  });

  it('validates before any SQL', async () => {
    const agent = await newAgent();
    await expect(inA((tx) => updateAgent(tx, { agentId: agent.id }))).rejects.toMatchObject({ name: 'ValidationError', field: 'changes' });
    await expect(inA((tx) => updateAgent(tx, { agentId: agent.id, name: ' ' }))).rejects.toMatchObject({ field: 'name' });
    await expect(inA((tx) => updateAgent(tx, { agentId: 'nope', name: 'x' }))).rejects.toMatchObject({ field: 'agentId' });
    await expect(inA((tx) => updateAgent(tx, { agentId: agent.id, modelParameters: [] as never }))).rejects.toBeInstanceOf(ValidationError);
    await expect(inA((tx) => updateAgent(tx, { agentId: agent.id, promptFollowsLatest: 'yes' as never }))).rejects.toMatchObject({ field: 'promptFollowsLatest' });
  });
});

describe('deleteAgent: retiring', () => {
  it('keeps the conversations made with it working, with their history; refuses new conversations and shares; leaves listAgentsForUser', async () => {
    const agent = await newAgent({ promptId: cat.promptId, toolIds: [cat.tools.search] });
    const convo = await inA((tx) => createConversation(tx, { userId: a.userId, agentId: agent.id }));
    await inA((tx) => appendMessage(tx, { conversationId: convo.id, role: 'user', content: { text: 'before' } }));
    await inA((tx) => shareAgent(tx, { agentId: agent.id, userId: a.secondUserId, role: 'viewer' }));

    const retired = await inA((tx) => deleteAgent(tx, { agentId: agent.id }));
    expect(retired.retiredAt).toBeInstanceOf(Date);
    expect(retired).toMatchObject({ id: agent.id, name: agent.name });

    // The existing conversation: still names the agent, takes messages, resolves the agent.
    expect((await inA((tx) => getConversation(tx, { conversationId: convo.id }))).agentId).toBe(agent.id);
    await inA((tx) => appendMessage(tx, { conversationId: convo.id, role: 'user', content: { text: 'after' } }));
    expect((await inA((tx) => listMessages(tx, { conversationId: convo.id }))).items.map((m) => m.content)).toEqual(
      expect.arrayContaining([{ text: 'before' }, { text: 'after' }]),
    );
    const resolved = await inA((tx) => resolveAgent(tx, { agentId: agent.id, userId: a.userId }));
    expect(resolved.agent.retiredAt).toEqual(retired.retiredAt);
    expect(resolved.tools.map((tool) => tool.id)).toEqual([cat.tools.search]);

    // New uses are refused, naming the reason.
    await expect(inA((tx) => createConversation(tx, { userId: a.userId, agentId: agent.id }))).rejects.toBeInstanceOf(AgentRetiredError);
    await expect(inA((tx) => shareAgent(tx, { agentId: agent.id, userId: a.userId, role: 'editor' }))).rejects.toBeInstanceOf(AgentRetiredError);
    // Even re-sharing it as it is shared already.
    await expect(inA((tx) => shareAgent(tx, { agentId: agent.id, userId: a.secondUserId, role: 'viewer' }))).rejects.toBeInstanceOf(AgentRetiredError);
    await expect(inA((tx) => updateAgent(tx, { agentId: agent.id, name: 'Back' }))).rejects.toBeInstanceOf(AgentRetiredError);
    await expect(inA((tx) => setAgentTools(tx, { agentId: agent.id, toolIds: [] }))).rejects.toBeInstanceOf(AgentRetiredError);
    const listed = await inA((tx) => listAgentsForUser(tx, { userId: a.userId, limit: 200 }));
    expect(listed.items.map((x) => x.id)).not.toContain(agent.id);
    const sharedList = await inA((tx) => listAgentsForUser(tx, { userId: a.secondUserId, limit: 200 }));
    expect(sharedList.items.map((x) => x.id)).not.toContain(agent.id);

    // Retiring again returns it unchanged.
    expect(await inA((tx) => deleteAgent(tx, { agentId: agent.id }))).toEqual(retired);
  });

  it('refuses a global agent (ReadOnlyError) and another tenant\'s (NotFoundError)', async () => {
    await expect(inA((tx) => deleteAgent(tx, { agentId: cat.globalAgentId }))).rejects.toBeInstanceOf(ReadOnlyError);
    expect((await ownerRow(cat.globalAgentId)).retiredAt).toBeNull();
    const bAgent = await inB((tx) => createAgent(tx, { name: 'B keeps', modelId: cat.modelId }));
    await expect(inA((tx) => deleteAgent(tx, { agentId: bAgent.id }))).rejects.toMatchObject({ name: 'NotFoundError', entity: 'agent' });
    expect((await ownerRow(bAgent.id)).retiredAt).toBeNull();
    await expect(inA((tx) => deleteAgent(tx, { agentId: randomUUID() }))).rejects.toBeInstanceOf(NotFoundError);
  });
});

describe('setAgentTools', () => {
  it('replaces the set: removes, keeps and adds; returns the tools by name', async () => {
    const agent = await newAgent({ toolIds: [cat.tools.code, cat.tools.search] });
    const tools = await inA((tx) => setAgentTools(tx, { agentId: agent.id, toolIds: [cat.tools.search, cat.tools.browse] }));
    expect(tools.map((tool) => tool.name)).toEqual(['browse', 'search']);
    expect(await toolIdsOf(agent.id)).toEqual([cat.tools.search, cat.tools.browse].sort((x, y) => x - y));
    expect(await inA((tx) => setAgentTools(tx, { agentId: agent.id, toolIds: [] }))).toEqual([]);
    expect(await toolIdsOf(agent.id)).toEqual([]);
  });

  it("takes the tenant's own tools, refuses another tenant's and unknown ones as not found, changing nothing", async () => {
    const agent = await newAgent({ toolIds: [cat.tools.code] });
    const own = await inA((tx) => createTool(tx, { name: `own-${randomUUID().slice(0, 6)}` }));
    const theirs = await inB((tx) => createTool(tx, { name: `theirs-${randomUUID().slice(0, 6)}` }));
    expect((await inA((tx) => setAgentTools(tx, { agentId: agent.id, toolIds: [own.id, cat.tools.code] }))).map((x) => x.id)).toEqual(
      [cat.tools.code, own.id],
    );
    const error = await inA((tx) => setAgentTools(tx, { agentId: agent.id, toolIds: [cat.tools.search, theirs.id] })).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'NotFoundError', entity: 'tool', id: String(theirs.id) });
    await expect(inA((tx) => setAgentTools(tx, { agentId: agent.id, toolIds: [999_999] }))).rejects.toMatchObject({ entity: 'tool', id: '999999' });
    expect(await toolIdsOf(agent.id)).toEqual([cat.tools.code, own.id].sort((x, y) => x - y));
  });

  it("refuses a global agent's tools (ReadOnlyError) and another tenant's agent (NotFoundError)", async () => {
    const before = await toolIdsOf(cat.globalAgentId);
    await expect(inA((tx) => setAgentTools(tx, { agentId: cat.globalAgentId, toolIds: [] }))).rejects.toBeInstanceOf(ReadOnlyError);
    expect(await toolIdsOf(cat.globalAgentId)).toEqual(before);
    const bAgent = await inB((tx) => createAgent(tx, { name: 'B tools', modelId: cat.modelId, toolIds: [cat.tools.code] }));
    await expect(inA((tx) => setAgentTools(tx, { agentId: bAgent.id, toolIds: [] }))).rejects.toMatchObject({ entity: 'agent' });
    expect(await toolIdsOf(bAgent.id)).toEqual([cat.tools.code]);
  });

  it('validates the list before any SQL', async () => {
    const agent = await newAgent();
    await expect(inA((tx) => setAgentTools(tx, { agentId: agent.id, toolIds: [1, 1] }))).rejects.toMatchObject({ field: 'toolIds' });
    await expect(inA((tx) => setAgentTools(tx, { agentId: agent.id, toolIds: undefined as never }))).rejects.toMatchObject({ field: 'toolIds' });
    await expect(inA((tx) => setAgentTools(tx, { agentId: agent.id, toolIds: Array.from({ length: 101 }, (_, i) => i + 1) }))).rejects.toMatchObject({ field: 'toolIds' });
  });

  describe.runIf(onServer)('concurrently, on the server', () => {
    let pool: Kysely<DB>;
    beforeAll(() => {
      pool = t.open(8);
    });

    it('calls for one agent run one after the other: the result is exactly one of the sets, never a mix', async () => {
      const sets = [[cat.tools.code], [cat.tools.search, cat.tools.browse], [cat.tools.browse], [cat.tools.code, cat.tools.search, cat.tools.browse], []];
      for (let round = 0; round < 5; round++) {
        const agent: Agent = await newAgent({ toolIds: [cat.tools.search] });
        const results = await Promise.all(sets.map((toolIds) => withTenant(pool, a.tenantId, (tx) => setAgentTools(tx, { agentId: agent.id, toolIds }))));
        expect(results.map((tools) => tools.length)).toEqual(sets.map((s) => s.length));
        const final = await toolIdsOf(agent.id);
        expect(sets.map((s) => [...s].sort((x, y) => x - y))).toContainEqual(final);
      }
    });
  });
});
