import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TenantTx } from '../../src/db/tenant-tx.ts';
import { NotFoundError, TenantContextError, ValidationError } from '../../src/db/errors.ts';
import type { DB } from '../../src/db/schema.generated.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { createUser } from '../../src/queries/users.ts';
import { createAgent, getAgent, listAgentsForUser, resolveAgent, shareAgent, type Agent } from '../../src/queries/agents.ts';
import {
  insertAgentCatalog,
  insertAgentsOfEveryKind,
  insertTenantWithUsers,
  SECRET_API_KEY,
  type AgentCatalog,
} from '../support/agent-fixtures.ts';
import { QueryRecorder } from '../support/query-recorder.ts';
import { encodeCursor, type Page } from '../../src/queries/cursor.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let cat: AgentCatalog;
let a: { tenantId: string; userId: string; secondUserId: string };
let b: { tenantId: string; userId: string; secondUserId: string };
const counter = new QueryRecorder();
let counted: Kysely<DB>;

beforeAll(async () => {
  t = await openTestDb();
  cat = await insertAgentCatalog(t.db);
  a = await insertTenantWithUsers(t.db, cat.roleId, 'tenant-a');
  b = await insertTenantWithUsers(t.db, cat.roleId, 'tenant-b');
  counted = t.db.withPlugin(counter);
});
afterAll(() => t?.close());

const inA = <T>(fn: (tx: TenantTx) => Promise<T>) => withTenant(t.db, a.tenantId, fn);
const inB = <T>(fn: (tx: TenantTx) => Promise<T>) => withTenant(t.db, b.tenantId, fn);

/** Every agent, agent_tools and user_agents row, read as the owner: to prove that nothing changed. */
async function snapshot() {
  const agents = await t.db.selectFrom('agents').select(['id', 'tenantId', 'userId', 'name', 'modelParameters', 'updatedAt']).orderBy('id').execute();
  const agentTools = await t.db.selectFrom('agentTools').select(['agentId', 'toolId']).orderBy('agentId').orderBy('toolId').execute();
  const userAgents = await t.db.selectFrom('userAgents').select(['id', 'userId', 'agentId', 'role', 'updatedAt']).orderBy('id').execute();
  return { agents, agentTools, userAgents };
}

async function toolIdsOf(agentId: string): Promise<number[]> {
  const rows = await t.db.selectFrom('agentTools').select('toolId').where('agentId', '=', agentId).orderBy('toolId').execute();
  return rows.map((r) => r.toolId);
}

