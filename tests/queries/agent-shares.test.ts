import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TenantTx } from '../../src/db/tenant-tx.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { listAgentShares, unshareAgent } from '../../src/queries/agent-shares.ts';
import { createAgent, listAgentsForUser, shareAgent, type UserAgent } from '../../src/queries/agents.ts';
import { createConversation, getConversation } from '../../src/queries/conversations.ts';
import { insertAgentCatalog, insertTenantWithUsers, type AgentCatalog } from '../support/agent-fixtures.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let cat: AgentCatalog;
let a: { tenantId: string; userId: string; secondUserId: string };
let b: { tenantId: string; userId: string; secondUserId: string };

beforeAll(async () => {
  t = await openTestDb();
  cat = await insertAgentCatalog(t.db);
  a = await insertTenantWithUsers(t.db, cat.roleId, 'shares-a');
  b = await insertTenantWithUsers(t.db, cat.roleId, 'shares-b');
});
afterAll(() => t?.close());

const inA = <T>(fn: (tx: TenantTx) => Promise<T>) => withTenant(t.db, a.tenantId, fn);
const inB = <T>(fn: (tx: TenantTx) => Promise<T>) => withTenant(t.db, b.tenantId, fn);

/** `n` more users of tenant A. */
async function usersOfA(n: number): Promise<string[]> {
  const rows = await t.db
    .insertInto('users')
    .values(Array.from({ length: n }, () => ({ tenantId: a.tenantId, email: `${randomUUID()}@example.com`, roleId: cat.roleId })))
    .returning('id')
    .execute();
  return rows.map((r) => r.id);
}

describe('listAgentShares', () => {
  it('pages through the shares of an agent, oldest first, each once; a cursor is bound to its agent', async () => {
    const agent = await inA((tx) => createAgent(tx, { name: 'Shared widely', userId: a.userId, modelId: cat.modelId }));
    const users = await usersOfA(5);
    const shares: UserAgent[] = [];
    for (const [i, userId] of users.entries()) {
      shares.push(await inA((tx) => shareAgent(tx, { agentId: agent.id, userId, role: i === 0 ? 'editor' : 'viewer' })));
    }
    const seen: UserAgent[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: Awaited<ReturnType<typeof listAgentShares>> = await inA((tx) => listAgentShares(tx, { agentId: agent.id, limit: 2, cursor }));
      seen.push(...page.items);
      cursor = page.nextCursor;
      pages++;
    } while (cursor !== null);
    expect(pages).toBe(3);
    expect(seen).toEqual(shares);
    expect(seen[0]).toMatchObject({ userId: users[0], role: 'editor' });
    const other = await inA((tx) => createAgent(tx, { name: 'Other', modelId: cat.modelId }));
    const first = await inA((tx) => listAgentShares(tx, { agentId: agent.id, limit: 1 }));
    await expect(inA((tx) => listAgentShares(tx, { agentId: other.id, cursor: first.nextCursor }))).rejects.toMatchObject({ field: 'cursor' });
    expect(await inA((tx) => listAgentShares(tx, { agentId: other.id }))).toEqual({ items: [], nextCursor: null });
  });

  it("lists this tenant's shares of a global agent, never another tenant's; another tenant's agent is not found", async () => {
    await inA((tx) => shareAgent(tx, { agentId: cat.plainGlobalAgentId, userId: a.userId, role: 'viewer' }));
    await inB((tx) => shareAgent(tx, { agentId: cat.plainGlobalAgentId, userId: b.userId, role: 'viewer' }));
    const page = await inA((tx) => listAgentShares(tx, { agentId: cat.plainGlobalAgentId }));
    expect(page.items.map((s) => s.userId)).toEqual([a.userId]);
    const bAgent = await inB((tx) => createAgent(tx, { name: 'B', modelId: cat.modelId }));
    await expect(inA((tx) => listAgentShares(tx, { agentId: bAgent.id }))).rejects.toMatchObject({ name: 'NotFoundError', entity: 'agent' });
    await expect(inA((tx) => listAgentShares(tx, { agentId: a.userId }))).rejects.toMatchObject({ name: 'NotFoundError' });
  });
});

describe('unshareAgent', () => {
  it("removes the share: the user no longer gets the agent, the user's conversations with it stay", async () => {
    const agent = await inA((tx) => createAgent(tx, { name: 'Private', userId: a.userId, modelId: cat.modelId }));
    await inA((tx) => shareAgent(tx, { agentId: agent.id, userId: a.secondUserId, role: 'viewer' }));
    const convo = await inA((tx) => createConversation(tx, { userId: a.secondUserId, agentId: agent.id }));
    expect(await inA((tx) => unshareAgent(tx, { agentId: agent.id, userId: a.secondUserId }))).toBe(true);
    expect(await inA((tx) => unshareAgent(tx, { agentId: agent.id, userId: a.secondUserId }))).toBe(false);
    expect((await inA((tx) => listAgentsForUser(tx, { userId: a.secondUserId, limit: 200 }))).items.map((x) => x.id)).not.toContain(agent.id);
    await expect(inA((tx) => createConversation(tx, { userId: a.secondUserId, agentId: agent.id }))).rejects.toMatchObject({ name: 'NotFoundError' });
    expect((await inA((tx) => getConversation(tx, { conversationId: convo.id }))).agentId).toBe(agent.id);
    expect(await inA((tx) => listAgentShares(tx, { agentId: agent.id }))).toEqual({ items: [], nextCursor: null });
  });

  it("cannot remove another tenant's share", async () => {
    await inB((tx) => shareAgent(tx, { agentId: cat.globalAgentId, userId: b.secondUserId, role: 'viewer' }));
    expect(await inA((tx) => unshareAgent(tx, { agentId: cat.globalAgentId, userId: b.secondUserId }))).toBe(false);
    expect((await inB((tx) => listAgentShares(tx, { agentId: cat.globalAgentId }))).items.map((s) => s.userId)).toContain(b.secondUserId);
    await expect(inA((tx) => unshareAgent(tx, { agentId: 'x', userId: a.userId }))).rejects.toMatchObject({ field: 'agentId' });
  });
});
