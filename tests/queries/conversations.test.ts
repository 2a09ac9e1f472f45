import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError, TenantContextError, ValidationError } from '../../src/db/errors.ts';
import { withTenant } from '../../src/db/tenant.ts';
import {
  createConversation,
  getConversation,
  listConversations,
  purgeDeletedConversations,
  renameConversation,
  restoreConversation,
  softDeleteConversation,
  type Conversation,
} from '../../src/queries/conversations.ts';
import { encodeCursor } from '../../src/queries/cursor.ts';
import { appendMessage } from '../../src/queries/messages.ts';
import { explainLast, insertBigTenant, insertChatWorld, planNodes, runCounting, type ChatWorld } from '../support/conversation-fixtures.ts';
import { insertAgentsOfEveryKind } from '../support/agent-fixtures.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let w: ChatWorld;

beforeAll(async () => {
  t = await openTestDb();
  w = await insertChatWorld(t.db);
});
afterAll(() => t?.close());

/** A fresh user of tenant A (as the owner), so that a test's list holds only its own conversations. */
async function newUserOfA(): Promise<string> {
  const user = await t.db
    .insertInto('users')
    .values({ tenantId: w.a.tenantId, email: `u-${randomUUID().slice(0, 8)}@example.com`, roleId: w.roleId })
    .returning('id')
    .executeTakeFirstOrThrow();
  return user.id;
}

const asA = <T>(fn: Parameters<typeof withTenant<T>>[2]) => withTenant(t.db, w.a.tenantId, fn);
const asB = <T>(fn: Parameters<typeof withTenant<T>>[2]) => withTenant(t.db, w.b.tenantId, fn);

/** A conversation row as the owner sees it (past RLS), to check what another tenant's call left alone. */
function ownerRow(id: string) {
  return t.db
    .selectFrom('conversations')
    .select(['tenantId', 'title', 'deleted', 'deletedAt', 'lastActivityAt', 'updatedAt'])
    .where('id', '=', id)
    .executeTakeFirst();
}

/** Every page of a user's list, as separate requests; `between(page)` runs after each page is read. */
async function walk(userId: string, limit: number, between: (items: Conversation[], page: number) => Promise<void> = async () => {}) {
  const seen: Conversation[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 100; page++) {
    const current: { items: Conversation[]; nextCursor: string | null } = await asA((tx) =>
      listConversations(tx, { userId, limit, cursor }),
    );
    seen.push(...current.items);
    if (current.nextCursor === null) return seen;
    cursor = current.nextCursor;
    await between(current.items, page);
  }
  throw new Error('the walk did not end');
}