describe('createAgent', () => {
  it('creates a tenant-wide agent of the current tenant, with its tools attached in the same call', async () => {
    const agent = await inA((tx) => createAgent(tx, { name: 'Team helper', modelId: cat.modelId, toolIds: [cat.tools.search, cat.tools.code] }));
    expect(agent).toMatchObject({
      tenantId: a.tenantId, userId: null, modelId: cat.modelId, promptId: null, name: 'Team helper', description: null, modelParameters: {},
    });
    expect(agent.createdAt).toBeInstanceOf(Date);
    expect(await toolIdsOf(agent.id)).toEqual([cat.tools.search, cat.tools.code].sort((x, y) => x - y));
    const row = await t.db.selectFrom('agents').select(['tenantId', 'userId']).where('id', '=', agent.id).executeTakeFirstOrThrow();
    expect(row).toEqual({ tenantId: a.tenantId, userId: null });
  });

  it("creates a user's agent with a prompt, a description and model parameters", async () => {
    const params = { temperature: 0.2, stop: ['\n\n'], nested: { maxTokens: 100, tags: [true, null, 'x'] } };
    const agent = await inA((tx) =>
      createAgent(tx, { name: 'Alice private', modelId: cat.modelId, promptId: cat.promptId, userId: a.userId, description: 'mine', modelParameters: params }),
    );
    expect(agent).toMatchObject({ tenantId: a.tenantId, userId: a.userId, promptId: cat.promptId, description: 'mine', modelParameters: params });
    expect(await inA((tx) => getAgent(tx, { agentId: agent.id }))).toEqual(agent);
    expect(await toolIdsOf(agent.id)).toEqual([]);
  });

  it('refuses bad parameters before any SQL, naming the field', async () => {
    const ok = { name: 'x', modelId: 1 };
    const cases: Array<[string, Record<string, unknown>]> = [
      ['name', { ...ok, name: '' }],
      ['name', { ...ok, name: '   ' }],
      ['name', { ...ok, name: 42 }],
      ['modelId', { ...ok, modelId: 1.5 }],
      ['modelId', { ...ok, modelId: '1' }],
      ['promptId', { ...ok, promptId: -1 }],
      ['userId', { ...ok, userId: 'not-a-uuid' }],
      ['description', { ...ok, description: 42 }],
      ['modelParameters', { ...ok, modelParameters: [] }],
      ['modelParameters', { ...ok, modelParameters: null }],
      ['modelParameters', { ...ok, modelParameters: '{"temperature":1}' }],
      ['modelParameters', { ...ok, modelParameters: new Map() }],
      ['modelParameters', { ...ok, modelParameters: { when: new Date() } }],
      ['modelParameters', { ...ok, modelParameters: { temperature: Number.NaN } }],
      ['modelParameters', { ...ok, modelParameters: { big: 1n } }],
      ['toolIds', { ...ok, toolIds: 'search' }],
      ['toolIds', { ...ok, toolIds: [1, 'two'] }],
      ['toolIds', { ...ok, toolIds: [1.5] }],
      ['toolIds', { ...ok, toolIds: [0] }],
      ['toolIds', { ...ok, toolIds: [3, 1, 3] }],
    ];
    await withTenant(counted, a.tenantId, async (tx) => {
      counter.reset();
      for (const [field, params] of cases) {
        const attempt = createAgent(tx, params as never);
        await expect(attempt, `${field}: ${String(JSON.stringify(params, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v)))}`).rejects.toBeInstanceOf(ValidationError);
        await expect(attempt).rejects.toMatchObject({ field });
      }
      expect(counter.kinds).toEqual([]);
    });
  });

  it('an unknown model, prompt or tool is NotFoundError naming it; nothing is inserted', async () => {
    const before = await snapshot();
    await expect(inA((tx) => createAgent(tx, { name: 'No model', modelId: 999_999 }))).rejects.toMatchObject({
      name: 'NotFoundError', entity: 'model', id: '999999',
    });
    await expect(inA((tx) => createAgent(tx, { name: 'No prompt', modelId: cat.modelId, promptId: 999_998 }))).rejects.toMatchObject({
      name: 'NotFoundError', entity: 'prompt', id: '999998',
    });
    await expect(
      inA((tx) => createAgent(tx, { name: 'No tool', modelId: cat.modelId, toolIds: [cat.tools.search, 999_997, 999_996] })),
    ).rejects.toMatchObject({ name: 'NotFoundError', entity: 'tool', id: '999997' });
    expect(await snapshot()).toEqual(before);
  });

  it('attaches tools atomically: a bad tool id inserts neither the agent nor any tool, and the transaction goes on', async () => {
    const before = await snapshot();
    const after = await inA(async (tx) => {
      await expect(
        createAgent(tx, { name: 'Doomed', modelId: cat.modelId, toolIds: [cat.tools.search, 424_242, cat.tools.code] }),
      ).rejects.toThrow(new NotFoundError('tool', 424_242));
      // No statement failed in the database: the caller's transaction is still usable.
      return createAgent(tx, { name: 'After the bad tool', modelId: cat.modelId, toolIds: [cat.tools.browse] });
    });
    const now = await snapshot();
    expect(now.agents.filter((r) => r.name === 'Doomed')).toEqual([]);
    expect(now.agents.map((r) => r.id).sort()).toEqual([...before.agents.map((r) => r.id), after.id].sort());
    expect(now.agentTools.length).toBe(before.agentTools.length + 1);
    expect(await toolIdsOf(after.id)).toEqual([cat.tools.browse]);
  });

  it('a user of another tenant is NotFoundError("user"), exactly like a user that does not exist', async () => {
    const before = await snapshot();
    const unknown = randomUUID();
    await expect(inA((tx) => createAgent(tx, { name: 'Planted', modelId: cat.modelId, userId: b.userId }))).rejects.toThrow(
      new NotFoundError('user', b.userId),
    );
    await expect(inA((tx) => createAgent(tx, { name: 'Planted', modelId: cat.modelId, userId: unknown }))).rejects.toThrow(
      new NotFoundError('user', unknown),
    );
    expect(await snapshot()).toEqual(before);
  });

  it('keeps the keys inside model parameters as given (top_p stays top_p)', async () => {
    const modelParameters = { top_p: 0.9, max_tokens: 100, response_format: { json_schema: { type: 'object' } } };
    const agent = await inA((tx) => createAgent(tx, { name: 'Snake keys', modelId: cat.modelId, modelParameters }));
    expect(agent.modelParameters).toEqual(modelParameters);
    expect((await inA((tx) => getAgent(tx, { agentId: agent.id }))).modelParameters).toEqual(modelParameters);
    const stored = await t.db.withoutPlugins().selectFrom('agents').select(sql<unknown>`model_parameters`.as('p')).where('id', '=', agent.id).executeTakeFirstOrThrow();
    expect(stored.p).toEqual(modelParameters);
  });
});

