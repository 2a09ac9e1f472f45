/**
 * Edits as branches (editMessage, listBranches, getThread on a chosen leaf), deleteMessageBranch and
 * what it leaves behind (usage rows, resources, chunks, the summary pointer), and
 * setConversationSummary, as the cms role (app_cms) and across the tenant wall.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError, PermissionError, ValidationError } from '../../src/db/errors.ts';
import type { TenantTx } from '../../src/db/tenant-tx.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { createConversation, getConversation, softDeleteConversation } from '../../src/queries/conversations.ts';
import { deleteMessageBranch, editMessage, listBranches, setConversationSummary } from '../../src/queries/message-branches.ts';
import { appendMessage, getThread, listMessages, type Message } from '../../src/queries/messages.ts';
import { createResource } from '../../src/queries/resources.ts';
import { recordUsage } from '../../src/queries/usage.ts';
import { addChunks } from '../../src/queries/vectors.ts';
import { explainLast, insertChatWorld, planNodes, type ChatWorld } from '../support/conversation-fixtures.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let w: ChatWorld;

beforeAll(async () => {
  t = await openTestDb();
  w = await insertChatWorld(t.db);
});
afterAll(() => t?.close());

/** As the cms's role in tenant A / B: what the functions are for. */
const asA = <T>(fn: (tx: TenantTx) => Promise<T>) => withTenant(t.db, w.a.tenantId, fn, { role: 'app_cms' });
const asB = <T>(fn: (tx: TenantTx) => Promise<T>) => withTenant(t.db, w.b.tenantId, fn, { role: 'app_cms' });

const newConversation = () => asA((tx) => createConversation(tx, { userId: w.a.userId, agentId: w.a.agentId, title: 'branches' }));
const say = (conversationId: string, text: string, parentId: string | null = null, role: Message['role'] = 'user') =>
  asA((tx) => appendMessage(tx, { conversationId, role, content: { text }, parentId }));
const texts = (messages: Message[]) => messages.map((m) => (m.content as { text?: string }).text);

function axis(i: number): number[] {
  const v = new Array<number>(1536).fill(0);
  v[i] = 1;
  return v;
}