describe('createConversation', () => {
  it('creates a conversation of a user with a global agent, and with the tenant\'s own agent', async () => {
    const created = await asA((tx) => createConversation(tx, { userId: w.a.userId, agentId: w.globalAgentId, title: 'Trip plans' }));
    expect(created).toEqual({
      id: expect.any(String),
      userId: w.a.userId,
      agentId: w.globalAgentId,
      title: 'Trip plans',
      deleted: false,
      deletedAt: null,
      summaryMessageId: null,
      lastActivityAt: expect.any(Date),
      createdAt: expect.any(Date),
      updatedAt: expect.any(Date),
    });
    expect(created.lastActivityAt.getTime()).toBe(created.createdAt.getTime());
    const own = await asA((tx) => createConversation(tx, { userId: w.a.userId, agentId: w.a.agentId }));
    expect(own).toMatchObject({ agentId: w.a.agentId, title: '' });
    expect(await ownerRow(created.id)).toMatchObject({ tenantId: w.a.tenantId, title: 'Trip plans' });
    expect(await ownerRow(own.id)).toMatchObject({ tenantId: w.a.tenantId, title: '' });
  });

  it('takes a title of exactly 1000 characters', async () => {
    const title = 'x'.repeat(1000);
    const created = await asA((tx) => createConversation(tx, { userId: w.a.userId, agentId: w.a.agentId, title }));
    expect(created.title).toBe(title);
  });

  it("refuses another tenant's private agent, or an agent that does not exist: NotFoundError('agent'), nothing written", async () => {
    const userId = await newUserOfA();
    for (const agentId of [w.b.agentId, randomUUID()]) {
      await expect(asA((tx) => createConversation(tx, { userId, agentId }))).rejects.toMatchObject({
        name: 'NotFoundError',
        entity: 'agent',
        id: agentId,
      });
    }
    expect(await t.db.selectFrom('conversations').select('id').where('userId', '=', userId).execute()).toEqual([]);
  });

  it("refuses a user of another tenant, or one that does not exist: NotFoundError('user'), nothing written", async () => {
    for (const userId of [w.b.userId, randomUUID()]) {
      const attempt = asA((tx) => createConversation(tx, { userId, agentId: w.globalAgentId, title: `for ${userId}` }));
      await expect(attempt).rejects.toBeInstanceOf(NotFoundError);
      await expect(attempt).rejects.toMatchObject({ entity: 'user', id: userId });
      expect(await t.db.selectFrom('conversations').select('id').where('title', '=', `for ${userId}`).execute()).toEqual([]);
    }
  });

  it("starts a conversation only with an agent the user may use: global, tenant-wide, own, shared; another user's private agent fails as an unknown one does", async () => {
    const userId = await newUserOfA();
    const kinds = await insertAgentsOfEveryKind(t.db, {
      modelId: w.modelId, globalAgentId: w.globalAgentId, tenantId: w.a.tenantId, userId, otherUserId: w.a.otherUserId, otherTenantId: w.b.tenantId,
    });
    for (const [kind, agentId] of Object.entries(kinds.usable)) {
      const created = await asA((tx) => createConversation(tx, { userId, agentId, title: kind }));
      expect({ kind, agentId: created.agentId }).toEqual({ kind, agentId });
    }
    for (const [kind, agentId] of Object.entries(kinds.unusable)) {
      const error = await asA((tx) => createConversation(tx, { userId, agentId, title: kind })).catch((e: unknown) => e);
      expect({ kind, error }).toEqual({ kind, error: new NotFoundError('agent', agentId) });
    }
    const written = await t.db.selectFrom('conversations').select(['agentId', 'title']).where('userId', '=', userId).orderBy('title').execute();
    expect(written).toEqual(Object.entries(kinds.usable).map(([title, agentId]) => ({ title, agentId })).sort((x, y) => x.title.localeCompare(y.title)));
    // The owner of the private agent may use it.
    const theirs = await asA((tx) => createConversation(tx, { userId: w.a.otherUserId, agentId: kinds.unusable.othersPrivate }));
    expect(theirs.agentId).toBe(kinds.unusable.othersPrivate);
  });

  it('validates its parameters before any SQL', async () => {
    const ok = { userId: w.a.userId, agentId: w.globalAgentId };
    const cases: [Record<string, unknown>, string][] = [
      [{ ...ok, userId: 'not-a-uuid' }, 'userId'],
      [{ ...ok, agentId: 42 }, 'agentId'],
      [{ userId: ok.userId }, 'agentId'],
      [{ ...ok, title: '' }, 'title'],
      [{ ...ok, title: '   ' }, 'title'],
      [{ ...ok, title: 'x'.repeat(1001) }, 'title'],
      [{ ...ok, title: 7 }, 'title'],
    ];
    for (const [params, field] of cases) {
      const { error, statements } = await runCounting(t.db, w.a.tenantId, (tx) => createConversation(tx, params as never));
      expect(error, field).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).field).toBe(field);
      expect(statements).toBe(0);
    }
  });
});

describe('getConversation', () => {
  it('returns the conversation', async () => {
    const created = await asA((tx) => createConversation(tx, { userId: w.a.userId, agentId: w.a.agentId, title: 'Read me' }));
    expect(await asA((tx) => getConversation(tx, { conversationId: created.id }))).toEqual(created);
    // Upper-case ids are the same ids.
    expect(await asA((tx) => getConversation(tx, { conversationId: created.id.toUpperCase() }))).toEqual(created);
  });

  it("throws NotFoundError('conversation') for an id that does not exist, and for another tenant's conversation", async () => {
    const bConvo = await asB((tx) => createConversation(tx, { userId: w.b.userId, agentId: w.b.agentId, title: 'B secret' }));
    for (const conversationId of [randomUUID(), bConvo.id]) {
      await expect(asA((tx) => getConversation(tx, { conversationId }))).rejects.toMatchObject({
        name: 'NotFoundError',
        entity: 'conversation',
        id: conversationId,
      });
    }
    expect(await asB((tx) => getConversation(tx, { conversationId: bConvo.id }))).toMatchObject({ title: 'B secret' });
  });

  it('refuses an id that is not a UUID before any SQL', async () => {
    const { error, statements } = await runCounting(t.db, w.a.tenantId, (tx) => getConversation(tx, { conversationId: "1' or '1'='1" }));
    expect(error).toMatchObject({ name: 'ValidationError', field: 'conversationId' });
    expect(statements).toBe(0);
  });
});