describe('getAgent', () => {
  it("returns a global agent and the tenant's own", async () => {
    const global = await inA((tx) => getAgent(tx, { agentId: cat.globalAgentId }));
    expect(global).toMatchObject({ id: cat.globalAgentId, tenantId: null, userId: null, name: 'Standard Chat', modelParameters: { temperature: 0.7 } });
    const own = await inA((tx) => createAgent(tx, { name: 'Own', modelId: cat.modelId }));
    expect(await inA((tx) => getAgent(tx, { agentId: own.id }))).toEqual(own);
  });

  it("another tenant's agent is NotFoundError, exactly like an unknown id", async () => {
    const theirs = await inB((tx) => createAgent(tx, { name: 'B secret', modelId: cat.modelId }));
    await expect(inA((tx) => getAgent(tx, { agentId: theirs.id }))).rejects.toThrow(new NotFoundError('agent', theirs.id));
    const unknown = randomUUID();
    await expect(inA((tx) => getAgent(tx, { agentId: unknown }))).rejects.toThrow(new NotFoundError('agent', unknown));
    await expect(inA((tx) => getAgent(tx, { agentId: 'nope' }))).rejects.toMatchObject({ name: 'ValidationError', field: 'agentId' });
  });
});

describe('listAgentsForUser', () => {
  // A tenant of its own, so that the other tests' agents do not show up here.
  let c: { tenantId: string; userId: string; secondUserId: string };
  let dave: string;
  let erin: string;
  const ids: Record<string, string> = {};
  let otherTenantIds: string[];
  const inC = <T>(fn: (tx: TenantTx) => Promise<T>) => withTenant(t.db, c.tenantId, fn);

  beforeAll(async () => {
    c = await insertTenantWithUsers(t.db, cat.roleId, 'tenant-c');
    dave = c.userId;
    erin = c.secondUserId;
    await inC(async (tx) => {
      const make = async (key: string, name: string, userId?: string) => {
        ids[key] = (await createAgent(tx, { name, modelId: cat.modelId, ...(userId === undefined ? {} : { userId }) })).id;
      };
      await make('team1', 'Team helper');
      await make('team2', 'Team helper');
      await make('daveOwn', 'Alpha (dave)', dave);
      await make('erinShared', 'Beta (erin, shared)', erin);
      await make('erinPrivate', 'Gamma (erin private)', erin);
      await shareAgent(tx, { agentId: ids.erinShared!, userId: dave, role: 'viewer' });
      // Shares that would duplicate rows if the query joined user_agents.
      await shareAgent(tx, { agentId: ids.daveOwn!, userId: dave, role: 'owner' });
      await shareAgent(tx, { agentId: cat.globalAgentId, userId: dave, role: 'viewer' });
      await shareAgent(tx, { agentId: ids.team1!, userId: dave, role: 'editor' });
    });
    otherTenantIds = await inB(async (tx) => [
      (await createAgent(tx, { name: 'Beta other tenant', modelId: cat.modelId })).id,
      (await createAgent(tx, { name: 'Alpha other tenant', modelId: cat.modelId, userId: b.userId })).id,
    ]);
  });

  /** The keyset order: created_at descending, then id descending (agents made in one transaction share created_at). */
  const newestFirst = (x: Agent, y: Agent) =>
    y.createdAt.getTime() - x.createdAt.getTime() || (x.id < y.id ? 1 : x.id > y.id ? -1 : 0);

  /** Every page of the user's list, walked with `limit`. */
  async function walk(userId: string, limit: number): Promise<{ pages: Agent[][]; cursors: (string | null)[] }> {
    const pages: Agent[][] = [];
    const cursors: (string | null)[] = [];
    let cursor: string | null = null;
    do {
      const page: Page<Agent> = await inC((tx) => listAgentsForUser(tx, { userId, limit, cursor }));
      pages.push(page.items);
      cursors.push(page.nextCursor);
      cursor = page.nextCursor;
    } while (cursor !== null && pages.length < 100);
    return { pages, cursors };
  }

  it('returns the global, tenant-wide, own and shared agents, each once, newest first (then by id), in one statement', async () => {
    const page = await withTenant(counted, c.tenantId, async (tx) => {
      counter.reset();
      const agents = await listAgentsForUser(tx, { userId: dave });
      expect(counter.count).toBe(1);
      return agents;
    });
    // Tenant c's agents were made in one transaction (one created_at): by id, descending. The
    // global ones are older, FedPulse inserted after Standard Chat.
    const tenantC = [ids.team1!, ids.team2!, ids.daveOwn!, ids.erinShared!].sort().reverse();
    expect(page.items.map((x) => x.id)).toEqual([...tenantC, cat.plainGlobalAgentId, cat.globalAgentId]);
    expect(page.nextCursor).toBeNull();
    expect([...page.items].sort(newestFirst)).toEqual(page.items);
    expect(page.items.find((x) => x.id === ids.daveOwn)).toMatchObject({ tenantId: c.tenantId, userId: dave, modelParameters: {} });
  });

  it('a walk over pages returns every agent exactly once, in order, also across agents with the same created_at', async () => {
    const all = (await inC((tx) => listAgentsForUser(tx, { userId: dave }))).items;
    expect(all).toHaveLength(6);
    for (const limit of [1, 2, 4, 5, 6]) {
      const { pages, cursors } = await walk(dave, limit);
      expect(pages.flat()).toEqual(all);
      expect(pages.map((p) => p.length)).toEqual(Array.from({ length: Math.ceil(6 / limit) }, (_, i) => Math.min(limit, 6 - i * limit)));
      // A cursor only when there is a further row: a full last page ends the walk without an empty page.
      expect(cursors.at(-1)).toBeNull();
      expect(cursors.slice(0, -1).every((cursor) => typeof cursor === 'string')).toBe(true);
    }
  });

  it('an agent created during a walk sorts above the cursor: not in this walk, first in the next', async () => {
    // A user of its own, so that the agent added here changes no other test's list.
    const frank = (await inC((tx) => createUser(tx, { email: 'frank@example.com', roleId: cat.roleId }))).user.id;
    const first = await inC((tx) => listAgentsForUser(tx, { userId: frank, limit: 2 }));
    const added = await inC((tx) => createAgent(tx, { name: 'Added mid-walk', modelId: cat.modelId, userId: frank }));
    const rest: Agent[] = [];
    let cursor = first.nextCursor;
    expect(cursor).not.toBeNull();
    while (cursor !== null) {
      const page: Page<Agent> = await inC((tx) => listAgentsForUser(tx, { userId: frank, limit: 2, cursor }));
      rest.push(...page.items);
      cursor = page.nextCursor;
    }
    const walked = [...first.items, ...rest].map((x) => x.id);
    // Global and tenant-wide agents: team1, team2, FedPulse, Standard Chat.
    expect(walked).toHaveLength(4);
    expect(walked).not.toContain(added.id);
    expect((await inC((tx) => listAgentsForUser(tx, { userId: frank, limit: 1 }))).items.map((x) => x.id)).toEqual([added.id]);
  });

  it('limit is 1..200 (default 50); a cursor of another user, another list or garbage is ValidationError("cursor")', async () => {
    await expect(inC((tx) => listAgentsForUser(tx, { userId: dave, limit: 0 }))).rejects.toMatchObject({ name: 'ValidationError', field: 'limit' });
    await expect(inC((tx) => listAgentsForUser(tx, { userId: dave, limit: 201 }))).rejects.toMatchObject({ name: 'ValidationError', field: 'limit' });
    expect((await inC((tx) => listAgentsForUser(tx, { userId: dave, limit: 200 }))).items).toHaveLength(6);
    const davesCursor = (await inC((tx) => listAgentsForUser(tx, { userId: dave, limit: 1 }))).nextCursor;
    expect(davesCursor).not.toBeNull();
    await expect(inC((tx) => listAgentsForUser(tx, { userId: erin, cursor: davesCursor }))).rejects.toMatchObject({ name: 'ValidationError', field: 'cursor' });
    await expect(inB((tx) => listAgentsForUser(tx, { userId: dave, cursor: davesCursor }))).rejects.toMatchObject({ name: 'ValidationError', field: 'cursor' });
    await expect(inC((tx) => listAgentsForUser(tx, { userId: dave, cursor: 'garbage' }))).rejects.toMatchObject({ name: 'ValidationError', field: 'cursor' });
    const resourcesCursor = encodeCursor({ list: 'resources', tenantId: c.tenantId, scope: dave }, { at: '2025-01-01T00:00:00.000000Z', id: randomUUID() });
    await expect(inC((tx) => listAgentsForUser(tx, { userId: dave, cursor: resourcesCursor }))).rejects.toMatchObject({ name: 'ValidationError', field: 'cursor' });
  });

  it("leaves out other users' private agents of the tenant and every agent of other tenants", async () => {
    const forErin = (await inC((tx) => listAgentsForUser(tx, { userId: erin }))).items;
    expect(forErin.map((x) => x.name).sort()).toEqual(['Beta (erin, shared)', 'FedPulse', 'Gamma (erin private)', 'Standard Chat', 'Team helper', 'Team helper']);
    const forDave = (await inC((tx) => listAgentsForUser(tx, { userId: dave }))).items;
    expect(forDave.map((x) => x.id)).not.toContain(ids.erinPrivate);
    for (const id of otherTenantIds) {
      expect(forDave.map((x) => x.id)).not.toContain(id);
      expect(forErin.map((x) => x.id)).not.toContain(id);
    }
    const forCarol = (await inB((tx) => listAgentsForUser(tx, { userId: b.userId }))).items.map((x) => x.id);
    expect(forCarol).toEqual(expect.arrayContaining([...otherTenantIds, cat.globalAgentId, cat.plainGlobalAgentId]));
    for (const id of Object.values(ids)) expect(forCarol).not.toContain(id);
  });

  it('a user of another tenant is NotFoundError("user"), exactly like an unknown user', async () => {
    await expect(inC((tx) => listAgentsForUser(tx, { userId: b.userId }))).rejects.toThrow(new NotFoundError('user', b.userId));
    const unknown = randomUUID();
    await expect(inC((tx) => listAgentsForUser(tx, { userId: unknown }))).rejects.toThrow(new NotFoundError('user', unknown));
    await expect(inC((tx) => listAgentsForUser(tx, { userId: '42' }))).rejects.toMatchObject({ name: 'ValidationError', field: 'userId' });
  });
});

