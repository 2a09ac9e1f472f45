import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withTenant } from '../../src/db/tenant.ts';
import { createConversation, listConversations } from '../../src/queries/conversations.ts';
import { appendMessage, listMessages } from '../../src/queries/messages.ts';
import { getUser } from '../../src/queries/users.ts';
import { insertCatalog, insertTenant } from '../support/fixtures.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let tenants: { tenantId: string; userId: string; agentId: string }[];

beforeAll(async () => {
  t = await openTestDb();
  const { roleId, modelId } = await insertCatalog(t.db);
  tenants = [];
  for (const slug of ['load-a', 'load-b']) {
    const tenant = await insertTenant(t.db, roleId, slug);
    const agent = await t.db.insertInto('agents').values({ tenantId: tenant.tenantId, name: `${slug} agent`, modelId }).returning('id').executeTakeFirstOrThrow();
    tenants.push({ ...tenant, agentId: agent.id });
  }
});
afterAll(() => t?.close());

describe('two tenants hammered concurrently through a pool of two connections', () => {
  it('no response ever contains the other tenant’s ids', async () => {
    // On a server: two pooled connections shared by both tenants, so each connection serves A
    // and B alternately. On PGlite (one connection) the calls interleave on it instead.
    const db = onServer ? t.open(2) : t.db;
    const calls = 400;
    const seen = await Promise.all(
      Array.from({ length: calls }, (_, i) => {
        const me = tenants[i % 2]!;
        return withTenant(db, me.tenantId, async (tx) => {
          const step = Math.floor(i / 2) % 4;
          if (step === 0) return JSON.stringify(await createConversation(tx, { userId: me.userId, agentId: me.agentId, title: `c${i}` }));
          if (step === 1) {
            const page = await listConversations(tx, { userId: me.userId, limit: 20 });
            const first = page.items[0];
            if (first !== undefined) await appendMessage(tx, { conversationId: first.id, role: 'user', content: { i } });
            return JSON.stringify(page);
          }
          if (step === 2) {
            const page = await listConversations(tx, { userId: me.userId, limit: 5 });
            const first = page.items[0];
            return JSON.stringify(first === undefined ? [] : await listMessages(tx, { conversationId: first.id }));
          }
          return JSON.stringify(await getUser(tx, { userId: me.userId }));
        }).then((response) => ({ me: i % 2, response }));
      }),
    );
    expect(seen).toHaveLength(calls);
    // Every id of the other tenant that exists by now: its tenant id, user, agent, conversations, messages.
    for (const [index, tenant] of tenants.entries()) {
      const other = tenants[1 - index]!;
      const theirConversations = await t.db.selectFrom('conversations').select('id').where('tenantId', '=', other.tenantId).execute();
      const theirMessages = await t.db.selectFrom('messages').select('id').where('tenantId', '=', other.tenantId).execute();
      const theirIds = [other.tenantId, other.userId, other.agentId, ...theirConversations.map((c) => c.id), ...theirMessages.map((m) => m.id)];
      expect(theirConversations.length).toBeGreaterThan(0);
      const mine = seen.filter((s) => s.me === index).map((s) => s.response);
      const leaks = mine.filter((response) => theirIds.some((id) => response.includes(id)));
      expect(leaks, `tenant ${tenant.tenantId} saw the other tenant's ids`).toEqual([]);
    }
  });
});