describe('renameConversation', () => {
  it('renames, and moves updated_at but not last_activity_at', async () => {
    const created = await asA((tx) => createConversation(tx, { userId: w.a.userId, agentId: w.a.agentId, title: 'Old' }));
    const renamed = await asA((tx) => renameConversation(tx, { conversationId: created.id, title: 'New' }));
    expect(renamed).toEqual({ ...created, title: 'New', updatedAt: expect.any(Date) });
    expect(renamed.updatedAt.getTime()).toBeGreaterThan(created.updatedAt.getTime());
    expect(await asA((tx) => getConversation(tx, { conversationId: created.id }))).toEqual(renamed);
  });

  it("cannot rename another tenant's conversation: NotFoundError, and its row is unchanged", async () => {
    const bConvo = await asB((tx) => createConversation(tx, { userId: w.b.userId, agentId: w.b.agentId, title: 'B title' }));
    const before = await ownerRow(bConvo.id);
    await expect(asA((tx) => renameConversation(tx, { conversationId: bConvo.id, title: 'hijacked' }))).rejects.toMatchObject({
      name: 'NotFoundError',
      entity: 'conversation',
    });
    await expect(asA((tx) => renameConversation(tx, { conversationId: randomUUID(), title: 'nobody' }))).rejects.toBeInstanceOf(NotFoundError);
    expect(await ownerRow(bConvo.id)).toEqual(before);
  });

  it('refuses to rename a soft-deleted conversation until it is restored', async () => {
    const created = await asA((tx) => createConversation(tx, { userId: w.a.userId, agentId: w.a.agentId, title: 'Binned' }));
    await asA((tx) => softDeleteConversation(tx, { conversationId: created.id }));
    await expect(asA((tx) => renameConversation(tx, { conversationId: created.id, title: 'Renamed' }))).rejects.toMatchObject({
      entity: 'conversation',
    });
    await asA((tx) => restoreConversation(tx, { conversationId: created.id }));
    expect(await asA((tx) => renameConversation(tx, { conversationId: created.id, title: 'Renamed' }))).toMatchObject({ title: 'Renamed' });
  });

  it('validates its parameters before any SQL', async () => {
    const conversationId = randomUUID();
    const cases: [Record<string, unknown>, string][] = [
      [{ conversationId: 'nope', title: 'x' }, 'conversationId'],
      [{ conversationId, title: '' }, 'title'],
      [{ conversationId, title: 'y'.repeat(1001) }, 'title'],
      [{ conversationId }, 'title'],
    ];
    for (const [params, field] of cases) {
      const { error, statements } = await runCounting(t.db, w.a.tenantId, (tx) => renameConversation(tx, params as never));
      expect(error).toMatchObject({ name: 'ValidationError', field });
      expect(statements).toBe(0);
    }
  });
});