describe('shareAgent', () => {
  it('shares an agent with a user of the tenant; sharing again returns the same row; a new role updates it', async () => {
    const agent = await inA((tx) => createAgent(tx, { name: 'Delta', modelId: cat.modelId, userId: a.secondUserId }));
    const first = await inA((tx) => shareAgent(tx, { agentId: agent.id, userId: a.userId, role: 'viewer' }));
    expect(first).toMatchObject({ userId: a.userId, agentId: agent.id, role: 'viewer' });
    expect(first.createdAt).toBeInstanceOf(Date);
    const again = await inA((tx) => shareAgent(tx, { agentId: agent.id, userId: a.userId, role: 'viewer' }));
    expect(again).toEqual(first); // nothing written: not even updated_at moved
    const promoted = await inA((tx) => shareAgent(tx, { agentId: agent.id, userId: a.userId, role: 'editor' }));
    expect(promoted).toMatchObject({ id: first.id, role: 'editor', createdAt: first.createdAt });
    const rows = await t.db.selectFrom('userAgents').select(['id', 'tenantId', 'role']).where('agentId', '=', agent.id).execute();
    expect(rows).toEqual([{ id: first.id, tenantId: a.tenantId, role: 'editor' }]);
    expect((await inA((tx) => listAgentsForUser(tx, { userId: a.userId }))).items.map((x) => x.id)).toContain(agent.id);
  });

  it('shares a global agent too', async () => {
    const shared = await inA((tx) => shareAgent(tx, { agentId: cat.plainGlobalAgentId, userId: a.userId, role: 'viewer' }));
    expect(shared).toMatchObject({ agentId: cat.plainGlobalAgentId, userId: a.userId, role: 'viewer' });
  });

  it("another tenant's agent or user is NotFoundError, like unknown ids; bad parameters are ValidationError; nothing is written", async () => {
    const mine = await inA((tx) => createAgent(tx, { name: 'Shareable', modelId: cat.modelId }));
    const theirs = await inB((tx) => createAgent(tx, { name: 'Not yours', modelId: cat.modelId }));
    const before = await snapshot();
    await expect(inA((tx) => shareAgent(tx, { agentId: theirs.id, userId: a.userId, role: 'viewer' }))).rejects.toThrow(
      new NotFoundError('agent', theirs.id),
    );
    const unknown = randomUUID();
    await expect(inA((tx) => shareAgent(tx, { agentId: unknown, userId: a.userId, role: 'viewer' }))).rejects.toThrow(
      new NotFoundError('agent', unknown),
    );
    await expect(inA((tx) => shareAgent(tx, { agentId: mine.id, userId: b.userId, role: 'viewer' }))).rejects.toThrow(
      new NotFoundError('user', b.userId),
    );
    await expect(inA((tx) => shareAgent(tx, { agentId: mine.id, userId: unknown, role: 'viewer' }))).rejects.toThrow(
      new NotFoundError('user', unknown),
    );
    await withTenant(counted, a.tenantId, async (tx) => {
      counter.reset();
      await expect(shareAgent(tx, { agentId: mine.id, userId: a.userId, role: 'admin' as never })).rejects.toMatchObject({ name: 'ValidationError', field: 'role' });
      await expect(shareAgent(tx, { agentId: 'x', userId: a.userId, role: 'viewer' })).rejects.toMatchObject({ name: 'ValidationError', field: 'agentId' });
      await expect(shareAgent(tx, { agentId: mine.id, userId: 'x', role: 'viewer' })).rejects.toMatchObject({ name: 'ValidationError', field: 'userId' });
      expect(counter.count).toBe(0);
    });
    expect(await snapshot()).toEqual(before);
  });
});