describe('editMessage', () => {
  it('adds a sibling with the new content and keeps the original and its replies; getThread follows the chosen leaf', async () => {
    const c = await newConversation();
    const q = await say(c.id, 'question');
    const a1 = await say(c.id, 'answer 1', q.id, 'assistant');
    const f1 = await say(c.id, 'follow-up', a1.id);
    const a2 = await asA((tx) => editMessage(tx, { messageId: a1.id, content: { text: 'answer 2' } }));
    expect(a2).toMatchObject({ conversationId: c.id, parentId: q.id, role: 'assistant', content: { text: 'answer 2' } });
    expect(a2.id).not.toBe(a1.id);
    expect(texts(await asA((tx) => getThread(tx, { messageId: f1.id })))).toEqual(['question', 'answer 1', 'follow-up']);
    expect(texts(await asA((tx) => getThread(tx, { messageId: a2.id })))).toEqual(['question', 'answer 2']);
    const all = await asA((tx) => listMessages(tx, { conversationId: c.id }));
    expect(texts(all.items)).toEqual(['question', 'answer 1', 'follow-up', 'answer 2']);
  });

  it('editing a root gives another root of the same conversation', async () => {
    const c = await newConversation();
    const first = await say(c.id, 'first try');
    const again = await asA((tx) => editMessage(tx, { messageId: first.id, content: { text: 'second try' } }));
    expect(again).toMatchObject({ conversationId: c.id, parentId: null, role: 'user' });
    const roots = await asA((tx) => listBranches(tx, { conversationId: c.id }));
    expect(texts(roots.items)).toEqual(['first try', 'second try']);
  });

  it('refuses bad content before any SQL, a foreign or missing message as missing, a soft-deleted conversation as missing', async () => {
    const c = await newConversation();
    const m = await say(c.id, 'hello');
    await expect(asA((tx) => editMessage(tx, { messageId: m.id, content: 'text' as never }))).rejects.toBeInstanceOf(ValidationError);
    await expect(asA((tx) => editMessage(tx, { messageId: 'nope', content: {} }))).rejects.toMatchObject({ field: 'messageId' });
    await expect(asB((tx) => editMessage(tx, { messageId: m.id, content: { text: 'x' } }))).rejects.toEqual(new NotFoundError('message', m.id));
    await asA((tx) => softDeleteConversation(tx, { conversationId: c.id }));
    await expect(asA((tx) => editMessage(tx, { messageId: m.id, content: { text: 'x' } }))).rejects.toEqual(new NotFoundError('conversation', c.id));
    expect(await t.db.selectFrom('messages').select('id').where('conversationId', '=', c.id).execute()).toHaveLength(1);
  });

  it('is refused for the other service roles before any SQL', async () => {
    const c = await newConversation();
    const m = await say(c.id, 'hello');
    const error = await withTenant(t.db, w.a.tenantId, (tx) => editMessage(tx, { messageId: m.id, content: { text: 'x' } }), { role: 'app_gateway' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermissionError);
  });
});

describe('listBranches', () => {
  it('pages through the replies of a message, oldest first, each once, and refuses a cursor of another message', async () => {
    const c = await newConversation();
    const q = await say(c.id, 'question');
    const other = await say(c.id, 'other');
    for (let i = 0; i < 7; i++) await say(c.id, `answer ${i}`, q.id, 'assistant');
    await say(c.id, 'elsewhere', other.id, 'assistant');
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page = await asA((tx) => listBranches(tx, { messageId: q.id, limit: 3, cursor }));
      expect(page.items.length).toBeLessThanOrEqual(3);
      seen.push(...texts(page.items).map(String));
      cursor = page.nextCursor;
      pages++;
      if (cursor !== null) {
        const foreign = cursor;
        await expect(asA((tx) => listBranches(tx, { messageId: other.id, cursor: foreign }))).rejects.toMatchObject({ field: 'cursor' });
      }
    } while (cursor !== null);
    expect(pages).toBe(3);
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6].map((i) => `answer ${i}`));
  });

  it('needs exactly one of messageId and conversationId, bounds the limit, and shows nothing across the wall', async () => {
    const c = await newConversation();
    const q = await say(c.id, 'question');
    await say(c.id, 'answer', q.id, 'assistant');
    await expect(asA((tx) => listBranches(tx, {}))).rejects.toBeInstanceOf(ValidationError);
    await expect(asA((tx) => listBranches(tx, { messageId: q.id, conversationId: c.id }))).rejects.toBeInstanceOf(ValidationError);
    await expect(asA((tx) => listBranches(tx, { messageId: q.id, limit: 201 }))).rejects.toMatchObject({ field: 'limit' });
    expect(await asB((tx) => listBranches(tx, { messageId: q.id }))).toEqual({ items: [], nextCursor: null });
    expect(await asB((tx) => listBranches(tx, { conversationId: c.id }))).toEqual({ items: [], nextCursor: null });
  });

  it('reads a page through messages_children_idx / messages_roots_idx, tenant first, without a sort', async () => {
    const c = await newConversation();
    const root = await say(c.id, 'root');
    // As the owner: 3,000 messages in a chain below the root, and 300 replies to the root.
    await sql`
      with ids as (select g, gen_random_uuid() as id from generate_series(1, 3000) g)
      insert into messages (tenant_id, id, conversation_id, parent_id, role, content, depth)
      select ${w.a.tenantId}::uuid, i.id, ${c.id}::uuid, coalesce(p.id, ${root.id}::uuid), 'user', jsonb_build_object('i', i.g), i.g
      from ids i left join ids p on p.g = i.g - 1
      order by i.g`.execute(t.db);
    await sql`
      insert into messages (tenant_id, conversation_id, parent_id, role, content, depth)
      select ${w.a.tenantId}::uuid, ${c.id}::uuid, ${root.id}::uuid, 'assistant', jsonb_build_object('r', g), 1
      from generate_series(1, 300) g`.execute(t.db);
    await sql`analyze messages`.execute(t.db);
    const page = await asA((tx) => listBranches(tx, { messageId: root.id, limit: 5 }));
    expect(page.items).toHaveLength(5);
    const cases = [
      { index: 'messages_children_idx', fn: (tx: TenantTx) => listBranches(tx, { messageId: root.id, limit: 5 }) },
      { index: 'messages_children_idx', fn: (tx: TenantTx) => listBranches(tx, { messageId: root.id, limit: 5, cursor: page.nextCursor }) },
      { index: 'messages_roots_idx', fn: (tx: TenantTx) => listBranches(tx, { conversationId: c.id, limit: 5 }) },
    ];
    for (const { index, fn } of cases) {
      const { sql: text, plan } = await explainLast(t.db, w.a.tenantId, fn);
      const nodes = planNodes(plan);
      const scan = nodes.find((n) => n['Index Name'] === index);
      expect(scan?.['Index Cond'], `${text}\n${JSON.stringify(plan, null, 1)}`).toMatch(/tenant_id = /);
      expect(nodes.map((n) => n['Node Type']), text).not.toContain('Sort');
      expect(nodes.map((n) => n['Node Type']), text).not.toContain('Seq Scan');
    }
  });
});