describe('softDeleteConversation and restoreConversation', () => {
  it('a deleted conversation leaves the list and comes back at its place when restored', async () => {
    const userId = await newUserOfA();
    const [first, second, third] = await asA(async (tx) => [
      await createConversation(tx, { userId, agentId: w.a.agentId, title: 'first' }),
      await createConversation(tx, { userId, agentId: w.a.agentId, title: 'second' }),
      await createConversation(tx, { userId, agentId: w.a.agentId, title: 'third' }),
    ]);
    const titles = async () => (await asA((tx) => listConversations(tx, { userId }))).items.map((c) => c.title);
    const listed = await titles();
    expect([...listed].sort()).toEqual(['first', 'second', 'third']);

    const deleted = await asA((tx) => softDeleteConversation(tx, { conversationId: second!.id }));
    expect(deleted).toMatchObject({ id: second!.id, deleted: true, deletedAt: expect.any(Date), lastActivityAt: second!.lastActivityAt });
    expect(await titles()).toEqual(listed.filter((x) => x !== 'second'));
    // Still readable, and says it is deleted.
    expect(await asA((tx) => getConversation(tx, { conversationId: second!.id }))).toEqual(deleted);

    // Deleting again keeps the first deleted_at (the purge clock does not restart).
    const again = await asA((tx) => softDeleteConversation(tx, { conversationId: second!.id }));
    expect(again.deletedAt).toEqual(deleted.deletedAt);

    const restored = await asA((tx) => restoreConversation(tx, { conversationId: second!.id }));
    expect(restored).toMatchObject({ deleted: false, deletedAt: null, lastActivityAt: second!.lastActivityAt });
    expect(await titles()).toEqual(listed);
    // Restoring a live conversation changes nothing a user sees.
    expect(await asA((tx) => restoreConversation(tx, { conversationId: first!.id }))).toMatchObject({ deleted: false, deletedAt: null });
    expect(third).toBeDefined();
  });

  it("cannot delete or restore another tenant's conversation: NotFoundError, and its row is unchanged", async () => {
    const live = await asB((tx) => createConversation(tx, { userId: w.b.userId, agentId: w.b.agentId, title: 'B live' }));
    const binned = await asB(async (tx) => {
      const c = await createConversation(tx, { userId: w.b.userId, agentId: w.b.agentId, title: 'B binned' });
      return softDeleteConversation(tx, { conversationId: c.id });
    });
    const liveBefore = await ownerRow(live.id);
    const binnedBefore = await ownerRow(binned.id);
    await expect(asA((tx) => softDeleteConversation(tx, { conversationId: live.id }))).rejects.toMatchObject({ name: 'NotFoundError', entity: 'conversation' });
    await expect(asA((tx) => restoreConversation(tx, { conversationId: binned.id }))).rejects.toMatchObject({ name: 'NotFoundError', entity: 'conversation' });
    await expect(asA((tx) => softDeleteConversation(tx, { conversationId: randomUUID() }))).rejects.toBeInstanceOf(NotFoundError);
    await expect(asA((tx) => restoreConversation(tx, { conversationId: randomUUID() }))).rejects.toBeInstanceOf(NotFoundError);
    expect(await ownerRow(live.id)).toEqual(liveBefore);
    expect(await ownerRow(binned.id)).toEqual(binnedBefore);
  });

  it('validate the id before any SQL', async () => {
    for (const fn of [softDeleteConversation, restoreConversation]) {
      const { error, statements } = await runCounting(t.db, w.a.tenantId, (tx) => fn(tx, { conversationId: '' }));
      expect(error).toMatchObject({ name: 'ValidationError', field: 'conversationId' });
      expect(statements).toBe(0);
    }
  });
});