describe('resolveAgent', () => {
  it('returns the agent, its prompt, model, provider and tools ordered by name, in one statement', async () => {
    const resolved = await withTenant(counted, a.tenantId, async (tx) => {
      counter.reset();
      const r = await resolveAgent(tx, { agentId: cat.globalAgentId, userId: a.userId });
      expect(counter.count).toBe(1);
      return r;
    });
    expect(resolved.agent).toEqual(await inA((tx) => getAgent(tx, { agentId: cat.globalAgentId })));
    expect(resolved.prompt).toEqual({ id: cat.promptId, name: 'standard', version: 2, content: 'You are a careful assistant.' });
    expect(resolved.model).toEqual({
      id: cat.modelId, providerId: cat.providerId, name: 'Gemini Flash', internalName: 'gemini-flash', type: 'chat', description: 'Fast',
      maxContext: 1_000_000, maxOutput: 8192, maxReasoning: null, cost1kInput: '0.00015', cost1kOutput: '0.0006',
      cost1kCacheRead: '0', cost1kCacheWrite: '0', defaultParameters: { temperature: 1 },
    });
    expect(resolved.provider).toEqual({ id: cat.providerId, name: 'google', endpoint: 'https://llm.example.com/v1' });
    expect(resolved.tools).toEqual([
      { id: cat.tools.browse, name: 'browse', description: 'Fetch pages', type: 'builtin', authenticationType: null, endpoint: 'https://browse.example.com', transportType: null, customConfig: {} },
      { id: cat.tools.code, name: 'code', description: null, type: 'builtin', authenticationType: null, endpoint: null, transportType: 'local', customConfig: { timeoutMs: 10000 } },
      { id: cat.tools.search, name: 'search', description: null, type: 'builtin', authenticationType: 'api_key', endpoint: null, transportType: null, customConfig: { maxResults: 10 } },
    ]);
  });

  it('never returns the API key, which app_user cannot read at all', async () => {
    const resolved = await inB((tx) => resolveAgent(tx, { agentId: cat.globalAgentId, userId: b.userId }));
    expect(JSON.stringify(resolved)).not.toContain(SECRET_API_KEY);
    const keys: string[] = [];
    JSON.stringify(resolved, (key, value: unknown) => {
      keys.push(key);
      return value;
    });
    expect(keys.filter((k) => /api_?key/i.test(k))).toEqual([]);
    expect(Object.keys(resolved.provider).sort()).toEqual(['endpoint', 'id', 'name']);
    await expect(inB((tx) => tx.selectFrom('providers').select('apiKey').execute())).rejects.toMatchObject({ code: '42501' });
  });

  it('a tenant agent without a prompt or tools has prompt null and tools []; its own tools come with it', async () => {
    const bare = await inA((tx) => createAgent(tx, { name: 'Bare', modelId: cat.modelId }));
    const resolved = await inA((tx) => resolveAgent(tx, { agentId: bare.id, userId: a.userId }));
    expect(resolved).toMatchObject({ agent: bare, prompt: null, tools: [], provider: { name: 'google' } });
    const tooled = await inA((tx) => createAgent(tx, { name: 'Tooled', modelId: cat.modelId, toolIds: [cat.tools.search, cat.tools.browse] }));
    expect((await inA((tx) => resolveAgent(tx, { agentId: tooled.id, userId: a.userId }))).tools.map((x) => x.name)).toEqual(['browse', 'search']);
  });

  it("another tenant's agent is NotFoundError, exactly like an unknown id", async () => {
    const theirs = await inB((tx) => createAgent(tx, { name: 'B tooled', modelId: cat.modelId, toolIds: [cat.tools.code] }));
    await expect(inA((tx) => resolveAgent(tx, { agentId: theirs.id, userId: a.userId }))).rejects.toThrow(new NotFoundError('agent', theirs.id));
    const unknown = randomUUID();
    await expect(inA((tx) => resolveAgent(tx, { agentId: unknown, userId: a.userId }))).rejects.toThrow(new NotFoundError('agent', unknown));
    await expect(inA((tx) => resolveAgent(tx, { agentId: '', userId: a.userId }))).rejects.toMatchObject({ name: 'ValidationError', field: 'agentId' });
  });
});