describe('deleteMessageBranch', () => {
  it('removes the message and everything below it, and nothing else', async () => {
    const c = await newConversation();
    const q = await say(c.id, 'question');
    const a1 = await say(c.id, 'answer 1', q.id, 'assistant');
    const f1 = await say(c.id, 'follow-up 1', a1.id);
    await say(c.id, 'deeper', f1.id, 'assistant');
    await say(c.id, 'follow-up 1b', a1.id);
    const a2 = await asA((tx) => editMessage(tx, { messageId: a1.id, content: { text: 'answer 2' } }));
    expect(await asA((tx) => deleteMessageBranch(tx, { messageId: a1.id }))).toEqual({ deleted: 4 });
    const left = await asA((tx) => listMessages(tx, { conversationId: c.id }));
    expect(texts(left.items)).toEqual(['question', 'answer 2']);
    expect(texts(await asA((tx) => getThread(tx, { messageId: a2.id })))).toEqual(['question', 'answer 2']);
    expect(await asA((tx) => deleteMessageBranch(tx, { messageId: a1.id }))).toEqual({ deleted: 0 });
  });

  it('deletes nothing of another tenant: a foreign id is a missing one', async () => {
    const c = await newConversation();
    const q = await say(c.id, 'question');
    expect(await asB((tx) => deleteMessageBranch(tx, { messageId: q.id }))).toEqual({ deleted: 0 });
    expect(await t.db.selectFrom('messages').select('id').where('id', '=', q.id).execute()).toHaveLength(1);
    await expect(asA((tx) => deleteMessageBranch(tx, { messageId: 'x' }))).rejects.toMatchObject({ field: 'messageId' });
  });

  it('keeps usage rows (message_id NULL, cost unchanged) and resources with their chunks (message_id NULL), and clears the summary', async () => {
    const c = await newConversation();
    const q = await say(c.id, 'question');
    const a = await say(c.id, 'answer', q.id, 'assistant');
    const summary = await say(c.id, 'summary so far', a.id, 'system');
    await asA((tx) => setConversationSummary(tx, { conversationId: c.id, messageId: summary.id }));
    const usage = await withTenant(t.db, w.a.tenantId, (tx) =>
      recordUsage(tx, { userId: w.a.userId, modelId: w.modelId, type: 'chat', inputTokens: 10, outputTokens: 5, messageId: a.id }), { role: 'app_gateway' });
    const resource = await asA((tx) => createResource(tx, { name: 'upload.txt', type: 'text', content: 'attached', messageId: a.id }));
    await asA((tx) => addChunks(tx, { resourceId: resource.id, chunks: [{ content: 'attached', embedding: axis(3) }] }));
    await asA((tx) => addChunks(tx, { conversationId: c.id, chunks: [{ content: 'said in the chat', embedding: axis(4) }] }));

    expect(await asA((tx) => deleteMessageBranch(tx, { messageId: a.id }))).toEqual({ deleted: 2 });

    const usageRow = await t.db.selectFrom('usage').select(['messageId', 'cost']).where('id', '=', usage.id).executeTakeFirstOrThrow();
    expect(usageRow).toEqual({ messageId: null, cost: usage.cost });
    const resourceRow = await t.db.selectFrom('resources').select('messageId').where('id', '=', resource.id).executeTakeFirstOrThrow();
    expect(resourceRow.messageId).toBeNull();
    const chunks = await t.db.selectFrom('vectors').select('content').where((eb) => eb.or([eb('resourceId', '=', resource.id), eb('conversationId', '=', c.id)])).orderBy('content').execute();
    expect(chunks.map((r) => r.content)).toEqual(['attached', 'said in the chat']);
    expect((await asA((tx) => getConversation(tx, { conversationId: c.id }))).summaryMessageId).toBeNull();
    // The foreign key's action cleared usage.message_id; the cms itself still cannot touch usage.
    const direct = await asA((tx) => sql`update usage set message_id = null where id = ${usage.id}`.execute(tx)).catch((e: { code?: string }) => e.code);
    expect(direct).toBe('42501');
  });

  it('deletes a branch thousands of messages deep in one call', async () => {
    const c = await newConversation();
    const root = await say(c.id, 'root');
    // As the owner, in one statement: a chain of 3,000 replies below the root.
    await sql`
      with ids as (select g, gen_random_uuid() as id from generate_series(1, 3000) g)
      insert into messages (tenant_id, id, conversation_id, parent_id, role, content, depth)
      select ${w.a.tenantId}::uuid, i.id, ${c.id}::uuid, coalesce(p.id, ${root.id}::uuid), 'user', jsonb_build_object('i', i.g), i.g
      from ids i left join ids p on p.g = i.g - 1
      order by i.g`.execute(t.db);
    expect(await asA((tx) => deleteMessageBranch(tx, { messageId: root.id }))).toEqual({ deleted: 3001 });
    expect(await t.db.selectFrom('messages').select('id').where('conversationId', '=', c.id).execute()).toEqual([]);
  });
});