describe('purgeDeletedConversations', () => {
  it('hard-deletes conversations soft-deleted before the date, with their messages and vectors; leaves the rest', async () => {
    const userId = await newUserOfA();
    const make = (title: string) => asA((tx) => createConversation(tx, { userId, agentId: w.a.agentId, title }));
    const old = await make('deleted long ago');
    const recent = await make('deleted recently');
    const live = await make('live');
    const bOld = await asB((tx) => createConversation(tx, { userId: w.b.userId, agentId: w.b.agentId, title: 'B deleted long ago' }));
    const withMessages = async (tenant: typeof asA, conversationId: string) =>
      tenant(async (tx) => {
        const root = await appendMessage(tx, { conversationId, role: 'user', content: { text: 'hi' } });
        await appendMessage(tx, { conversationId, role: 'assistant', content: { text: 'hello' }, parentId: root.id });
        return root;
      });
    const oldRoot = await withMessages(asA, old.id);
    await withMessages(asA, recent.id);
    await withMessages(asA, live.id);
    await withMessages(asB, bOld.id);
    // As the owner: a summary message (a foreign key back from the conversation) and a vector.
    await sql`update conversations set summary_message_id = ${oldRoot.id}::uuid where id = ${old.id}::uuid`.execute(t.db);
    await sql`
      insert into vectors (tenant_id, conversation_id, content, embedding)
      select tenant_id, id, 'chunk of ' || title, array_fill(0.5::real, array[1536])::vector
      from conversations where id in (${old.id}::uuid, ${recent.id}::uuid, ${live.id}::uuid, ${bOld.id}::uuid)`.execute(t.db);

    for (const c of [old, recent]) await asA((tx) => softDeleteConversation(tx, { conversationId: c.id }));
    await asB((tx) => softDeleteConversation(tx, { conversationId: bOld.id }));
    await sql`update conversations set deleted_at = now() - interval '40 days' where id in (${old.id}::uuid, ${bOld.id}::uuid)`.execute(t.db);
    await sql`update conversations set last_activity_at = now() - interval '40 days' where id = ${live.id}::uuid`.execute(t.db);

    const olderThan = new Date(Date.now() - 30 * 86_400_000);
    const count = async (table: 'messages' | 'vectors', conversationId: string) =>
      Number((await t.db.selectFrom(table).select((eb) => eb.fn.countAll<string>().as('n')).where('conversationId', '=', conversationId).executeTakeFirstOrThrow()).n);

    expect(await asA((tx) => purgeDeletedConversations(tx, { olderThan }))).toBe(1);

    expect(await ownerRow(old.id)).toBeUndefined();
    expect(await count('messages', old.id)).toBe(0);
    expect(await count('vectors', old.id)).toBe(0);
    for (const kept of [recent, live]) {
      expect(await ownerRow(kept.id)).toBeDefined();
      expect(await count('messages', kept.id)).toBe(2);
      expect(await count('vectors', kept.id)).toBe(1);
    }
    // B's old deleted conversation is B's to purge.
    expect(await ownerRow(bOld.id)).toMatchObject({ tenantId: w.b.tenantId, deleted: true });
    expect(await count('messages', bOld.id)).toBe(2);
    expect(await asA((tx) => purgeDeletedConversations(tx, { olderThan }))).toBe(0);
    expect(await asB((tx) => purgeDeletedConversations(tx, { olderThan }))).toBe(1);
    expect(await ownerRow(bOld.id)).toBeUndefined();
    expect(await count('messages', bOld.id)).toBe(0);
  });

  it('refuses an olderThan that is not a valid Date before any SQL', async () => {
    for (const olderThan of [new Date('nonsense'), '2020-01-01', undefined]) {
      const { error, statements } = await runCounting(t.db, w.a.tenantId, (tx) => purgeDeletedConversations(tx, { olderThan } as never));
      expect(error).toMatchObject({ name: 'ValidationError', field: 'olderThan' });
      expect(statements).toBe(0);
    }
  });
});