describe('resolveAgent resolves only what the user may use', () => {
  let kinds: Awaited<ReturnType<typeof insertAgentsOfEveryKind>>;
  beforeAll(async () => {
    kinds = await insertAgentsOfEveryKind(t.db, {
      modelId: cat.modelId, globalAgentId: cat.globalAgentId, tenantId: a.tenantId, userId: a.userId,
      otherUserId: a.secondUserId, otherTenantId: b.tenantId,
    });
  });

  it('a global, a tenant-wide, an own and a shared agent: the same set as listAgentsForUser', async () => {
    const listed = (await inA((tx) => listAgentsForUser(tx, { userId: a.userId, limit: 200 }))).items.map((x) => x.id);
    for (const [kind, agentId] of Object.entries(kinds.usable)) {
      const resolved = await inA((tx) => resolveAgent(tx, { agentId, userId: a.userId }));
      expect({ kind, id: resolved.agent.id, listed: listed.includes(agentId) }).toEqual({ kind, id: agentId, listed: true });
    }
    for (const agentId of Object.values(kinds.unusable)) expect(listed).not.toContain(agentId);
  });

  it("another user's private agent, another tenant's agent and an unknown id fail alike: NotFoundError('agent', id)", async () => {
    for (const [kind, agentId] of Object.entries(kinds.unusable)) {
      const error = await inA((tx) => resolveAgent(tx, { agentId, userId: a.userId })).catch((e: unknown) => e);
      expect({ kind, error }).toEqual({ kind, error: new NotFoundError('agent', agentId) });
      expect(Object.entries(error as object)).toEqual(Object.entries(new NotFoundError('agent', agentId)));
    }
    // The other user may use their own private agent; the share was for a.userId only.
    expect((await inA((tx) => resolveAgent(tx, { agentId: kinds.unusable.othersPrivate, userId: a.secondUserId }))).agent.id).toBe(kinds.unusable.othersPrivate);
    await expect(inA((tx) => resolveAgent(tx, { agentId: kinds.usable.own, userId: a.secondUserId }))).rejects.toThrow(new NotFoundError('agent', kinds.usable.own));
  });

  it("a user that is not the tenant's is NotFoundError('user'), even for a global agent; a bad userId is a ValidationError", async () => {
    const stranger = randomUUID();
    await expect(inA((tx) => resolveAgent(tx, { agentId: cat.globalAgentId, userId: stranger }))).rejects.toThrow(new NotFoundError('user', stranger));
    await expect(inA((tx) => resolveAgent(tx, { agentId: cat.globalAgentId, userId: b.userId }))).rejects.toThrow(new NotFoundError('user', b.userId));
    await expect(inA((tx) => resolveAgent(tx, { agentId: cat.globalAgentId, userId: 'nope' }))).rejects.toMatchObject({ name: 'ValidationError', field: 'userId' });
    // @ts-expect-error userId is required: an agent is always resolved for a user
    await expect(inA((tx) => resolveAgent(tx, { agentId: cat.globalAgentId }))).rejects.toMatchObject({ name: 'ValidationError', field: 'userId' });
  });
});

