import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TenantContextError, ValidationError } from '../../src/db/errors.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { createConversation, getConversation, listConversations, softDeleteConversation } from '../../src/queries/conversations.ts';
import { encodeCursor } from '../../src/queries/cursor.ts';
import { appendMessage, getThread, listMessages, type Message } from '../../src/queries/messages.ts';
import { explainLast, insertBigTenant, insertChatWorld, planNodes, runCounting, type ChatWorld } from '../support/conversation-fixtures.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let w: ChatWorld;

beforeAll(async () => {
  t = await openTestDb();
  w = await insertChatWorld(t.db);
});
afterAll(() => t?.close());

const asA = <T>(fn: Parameters<typeof withTenant<T>>[2]) => withTenant(t.db, w.a.tenantId, fn);
const asB = <T>(fn: Parameters<typeof withTenant<T>>[2]) => withTenant(t.db, w.b.tenantId, fn);

const newConversationOfA = (title = 'A chat') => asA((tx) => createConversation(tx, { userId: w.a.userId, agentId: w.a.agentId, title }));
const newConversationOfB = (title = 'B chat') => asB((tx) => createConversation(tx, { userId: w.b.userId, agentId: w.b.agentId, title }));

/** A conversation's messages and last_activity_at as the owner sees them (past RLS). */
async function ownerState(conversationId: string) {
  const messages = await t.db
    .selectFrom('messages')
    .select(['id', 'parentId', 'role', 'content', 'createdAt'])
    .where('conversationId', '=', conversationId)
    .orderBy('createdAt')
    .orderBy('id')
    .execute();
  const conversation = await t.db
    .selectFrom('conversations')
    .select(['lastActivityAt', 'updatedAt'])
    .where('id', '=', conversationId)
    .executeTakeFirstOrThrow();
  return { messages, conversation };
}

/** Every page of a conversation's messages, as separate requests; `between(page)` runs after each page but the last. */
async function walk(conversationId: string, limit: number, between: (page: number) => Promise<void> = async () => {}) {
  const seen: Message[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 100; page++) {
    const current: { items: Message[]; nextCursor: string | null } = await asA((tx) => listMessages(tx, { conversationId, limit, cursor }));
    seen.push(...current.items);
    if (current.nextCursor === null) return seen;
    cursor = current.nextCursor;
    await between(page);
  }
  throw new Error('the walk did not end');
}