describe('listConversations', () => {
  it("lists a user's live conversations, newest activity first, and only theirs", async () => {
    const userId = await newUserOfA();
    const [x, y, z] = await asA(async (tx) => [
      await createConversation(tx, { userId, agentId: w.a.agentId, title: 'x' }),
      await createConversation(tx, { userId, agentId: w.a.agentId, title: 'y' }),
      await createConversation(tx, { userId, agentId: w.a.agentId, title: 'z' }),
    ]);
    await asA((tx) => createConversation(tx, { userId: w.a.otherUserId, agentId: w.a.agentId, title: 'not theirs' }));
    // New activity puts y on top; x and z were created in one transaction (same now()): id decides.
    await asA((tx) => appendMessage(tx, { conversationId: y!.id, role: 'user', content: { text: 'bump' } }));
    const page = await asA((tx) => listConversations(tx, { userId }));
    const rest = [x!, z!].sort((p, q) => (p.id < q.id ? 1 : -1)).map((c) => c.title);
    expect(page.items.map((c) => c.title)).toEqual(['y', ...rest]);
    expect(page.nextCursor).toBeNull();
    expect(page.items[0]).toMatchObject({ id: y!.id, userId, agentId: w.a.agentId, deleted: false });
  });

  it("shows another tenant nothing: B listing A's user gets an empty page", async () => {
    const page = await asB((tx) => listConversations(tx, { userId: w.a.userId }));
    expect(page).toEqual({ items: [], nextCursor: null });
    expect((await asA((tx) => listConversations(tx, { userId: w.a.userId }))).items.length).toBeGreaterThan(0);
  });

  it('walks page by page: every conversation once, in order, each page limit rows', async () => {
    const userId = await newUserOfA();
    await asA(async (tx) => {
      for (let i = 0; i < 20; i++) await createConversation(tx, { userId, agentId: w.a.agentId, title: `c${i}` });
    });
    const walked = await walk(userId, 7);
    const expected = await t.db
      .selectFrom('conversations')
      .select('id')
      .where('userId', '=', userId)
      .orderBy('lastActivityAt', 'desc')
      .orderBy('id', 'desc')
      .execute();
    expect(walked.map((c) => c.id)).toEqual(expected.map((c) => c.id));
    const exact = await asA((tx) => listConversations(tx, { userId, limit: 20 }));
    expect(exact.items).toHaveLength(20);
    expect(exact.nextCursor).toBeNull();
  });

  it('stays stable while conversations and messages are added between pages (documented guarantee)', async () => {
    const userId = await newUserOfA();
    const start = await asA(async (tx) => {
      const made: Conversation[] = [];
      for (let i = 0; i < 40; i++) made.push(await createConversation(tx, { userId, agentId: w.a.agentId, title: `start ${i}` }));
      return made;
    });
    // Spread over time in groups of three: two share a timestamp exactly, the third is 1 µs later
    // (a millisecond cursor would repeat or skip rows here).
    await sql`
      update conversations c set last_activity_at = x.at
      from (select id, now() - (row_number() over (order by id) / 3) * interval '1 minute'
                         + ((row_number() over (order by id) % 3) / 2) * interval '1 microsecond' as at
            from conversations where user_id = ${userId}::uuid) x
      where c.id = x.id`.execute(t.db);
    const startOrder = (
      await t.db.selectFrom('conversations').select('id').where('userId', '=', userId).orderBy('lastActivityAt', 'desc').orderBy('id', 'desc').execute()
    ).map((r) => r.id);
    expect(startOrder).toHaveLength(40);

    const seenSoFar = new Set<string>();
    const bumpedBeforeSeen = new Set<string>();
    const createdDuringWalk: string[] = [];
    const walked = await walk(userId, 7, async (items, page) => {
      for (const c of items) seenSoFar.add(c.id);
      // Each step is a request of its own: a new conversation with a message, a message in a
      // conversation already seen (it moves to the top), and once, a message in one not yet seen.
      const created = await asA((tx) => createConversation(tx, { userId, agentId: w.a.agentId, title: `new ${page}` }));
      createdDuringWalk.push(created.id);
      await asA((tx) => appendMessage(tx, { conversationId: created.id, role: 'user', content: { text: 'new' } }));
      await asA((tx) => appendMessage(tx, { conversationId: items[0]!.id, role: 'user', content: { text: 'again' } }));
      if (page === 1) {
        const notYetSeen = startOrder.at(-2)!;
        expect(seenSoFar.has(notYetSeen)).toBe(false);
        bumpedBeforeSeen.add(notYetSeen);
        await asA((tx) => appendMessage(tx, { conversationId: notYetSeen, role: 'user', content: { text: 'jump' } }));
      }
    });
    const ids = walked.map((c) => c.id);
    // No repeats.
    expect(new Set(ids).size).toBe(ids.length);
    // Every conversation that existed at the start is seen exactly once, in the start order, except
    // the one whose activity moved it above the cursor before the walk reached it.
    expect(ids).toEqual(startOrder.filter((id) => !bumpedBeforeSeen.has(id)));
    expect(createdDuringWalk.length).toBeGreaterThanOrEqual(5);
    for (const id of createdDuringWalk) expect(ids).not.toContain(id);

    // The next walk from the top sees every conversation once, newest activity first.
    const again = (await walk(userId, 7)).map((c) => c.id);
    const now = await t.db.selectFrom('conversations').select('id').where('userId', '=', userId).orderBy('lastActivityAt', 'desc').orderBy('id', 'desc').execute();
    expect(again).toEqual(now.map((r) => r.id));
    expect([...again].sort()).toEqual([...startOrder, ...createdDuringWalk].sort());
  });

  it('refuses a bad limit or cursor before any SQL', async () => {
    const userId = w.a.userId;
    const ownScope = { list: 'conversations', tenantId: w.a.tenantId, scope: userId };
    const position = { at: '2026-01-01T00:00:00.000000Z', id: randomUUID() };
    const cases: [Record<string, unknown>, string][] = [
      [{ userId: 'x' }, 'userId'],
      [{ userId, limit: 0 }, 'limit'],
      [{ userId, limit: 201 }, 'limit'],
      [{ userId, limit: 2.5 }, 'limit'],
      [{ userId, limit: '10' }, 'limit'],
      [{ userId, cursor: 'garbage!' }, 'cursor'],
      [{ userId, cursor: Buffer.from('{"v":1}').toString('base64url') }, 'cursor'],
      [{ userId, cursor: encodeCursor({ ...ownScope, list: 'messages' }, position) }, 'cursor'],
      [{ userId, cursor: encodeCursor({ ...ownScope, tenantId: w.b.tenantId }, position) }, 'cursor'],
      [{ userId, cursor: encodeCursor({ ...ownScope, scope: w.a.otherUserId }, position) }, 'cursor'],
    ];
    for (const [params, field] of cases) {
      const { error, statements } = await runCounting(t.db, w.a.tenantId, (tx) => listConversations(tx, params as never));
      expect(error, JSON.stringify(params)).toMatchObject({ name: 'ValidationError', field });
      expect(statements).toBe(0);
    }
    // The cursor of one tenant's page is refused by another tenant.
    const page = await asA((tx) => listConversations(tx, { userId, limit: 1 }));
    expect(page.nextCursor).not.toBeNull();
    await expect(asB((tx) => listConversations(tx, { userId, cursor: page.nextCursor }))).rejects.toMatchObject({ field: 'cursor' });
  });
});