describe('the tenant wall', () => {
  it('a tenant reads global agents but cannot update, delete or create one, nor change its tools', async () => {
    const before = await snapshot();
    await inA(async (tx) => {
      const updated = await tx.updateTable('agents').set({ name: 'hijacked' }).where('id', '=', cat.globalAgentId).executeTakeFirst();
      expect(updated.numUpdatedRows).toBe(0n);
      const deleted = await tx.deleteFrom('agents').where('id', '=', cat.globalAgentId).executeTakeFirst();
      expect(deleted.numDeletedRows).toBe(0n);
      const untooled = await tx.deleteFrom('agentTools').where('agentId', '=', cat.globalAgentId).executeTakeFirst();
      expect(untooled.numDeletedRows).toBe(0n);
      expect((await tx.selectFrom('agentTools').select('toolId').where('agentId', '=', cat.globalAgentId).execute()).length).toBe(3);
    });
    await expect(inA((tx) => tx.insertInto('agents').values({ tenantId: null, modelId: cat.modelId, name: 'Fake global' }).execute())).rejects.toMatchObject({ code: '42501' });
    // agent_scope defaults to the tenant, which is not the global agent's scope: the foreign key
    // refuses (23503); naming the global scope, the policy does (42501).
    await expect(inA((tx) => tx.insertInto('agentTools').values({ agentId: cat.plainGlobalAgentId, toolId: cat.tools.code }).execute())).rejects.toMatchObject({ code: '23503' });
    await expect(
      inA((tx) => tx.insertInto('agentTools').values({ agentScope: '00000000-0000-0000-0000-000000000000', agentId: cat.plainGlobalAgentId, toolId: cat.tools.code }).execute()),
    ).rejects.toMatchObject({ code: '42501' });
    expect(await snapshot()).toEqual(before);
  });

  it("another tenant's agents, their tools and shares are invisible and unchangeable", async () => {
    const theirs = await inB(async (tx) => {
      const agent = await createAgent(tx, { name: 'B hidden', modelId: cat.modelId, userId: b.userId, toolIds: [cat.tools.search] });
      await shareAgent(tx, { agentId: agent.id, userId: b.secondUserId, role: 'editor' });
      return agent;
    });
    const before = await snapshot();
    await inA(async (tx) => {
      expect(await tx.selectFrom('agentTools').select('toolId').where('agentId', '=', theirs.id).execute()).toEqual([]);
      expect(await tx.selectFrom('userAgents').select('id').where('agentId', '=', theirs.id).execute()).toEqual([]);
      expect((await tx.updateTable('agents').set({ name: 'hijacked' }).where('id', '=', theirs.id).executeTakeFirst()).numUpdatedRows).toBe(0n);
      expect((await tx.deleteFrom('agentTools').where('agentId', '=', theirs.id).executeTakeFirst()).numDeletedRows).toBe(0n);
      expect((await listAgentsForUser(tx, { userId: a.userId })).items.map((x) => x.id)).not.toContain(theirs.id);
    });
    expect(await snapshot()).toEqual(before);
    expect((await inB((tx) => resolveAgent(tx, { agentId: theirs.id, userId: b.userId }))).tools.map((x) => x.name)).toEqual(['search']);
  });

  it('outside withTenant every function throws TenantContextError, before any SQL', async () => {
    counter.reset();
    const attempts = [
      // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
      createAgent(counted, { name: 'x', modelId: cat.modelId }),
      // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
      getAgent(counted, { agentId: cat.globalAgentId }),
      // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
      listAgentsForUser(counted, { userId: a.userId }),
      // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
      shareAgent(counted, { agentId: cat.globalAgentId, userId: a.userId, role: 'viewer' }),
      // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
      resolveAgent(counted, { agentId: cat.globalAgentId, userId: a.userId }),
    ];
    for (const attempt of attempts) await expect(attempt).rejects.toBeInstanceOf(TenantContextError);
    expect(counter.count).toBe(0);
    // A transaction that withTenant did not open is no tenant context either.
    // @ts-expect-error a plain Transaction is not a TenantTx (and throws TenantContextError at run time)
    await expect(t.db.transaction().execute((tx) => getAgent(tx, { agentId: cat.globalAgentId }))).rejects.toBeInstanceOf(TenantContextError);
  });
});