describe('setConversationSummary', () => {
  it('points the conversation at a message of its own, and clears it with null', async () => {
    const c = await newConversation();
    const m = await say(c.id, 'summary', null, 'system');
    const set = await asA((tx) => setConversationSummary(tx, { conversationId: c.id, messageId: m.id }));
    expect(set).toMatchObject({ id: c.id, summaryMessageId: m.id });
    const cleared = await asA((tx) => setConversationSummary(tx, { conversationId: c.id, messageId: null }));
    expect(cleared.summaryMessageId).toBeNull();
  });

  it('refuses a message of another conversation, a missing or foreign one, and a soft-deleted or foreign conversation', async () => {
    const c = await newConversation();
    const d = await newConversation();
    const ofD = await say(d.id, 'of d');
    await expect(asA((tx) => setConversationSummary(tx, { conversationId: c.id, messageId: ofD.id }))).rejects.toMatchObject({ name: 'ValidationError', field: 'messageId' });
    const missing = randomUUID();
    await expect(asA((tx) => setConversationSummary(tx, { conversationId: c.id, messageId: missing }))).rejects.toEqual(new NotFoundError('message', missing));
    // Tenant B's message in B's conversation: A cannot name it.
    const bConversation = await asB((tx) => createConversation(tx, { userId: w.b.userId, agentId: w.b.agentId }));
    const bMessage = await asB((tx) => appendMessage(tx, { conversationId: bConversation.id, role: 'user', content: { text: 'b' } }));
    await expect(asA((tx) => setConversationSummary(tx, { conversationId: c.id, messageId: bMessage.id }))).rejects.toEqual(new NotFoundError('message', bMessage.id));
    await expect(asA((tx) => setConversationSummary(tx, { conversationId: bConversation.id, messageId: null }))).rejects.toEqual(new NotFoundError('conversation', bConversation.id));
    await asA((tx) => softDeleteConversation(tx, { conversationId: d.id }));
    await expect(asA((tx) => setConversationSummary(tx, { conversationId: d.id, messageId: ofD.id }))).rejects.toEqual(new NotFoundError('conversation', d.id));
    const rows = await t.db.selectFrom('conversations').select('summaryMessageId').where('id', 'in', [c.id, d.id, bConversation.id]).execute();
    expect(rows.map((r) => r.summaryMessageId)).toEqual([null, null, null]);
  });
});