describe('outside withTenant', () => {
  it('every function throws TenantContextError', async () => {
    const id = randomUUID();
    const calls: (() => Promise<unknown>)[] = [
      // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
      () => createConversation(t.db, { userId: w.a.userId, agentId: w.globalAgentId }),
      // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
      () => getConversation(t.db, { conversationId: id }),
      // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
      () => listConversations(t.db, { userId: w.a.userId }),
      // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
      () => renameConversation(t.db, { conversationId: id, title: 'x' }),
      // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
      () => softDeleteConversation(t.db, { conversationId: id }),
      // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
      () => restoreConversation(t.db, { conversationId: id }),
      // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
      () => purgeDeletedConversations(t.db, { olderThan: new Date() }),
    ];
    for (const call of calls) await expect(call()).rejects.toBeInstanceOf(TenantContextError);
    // Not even a transaction of its own is enough: the tenant comes from withTenant.
    // @ts-expect-error a plain Transaction is not a TenantTx (and throws TenantContextError at run time)
    await expect(t.db.transaction().execute((tx) => getConversation(tx, { conversationId: id }))).rejects.toBeInstanceOf(TenantContextError);
  });
});

describe('listConversations plan on a big tenant', () => {
  // 10,000 conversations (5,000 of one user) and 100,000 messages, next to a smaller tenant, on
  // both backends (PGlite builds it in a few seconds).
  let big: Awaited<ReturnType<typeof insertBigTenant>>;
  beforeAll(async () => {
    big = await insertBigTenant(t.db, w.roleId, { conversations: 10_000, messagesPer: 10 });
    await insertBigTenant(t.db, w.roleId, { conversations: 2_000, messagesPer: 10 });
  });

  it('uses conversations_list_idx with tenant_id in the index condition, first page and next pages, no Seq Scan', async () => {
    const first = await explainLast(t.db, big.tenantId, (tx) => listConversations(tx, { userId: big.userId, limit: 50 }));
    const page = await withTenant(t.db, big.tenantId, (tx) => listConversations(tx, { userId: big.userId, limit: 50 }));
    expect(page.items).toHaveLength(50);
    const next = await explainLast(t.db, big.tenantId, (tx) => listConversations(tx, { userId: big.userId, limit: 50, cursor: page.nextCursor }));
    for (const { sql: text, plan } of [first, next]) {
      const nodes = planNodes(plan);
      expect(nodes.filter((n) => n['Node Type'] === 'Seq Scan'), text).toEqual([]);
      const scan = nodes.find((n) => n['Index Name'] === 'conversations_list_idx');
      expect(scan?.['Node Type'], JSON.stringify(plan, null, 1)).toMatch(/^Index (Only )?Scan$/);
      expect(scan?.['Index Cond']).toMatch(/tenant_id = /);
      expect(scan?.['Index Cond']).toMatch(/user_id = /);
      // Sorted by the index: no Sort node.
      expect(nodes.map((n) => n['Node Type'])).not.toContain('Sort');
    }
    // The keyset condition is an index condition too: the next page seeks, it does not filter.
    expect(planNodes(next.plan).find((n) => n['Index Name'] === 'conversations_list_idx')?.['Index Cond']).toMatch(/last_activity_at/);
  });
});