describe('appendMessage', () => {
  it("appends a message and bumps the conversation's last_activity_at to its created_at", async () => {
    const convo = await newConversationOfA();
    const message = await asA((tx) => appendMessage(tx, { conversationId: convo.id, role: 'user', content: { text: 'Hello', lang: 'en' } }));
    expect(message).toEqual({
      id: expect.any(String),
      conversationId: convo.id,
      parentId: null,
      role: 'user',
      content: { text: 'Hello', lang: 'en' },
      createdAt: expect.any(Date),
      updatedAt: expect.any(Date),
    });
    expect(message.updatedAt).toEqual(message.createdAt);
    const after = await asA((tx) => getConversation(tx, { conversationId: convo.id }));
    expect(after.lastActivityAt).toEqual(message.createdAt);
    expect(after.lastActivityAt.getTime()).toBeGreaterThanOrEqual(convo.lastActivityAt.getTime());
    // The bump moves the conversation to the top of the user's list.
    const other = await newConversationOfA('newer, but quiet');
    await asA((tx) => appendMessage(tx, { conversationId: convo.id, role: 'assistant', content: { text: 'Hi!' }, parentId: message.id }));
    const top = await asA((tx) => listConversations(tx, { userId: w.a.userId, limit: 2 }));
    expect(top.items.map((c) => c.id)).toEqual([convo.id, other.id]);
    expect((await ownerState(convo.id)).messages).toMatchObject([
      { id: message.id, parentId: null, role: 'user', content: { text: 'Hello', lang: 'en' } },
      { parentId: message.id, role: 'assistant', content: { text: 'Hi!' } },
    ]);
  });

  it('stores a JSON array as an array, and nested values as they are', async () => {
    const convo = await newConversationOfA();
    const content = [{ type: 'text', text: 'look' }, { type: 'image', url: 's3://bucket/a.png', size: [640, 480] }, null, 'quote "x" \\ y'];
    const message = await asA((tx) => appendMessage(tx, { conversationId: convo.id, role: 'tool', content }));
    expect(message.content).toEqual(content);
    expect((await ownerState(convo.id)).messages[0]?.content).toEqual(content);
  });

  it('keeps insertion order for messages appended in one transaction (clock_timestamp, not now())', async () => {
    const convo = await newConversationOfA();
    const appended = await asA(async (tx) => {
      const out: Message[] = [];
      for (let i = 0; i < 25; i++) {
        out.push(await appendMessage(tx, { conversationId: convo.id, role: i % 2 ? 'assistant' : 'user', content: { i }, parentId: out.at(-1)?.id ?? null }));
      }
      return out;
    });
    const listed = await asA((tx) => listMessages(tx, { conversationId: convo.id, limit: 200 }));
    expect(listed.items.map((m) => m.content)).toEqual(appended.map((_, i) => ({ i })));
    expect(listed.items.map((m) => m.id)).toEqual(appended.map((m) => m.id));
    // Strictly increasing at full precision, as the database holds them.
    const { rows } = await sql<{ increasing: boolean }>`
      select bool_and(created_at > prev) as increasing
      from (select created_at, lag(created_at) over (order by created_at, id) as prev
            from messages where conversation_id = ${convo.id}::uuid) x
      where prev is not null`.execute(t.db);
    expect(rows[0]?.increasing).toBe(true);
  });

  it("refuses a parent that is not a message of this conversation: NotFoundError('message'), nothing written", async () => {
    const convo = await newConversationOfA();
    const elsewhere = await newConversationOfA('elsewhere');
    const root = await asA((tx) => appendMessage(tx, { conversationId: convo.id, role: 'user', content: { text: 'root' } }));
    const foreign = await asA((tx) => appendMessage(tx, { conversationId: elsewhere.id, role: 'user', content: { text: 'other' } }));
    const bConvo = await newConversationOfB();
    const bMessage = await asB((tx) => appendMessage(tx, { conversationId: bConvo.id, role: 'user', content: { text: 'B' } }));
    const before = await ownerState(convo.id);
    for (const parentId of [foreign.id, bMessage.id, randomUUID()]) {
      await expect(asA((tx) => appendMessage(tx, { conversationId: convo.id, role: 'assistant', content: { text: 'x' }, parentId }))).rejects.toMatchObject({
        name: 'NotFoundError',
        entity: 'message',
        id: parentId,
      });
    }
    expect(await ownerState(convo.id)).toEqual(before);
    expect(before.messages.map((m) => m.id)).toEqual([root.id]);
  });

  it("refuses a soft-deleted conversation or one that does not exist: NotFoundError('conversation'), nothing written", async () => {
    const convo = await newConversationOfA();
    await asA((tx) => appendMessage(tx, { conversationId: convo.id, role: 'user', content: { text: 'before' } }));
    await asA((tx) => softDeleteConversation(tx, { conversationId: convo.id }));
    const before = await ownerState(convo.id);
    for (const conversationId of [convo.id, randomUUID()]) {
      await expect(asA((tx) => appendMessage(tx, { conversationId, role: 'user', content: { text: 'after' } }))).rejects.toMatchObject({
        name: 'NotFoundError',
        entity: 'conversation',
        id: conversationId,
      });
    }
    expect(await ownerState(convo.id)).toEqual(before);
  });

  it("cannot append to another tenant's conversation: NotFoundError, and its rows are unchanged", async () => {
    const bConvo = await newConversationOfB();
    const bRoot = await asB((tx) => appendMessage(tx, { conversationId: bConvo.id, role: 'user', content: { text: 'B only' } }));
    const before = await ownerState(bConvo.id);
    await expect(asA((tx) => appendMessage(tx, { conversationId: bConvo.id, role: 'user', content: { text: 'planted' } }))).rejects.toMatchObject({
      name: 'NotFoundError',
      entity: 'conversation',
    });
    await expect(
      asA((tx) => appendMessage(tx, { conversationId: bConvo.id, role: 'user', content: { text: 'planted' }, parentId: bRoot.id })),
    ).rejects.toMatchObject({ name: 'NotFoundError', entity: 'conversation' });
    expect(await ownerState(bConvo.id)).toEqual(before);
  });

  it('validates its parameters before any SQL', async () => {
    const conversationId = randomUUID();
    const ok = { conversationId, role: 'user', content: { text: 'x' } };
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const cases: [Record<string, unknown>, string][] = [
      [{ ...ok, conversationId: 'nope' }, 'conversationId'],
      [{ ...ok, parentId: 'nope' }, 'parentId'],
      [{ ...ok, role: 'robot' }, 'role'],
      [{ ...ok, role: undefined }, 'role'],
      [{ ...ok, content: 'just text' }, 'content'],
      [{ ...ok, content: 42 }, 'content'],
      [{ ...ok, content: null }, 'content'],
      [{ ...ok, content: undefined }, 'content'],
      [{ ...ok, content: new Date() }, 'content'],
      [{ ...ok, content: { text: 'nul \u0000 inside' } }, 'content'],
      [{ ...ok, content: { big: 10n } }, 'content'],
      [{ ...ok, content: circular }, 'content'],
    ];
    for (const [params, field] of cases) {
      const { error, statements } = await runCounting(t.db, w.a.tenantId, (tx) => appendMessage(tx, params as never));
      expect(error, field).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).field).toBe(field);
      expect(statements).toBe(0);
    }
    // A backslash before "u0000" is text, not a NUL: accepted.
    const convo = await newConversationOfA();
    const message = await asA((tx) => appendMessage(tx, { conversationId: convo.id, role: 'user', content: { text: 'C:\\u0000' } }));
    expect(message.content).toEqual({ text: 'C:\\u0000' });
  });

  it('is one statement when it succeeds', async () => {
    const convo = await newConversationOfA();
    const { error, statements } = await runCounting(t.db, w.a.tenantId, (tx) =>
      appendMessage(tx, { conversationId: convo.id, role: 'user', content: { text: 'one round trip' } }),
    );
    expect(error).toBeUndefined();
    expect(statements).toBe(1);
  });
});

describe('listMessages', () => {
  it("lists a conversation's messages oldest first, every branch, and nothing of other conversations", async () => {
    const convo = await newConversationOfA();
    const other = await newConversationOfA('other');
    const { root, a, b1, b2 } = await asA(async (tx) => {
      const root = await appendMessage(tx, { conversationId: convo.id, role: 'user', content: { text: 'root' } });
      await appendMessage(tx, { conversationId: other.id, role: 'user', content: { text: 'elsewhere' } });
      const a = await appendMessage(tx, { conversationId: convo.id, role: 'assistant', content: { text: 'a' }, parentId: root.id });
      const b1 = await appendMessage(tx, { conversationId: convo.id, role: 'user', content: { text: 'b1' }, parentId: a.id });
      const b2 = await appendMessage(tx, { conversationId: convo.id, role: 'user', content: { text: 'b2' }, parentId: a.id });
      return { root, a, b1, b2 };
    });
    const page = await asA((tx) => listMessages(tx, { conversationId: convo.id }));
    expect(page).toEqual({ items: [root, a, b1, b2], nextCursor: null });
  });

  it("shows another tenant nothing: an empty page for A's conversation listed by B", async () => {
    const convo = await newConversationOfA();
    await asA((tx) => appendMessage(tx, { conversationId: convo.id, role: 'user', content: { text: 'private' } }));
    expect(await asB((tx) => listMessages(tx, { conversationId: convo.id }))).toEqual({ items: [], nextCursor: null });
    expect(await asA((tx) => listMessages(tx, { conversationId: randomUUID() }))).toEqual({ items: [], nextCursor: null });
    expect((await asA((tx) => listMessages(tx, { conversationId: convo.id }))).items).toHaveLength(1);
  });

  it('walks page by page while messages are appended between pages: every message exactly once, in order', async () => {
    const convo = await newConversationOfA();
    // 30 messages in one transaction (one now()), then 10 more inserted by the owner with one
    // identical created_at, where only the id orders them.
    const start = await asA(async (tx) => {
      const out: Message[] = [];
      for (let i = 0; i < 30; i++) out.push(await appendMessage(tx, { conversationId: convo.id, role: 'user', content: { i } }));
      return out;
    });
    await sql`
      insert into messages (tenant_id, conversation_id, role, content, created_at)
      select ${w.a.tenantId}::uuid, ${convo.id}::uuid, 'assistant', jsonb_build_object('tie', g), max_at + interval '1 microsecond'
      from generate_series(1, 10) g, (select max(created_at) as max_at from messages where conversation_id = ${convo.id}::uuid) m`.execute(t.db);
    await sql`update conversations set last_activity_at = (select max(created_at) from messages where conversation_id = ${convo.id}::uuid) where id = ${convo.id}::uuid`.execute(t.db);
    const startIds = (await ownerState(convo.id)).messages.map((m) => m.id);
    expect(startIds.slice(0, 30)).toEqual(start.map((m) => m.id));
    expect(startIds).toHaveLength(40);

    const appended: string[] = [];
    const walked = await walk(convo.id, 7, async (page) => {
      if (page < 4) {
        const m = await asA((tx) => appendMessage(tx, { conversationId: convo.id, role: 'user', content: { during: page } }));
        appended.push(m.id);
      }
    });
    const ids = walked.map((m) => m.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual([...startIds, ...appended]);
    expect(appended).toHaveLength(4);
  });

  it('refuses a bad limit or cursor before any SQL', async () => {
    const convo = await newConversationOfA();
    await asA(async (tx) => {
      for (let i = 0; i < 3; i++) await appendMessage(tx, { conversationId: convo.id, role: 'user', content: { i } });
    });
    const conversationId = convo.id;
    const ownScope = { list: 'messages', tenantId: w.a.tenantId, scope: conversationId };
    const position = { at: '2026-01-01T00:00:00.000000Z', id: randomUUID() };
    const cases: [Record<string, unknown>, string][] = [
      [{ conversationId: 'x' }, 'conversationId'],
      [{ conversationId, limit: 0 }, 'limit'],
      [{ conversationId, limit: 1000 }, 'limit'],
      [{ conversationId, limit: -1 }, 'limit'],
      [{ conversationId, cursor: '%%%' }, 'cursor'],
      [{ conversationId, cursor: 'eyJ2IjoxfQ' }, 'cursor'],
      [{ conversationId, cursor: encodeCursor({ ...ownScope, list: 'conversations' }, position) }, 'cursor'],
      [{ conversationId, cursor: encodeCursor({ ...ownScope, tenantId: w.b.tenantId }, position) }, 'cursor'],
      [{ conversationId, cursor: encodeCursor({ ...ownScope, scope: randomUUID() }, position) }, 'cursor'],
      [{ conversationId, cursor: encodeCursor(ownScope, { at: '2026-01-01 00:00:00', id: position.id }) }, 'cursor'],
    ];
    for (const [params, field] of cases) {
      const { error, statements } = await runCounting(t.db, w.a.tenantId, (tx) => listMessages(tx, params as never));
      expect(error, JSON.stringify(params)).toMatchObject({ name: 'ValidationError', field });
      expect(statements).toBe(0);
    }
    const page = await asA((tx) => listMessages(tx, { conversationId, limit: 1 }));
    expect(page.nextCursor).not.toBeNull();
    await expect(asB((tx) => listMessages(tx, { conversationId, cursor: page.nextCursor }))).rejects.toMatchObject({ name: 'ValidationError', field: 'cursor' });
    const otherConvo = await newConversationOfA('other');
    await expect(asA((tx) => listMessages(tx, { conversationId: otherConvo.id, cursor: page.nextCursor }))).rejects.toMatchObject({ field: 'cursor' });
  });
});

describe('getThread', () => {
  it('returns root … message along the parent chain of a branched conversation (root → a → b1, root → a → b2)', async () => {
    const convo = await newConversationOfA();
    const { root, a, b1, b2 } = await asA(async (tx) => {
      const root = await appendMessage(tx, { conversationId: convo.id, role: 'user', content: { text: 'root' } });
      const a = await appendMessage(tx, { conversationId: convo.id, role: 'assistant', content: { text: 'a' }, parentId: root.id });
      const b1 = await appendMessage(tx, { conversationId: convo.id, role: 'user', content: { text: 'b1' }, parentId: a.id });
      const b2 = await appendMessage(tx, { conversationId: convo.id, role: 'user', content: { text: 'b2 (an edit of b1)' }, parentId: a.id });
      return { root, a, b1, b2 };
    });
    expect(await asA((tx) => getThread(tx, { messageId: b2.id }))).toEqual([root, a, b2]);
    expect(await asA((tx) => getThread(tx, { messageId: b1.id }))).toEqual([root, a, b1]);
    expect(await asA((tx) => getThread(tx, { messageId: a.id }))).toEqual([root, a]);
    expect(await asA((tx) => getThread(tx, { messageId: root.id }))).toEqual([root]);
  });

  it('is one statement and follows a long chain (500 deep) to its root', async () => {
    const convo = await newConversationOfA();
    const ids = await asA(async (tx) => {
      const out: string[] = [];
      for (let i = 0; i < 500; i++) {
        out.push((await appendMessage(tx, { conversationId: convo.id, role: 'user', content: { i }, parentId: out.at(-1) ?? null })).id);
      }
      return out;
    });
    let thread: Message[] = [];
    const { statements } = await runCounting(t.db, w.a.tenantId, async (tx) => {
      thread = await getThread(tx, { messageId: ids.at(-1)! });
    });
    expect(statements).toBe(1);
    expect(thread.map((m) => m.id)).toEqual(ids);
  });

  it("throws NotFoundError('message') for a message that does not exist, or of another tenant", async () => {
    const bConvo = await newConversationOfB();
    const bMessage = await asB((tx) => appendMessage(tx, { conversationId: bConvo.id, role: 'user', content: { text: 'B' } }));
    for (const messageId of [bMessage.id, randomUUID()]) {
      await expect(asA((tx) => getThread(tx, { messageId }))).rejects.toMatchObject({ name: 'NotFoundError', entity: 'message', id: messageId });
    }
    expect((await asB((tx) => getThread(tx, { messageId: bMessage.id }))).map((m) => m.id)).toEqual([bMessage.id]);
  });

  it('refuses an id that is not a UUID before any SQL', async () => {
    const { error, statements } = await runCounting(t.db, w.a.tenantId, (tx) => getThread(tx, { messageId: 'root' }));
    expect(error).toMatchObject({ name: 'ValidationError', field: 'messageId' });
    expect(statements).toBe(0);
  });
});

describe('outside withTenant', () => {
  it('every function throws TenantContextError', async () => {
    const id = randomUUID();
    const calls: (() => Promise<unknown>)[] = [
      // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
      () => appendMessage(t.db, { conversationId: id, role: 'user', content: { text: 'x' } }),
      // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
      () => listMessages(t.db, { conversationId: id }),
      // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
      () => getThread(t.db, { messageId: id }),
    ];
    for (const call of calls) await expect(call()).rejects.toBeInstanceOf(TenantContextError);
    // @ts-expect-error a plain Transaction is not a TenantTx (and throws TenantContextError at run time)
    await expect(t.db.transaction().execute((tx) => listMessages(tx, { conversationId: id }))).rejects.toBeInstanceOf(TenantContextError);
  });
});

describe('listMessages plan on a big tenant', () => {
  // 10,000 conversations and 100,000 messages, next to a smaller tenant, on both backends.
  let big: Awaited<ReturnType<typeof insertBigTenant>>;
  beforeAll(async () => {
    big = await insertBigTenant(t.db, w.roleId, { conversations: 10_000, messagesPer: 10 });
    await insertBigTenant(t.db, w.roleId, { conversations: 2_000, messagesPer: 10 });
  });

  it('uses messages_list_idx with tenant_id in the index condition, first page and next pages, no Seq Scan', async () => {
    const conversationId = big.conversationId;
    const first = await explainLast(t.db, big.tenantId, (tx) => listMessages(tx, { conversationId, limit: 3 }));
    const page = await withTenant(t.db, big.tenantId, (tx) => listMessages(tx, { conversationId, limit: 3 }));
    expect(page.items).toHaveLength(3);
    const next = await explainLast(t.db, big.tenantId, (tx) => listMessages(tx, { conversationId, limit: 3, cursor: page.nextCursor }));
    for (const { sql: text, plan } of [first, next]) {
      const nodes = planNodes(plan);
      expect(nodes.filter((n) => n['Node Type'] === 'Seq Scan'), text).toEqual([]);
      const scan = nodes.find((n) => n['Index Name'] === 'messages_list_idx');
      expect(scan?.['Node Type'], JSON.stringify(plan, null, 1)).toMatch(/^Index (Only )?Scan$/);
      expect(scan?.['Index Cond']).toMatch(/tenant_id = /);
      expect(scan?.['Index Cond']).toMatch(/conversation_id = /);
      expect(nodes.map((n) => n['Node Type'])).not.toContain('Sort');
    }
    expect(planNodes(next.plan).find((n) => n['Index Name'] === 'messages_list_idx')?.['Index Cond']).toMatch(/created_at/);
  });
});
