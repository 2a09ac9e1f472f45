/**
 * Message trees as the database keeps them (migration 0013): no cycle and no parent in another
 * conversation, whoever writes (the owner's raw SQL, an app role's raw SQL inside withTenant, two
 * transactions at once); threads of at most MAX_THREAD_DEPTH messages; and getThread over a
 * chain of that depth, whatever the planner's statistics say (asserted through the rows and the
 * plan, never a timing).
 */
import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DB } from '../../src/db/schema.generated.ts';
import { migrate, migrateDown } from '../../src/db/migrator.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { createConversation } from '../../src/queries/conversations.ts';
import { appendMessage, getThread, MAX_THREAD_DEPTH, type Message } from '../../src/queries/messages.ts';
import { explainLast, insertChatWorld, planNodes, type ChatWorld } from '../support/conversation-fixtures.ts';
import { insertTenant } from '../support/fixtures.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let w: ChatWorld;

beforeAll(async () => {
  t = await openTestDb();
  w = await insertChatWorld(t.db);
  // The statistics stay what the tests make them: no autovacuum ANALYZE in the middle (server).
  await sql`alter table messages set (autovacuum_enabled = off)`.execute(t.db);
});
afterAll(() => t?.close());

const asA = <T>(fn: Parameters<typeof withTenant<T>>[2]) => withTenant(t.db, w.a.tenantId, fn);
const newConversation = () => asA((tx) => createConversation(tx, { userId: w.a.userId, agentId: w.a.agentId, title: 'tree' }));

/** Appends `texts` as a chain (each the reply to the one before), under `parentId` if given. */
async function chain(conversationId: string, texts: string[], parentId: string | null = null): Promise<Message[]> {
  return asA(async (tx) => {
    const out: Message[] = [];
    for (const text of texts) {
      out.push(await appendMessage(tx, { conversationId, role: 'user', content: { text }, parentId: out.at(-1)?.id ?? parentId }));
    }
    return out;
  });
}

/** What the owner sees of a conversation's messages: id → { parentId, depth }. */
async function tree(conversationId: string) {
  const rows = await t.db
    .selectFrom('messages')
    .select(['id', 'parentId', 'depth'])
    .where('conversationId', '=', conversationId)
    .orderBy('id')
    .execute();
  return Object.fromEntries(rows.map((r) => [r.id, { parentId: r.parentId, depth: r.depth }]));
}

/** The SQLSTATE `code` an attempt failed with (fails the test if it did not fail). */
async function failureCode(attempt: Promise<unknown>): Promise<string> {
  const error = await attempt.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'the statement was accepted').toBeDefined();
  return (error as { code?: string }).code ?? String(error);
}

/**
 * Inserts, as the owner and in one set-based statement, a chain of `length` messages (each the
 * reply to the one before) into a conversation, leaving depth to the database; returns the ids
 * root first.
 */
async function insertChain(db: Kysely<DB>, tenantId: string, conversationId: string, length: number): Promise<string[]> {
  await sql`
    with ids as (select g, gen_random_uuid() as id from generate_series(1, ${length}::int) g)
    insert into messages (tenant_id, id, conversation_id, parent_id, role, content, created_at)
    select ${tenantId}::uuid, i.id, ${conversationId}::uuid, p.id,
           case when i.g % 2 = 0 then 'assistant' else 'user' end,
           jsonb_build_object('i', i.g), clock_timestamp()
    from ids i left join ids p on p.g = i.g - 1
    order by i.g`.execute(db);
  const rows = await db.selectFrom('messages').select(['id', 'depth']).where('conversationId', '=', conversationId).orderBy('depth').execute();
  expect(rows.map((r) => r.depth)).toEqual(Array.from({ length }, (_, i) => i));
  return rows.map((r) => r.id);
}

describe('no cycle can be stored, whoever writes', () => {
  it("refuses the owner's raw UPDATE that puts a root under its own reply (A → B → A): 23503, nothing changed", async () => {
    const convo = await newConversation();
    const [a, b] = await chain(convo.id, ['a', 'b']);
    const before = await tree(convo.id);
    expect(await failureCode(sql`update messages set parent_id = ${b!.id}::uuid where id = ${a!.id}::uuid`.execute(t.db))).toBe('23503');
    expect(await tree(convo.id)).toEqual(before);
  });

  it('refuses a longer loop: a message moved under its own descendant three levels down', async () => {
    const convo = await newConversation();
    const [, b, , d] = await chain(convo.id, ['a', 'b', 'c', 'd']);
    const before = await tree(convo.id);
    const attempt = sql`update messages set parent_id = ${d!.id}::uuid where id = ${b!.id}::uuid`.execute(t.db);
    await expect(attempt).rejects.toMatchObject({ code: '23503', message: expect.stringMatching(/has replies/) });
    expect(await tree(convo.id)).toEqual(before);
  });

  it('refuses both halves of a cycle written in one statement (two roots, each put under the other)', async () => {
    const convo = await newConversation();
    const [x] = await chain(convo.id, ['x']);
    const [y] = await chain(convo.id, ['y']);
    const before = await tree(convo.id);
    const swap = sql`
      update messages set parent_id = case when id = ${x!.id}::uuid then ${y!.id}::uuid else ${x!.id}::uuid end
      where id in (${x!.id}::uuid, ${y!.id}::uuid)`.execute(t.db);
    expect(await failureCode(swap)).toBe('23503');
    expect(await tree(convo.id)).toEqual(before);
  });

  it("refuses the cms's raw SQL inside withTenant the same way (app_cms may update messages)", async () => {
    const convo = await newConversation();
    const [a, b] = await chain(convo.id, ['a', 'b']);
    const before = await tree(convo.id);
    const attempt = withTenant(
      t.db,
      w.a.tenantId,
      (tx) => sql`update messages set parent_id = ${b!.id}::uuid where id = ${a!.id}::uuid`.execute(tx),
      { role: 'app_cms' },
    );
    expect(await failureCode(attempt)).toBe('23503');
    expect(await tree(convo.id)).toEqual(before);
  });

  it.runIf(onServer)('refuses a cycle made by two transactions at once: the second waits for the first, then fails', async () => {
    const convo = await newConversation();
    const [x] = await chain(convo.id, ['x']);
    const [y] = await chain(convo.id, ['y']);
    const other = t.open(2);
    try {
      await other.connection().execute(async (first) => {
        await sql`begin`.execute(first);
        await sql`update messages set parent_id = ${y!.id}::uuid where id = ${x!.id}::uuid`.execute(first);
        // The second transaction starts while the first has not committed: it sees x as a root.
        const second = other.transaction().execute((tx) => sql`update messages set parent_id = ${x!.id}::uuid where id = ${y!.id}::uuid`.execute(tx));
        const outcome = second.then(
          () => 'committed',
          (e: { code?: string }) => e.code,
        );
        await new Promise((resolve) => setTimeout(resolve, 300));
        await sql`commit`.execute(first);
        expect(await outcome).toBe('23503');
      });
    } finally {
      await other.destroy();
    }
    expect(await tree(convo.id)).toEqual({
      [x!.id]: { parentId: y!.id, depth: 1 },
      [y!.id]: { parentId: null, depth: 0 },
    });
  });
});

describe('a parent is a message of the same conversation, whoever writes', () => {
  it("refuses the owner's raw insert, re-parenting or move that would link two conversations (only appendMessage checked it before)", async () => {
    const one = await newConversation();
    const two = await newConversation();
    const [root1, reply1] = await chain(one.id, ['root 1', 'reply 1']);
    const [root2] = await chain(two.id, ['root 2']);
    const before = { one: await tree(one.id), two: await tree(two.id) };
    const insert = sql`
      insert into messages (tenant_id, conversation_id, parent_id, role, content)
      values (${w.a.tenantId}::uuid, ${two.id}::uuid, ${root1!.id}::uuid, 'user', '{"x": 1}')`.execute(t.db);
    expect(await failureCode(insert)).toBe('23503');
    const reparent = sql`update messages set parent_id = ${root2!.id}::uuid where id = ${reply1!.id}::uuid`.execute(t.db);
    expect(await failureCode(reparent)).toBe('23503');
    const move = sql`update messages set conversation_id = ${two.id}::uuid where id = ${reply1!.id}::uuid`.execute(t.db);
    expect(await failureCode(move)).toBe('23503');
    const moveRoot = sql`update messages set conversation_id = ${two.id}::uuid where id = ${root1!.id}::uuid`.execute(t.db);
    expect(await failureCode(moveRoot)).toBe('23503');
    expect({ one: await tree(one.id), two: await tree(two.id) }).toEqual(before);
  });
});

describe('depth', () => {
  it('is filled from the parent when a raw insert leaves it out; a depth that disagrees with the parent is refused', async () => {
    const convo = await newConversation();
    const [, b] = await chain(convo.id, ['a', 'b']);
    const { rows } = await sql<{ depth: number }>`
      insert into messages (tenant_id, conversation_id, parent_id, role, content)
      values (${w.a.tenantId}::uuid, ${convo.id}::uuid, ${b!.id}::uuid, 'user', '{"raw": true}')
      returning depth`.execute(t.db);
    expect(rows).toEqual([{ depth: 2 }]);
    const wrong = sql`
      insert into messages (tenant_id, conversation_id, parent_id, role, content, depth)
      values (${w.a.tenantId}::uuid, ${convo.id}::uuid, ${b!.id}::uuid, 'user', '{}', 7)`.execute(t.db);
    expect(await failureCode(wrong)).toBe('23503');
    const deepRoot = sql`
      insert into messages (tenant_id, conversation_id, role, content, depth)
      values (${w.a.tenantId}::uuid, ${convo.id}::uuid, 'user', '{}', 3)`.execute(t.db);
    expect(await failureCode(deepRoot)).toBe('23514');
    const missingParent = sql`
      insert into messages (tenant_id, conversation_id, parent_id, role, content)
      values (${w.a.tenantId}::uuid, ${convo.id}::uuid, ${randomUUID()}::uuid, 'user', '{}')`.execute(t.db);
    expect(await failureCode(missingParent)).toBe('23503');
  });

  it('lets a message without replies move under another message of its conversation; a message with replies keeps its depth', async () => {
    const convo = await newConversation();
    const [a, b, c] = await chain(convo.id, ['a', 'b', 'c']);
    const [other] = await chain(convo.id, ['other root']);
    // c (no replies) moves under the other root: its depth follows.
    await sql`update messages set parent_id = ${other!.id}::uuid where id = ${c!.id}::uuid`.execute(t.db);
    // b, without replies now, becomes a root.
    await sql`update messages set parent_id = null where id = ${b!.id}::uuid`.execute(t.db);
    expect(await tree(convo.id)).toEqual({
      [a!.id]: { parentId: null, depth: 0 },
      [b!.id]: { parentId: null, depth: 0 },
      [c!.id]: { parentId: other!.id, depth: 1 },
      [other!.id]: { parentId: null, depth: 0 },
    });
    // The other root has a reply now: it cannot go under a.
    const attempt = sql`update messages set parent_id = ${a!.id}::uuid where id = ${other!.id}::uuid`.execute(t.db);
    await expect(attempt).rejects.toMatchObject({ code: '23503', message: expect.stringMatching(/has replies: a root with replies cannot be given a parent/) });
    // A message with replies may change parent at the same depth.
    const [b2] = await chain(convo.id, ['b2'], a!.id);
    await chain(convo.id, ['reply to b2'], b2!.id);
    await sql`update messages set parent_id = ${other!.id}::uuid where id = ${b2!.id}::uuid`.execute(t.db);
    expect((await tree(convo.id))[b2!.id]).toEqual({ parentId: other!.id, depth: 1 });
  });

  it('deleting a message still deletes the branch below it, and only that branch', async () => {
    const convo = await newConversation();
    const [root, a, b] = await chain(convo.id, ['root', 'a', 'b']);
    const [sibling] = await chain(convo.id, ['sibling'], root!.id);
    await sql`delete from messages where id = ${a!.id}::uuid`.execute(t.db);
    expect(Object.keys(await tree(convo.id)).sort()).toEqual([root!.id, sibling!.id].sort());
    expect(b).toBeDefined();
  });
});

describe('threads of MAX_THREAD_DEPTH messages', () => {
  let conversationId: string;
  let ids: string[];
  beforeAll(async () => {
    conversationId = (await newConversation()).id;
    ids = await insertChain(t.db, w.a.tenantId, conversationId, MAX_THREAD_DEPTH);
  });

  it('getThread returns a chain of 10,000 messages built set-based by the owner, without ANALYZE: every one, root first, in one statement', async () => {
    expect(MAX_THREAD_DEPTH).toBe(10_000);
    const thread = await asA((tx) => getThread(tx, { messageId: ids.at(-1)! }));
    expect(thread).toHaveLength(MAX_THREAD_DEPTH);
    expect(thread.map((m) => m.id)).toEqual(ids);
    expect(thread[0]).toMatchObject({ parentId: null, content: { i: 1 }, role: 'user' });
    expect(thread.at(-1)).toMatchObject({ parentId: ids.at(-2), content: { i: MAX_THREAD_DEPTH }, role: 'assistant' });
    const middle = await asA((tx) => getThread(tx, { messageId: ids[4_999]! }));
    expect(middle.map((m) => m.id)).toEqual(ids.slice(0, 5_000));
  });

  it('walks by (tenant_id, id) index lookups in a nested loop whatever the statistics: none, or taken before the tenant had any message', async () => {
    const planOf = async (tenantId: string, messageId: string) => {
      const { plan } = await explainLast(t.db, tenantId, (tx) => getThread(tx, { messageId }));
      return planNodes(plan);
    };
    const check = (nodes: ReturnType<typeof planNodes>) => {
      const types = nodes.map((n) => n['Node Type']);
      expect(types).toContain('Recursive Union');
      expect(types).toContain('Nested Loop');
      expect(types).not.toContain('Hash Join');
      expect(types).not.toContain('Merge Join');
      expect(nodes.filter((n) => n['Relation Name'] === 'messages' && n['Node Type'] !== 'Index Scan').map((n) => n['Node Type'])).toEqual([]);
      for (const scan of nodes.filter((n) => n['Relation Name'] === 'messages')) expect(scan['Index Cond']).toMatch(/tenant_id = .*id = /s);
    };
    check(await planOf(w.a.tenantId, ids.at(-1)!));

    // Statistics that know nothing of a new tenant: ANALYZE now, then give it a 10,000-deep chain.
    await sql`analyze messages`.execute(t.db);
    const fresh = await insertTenant(t.db, w.roleId);
    const convo = await t.db
      .insertInto('conversations')
      .values({ tenantId: fresh.tenantId, userId: fresh.userId, title: 'after analyze' })
      .returning('id')
      .executeTakeFirstOrThrow();
    const freshIds = await insertChain(t.db, fresh.tenantId, convo.id, MAX_THREAD_DEPTH);
    check(await planOf(fresh.tenantId, freshIds.at(-1)!));
    const thread = await withTenant(t.db, fresh.tenantId, (tx) => getThread(tx, { messageId: freshIds.at(-1)! }));
    expect(thread.map((m) => m.id)).toEqual(freshIds);
  });

  it("appendMessage refuses a reply to the 10,000th message with ValidationError('parentId'), writing nothing; the database refuses it from any writer", async () => {
    const leaf = ids.at(-1)!;
    const before = await t.db.selectFrom('conversations').select(['lastActivityAt', 'updatedAt']).where('id', '=', conversationId).executeTakeFirstOrThrow();
    const count = Object.keys(await tree(conversationId)).length;
    await expect(asA((tx) => appendMessage(tx, { conversationId, role: 'user', content: { text: 'one too many' }, parentId: leaf }))).rejects.toMatchObject({
      name: 'ValidationError',
      field: 'parentId',
      message: `parentId: is message 10000 of its thread: a thread holds at most MAX_THREAD_DEPTH = 10000 messages`,
    });
    expect(await t.db.selectFrom('conversations').select(['lastActivityAt', 'updatedAt']).where('id', '=', conversationId).executeTakeFirstOrThrow()).toEqual(before);
    expect(Object.keys(await tree(conversationId))).toHaveLength(count);
    const raw = sql`
      insert into messages (tenant_id, conversation_id, parent_id, role, content)
      values (${w.a.tenantId}::uuid, ${conversationId}::uuid, ${leaf}::uuid, 'user', '{}')`.execute(t.db);
    expect(await failureCode(raw)).toBe('23514');
    // One level up there is room: a sibling of the leaf is the 10,000th message of its own thread.
    const sibling = await asA((tx) => appendMessage(tx, { conversationId, role: 'user', content: { text: 'edit' }, parentId: ids.at(-2)! }));
    const thread = await asA((tx) => getThread(tx, { messageId: sibling.id }));
    expect(thread.map((m) => m.id)).toEqual([...ids.slice(0, -1), sibling.id]);
  });
});

describe('migration 0013 on a database that already has messages', () => {
  it('gives every message its depth without touching updated_at, and refuses a cycle or a parent in another conversation, changing nothing', async () => {
    const m = await openTestDb();
    try {
      await migrateDown(m.db, { to: '0013_guard_message_trees' });
      const world = await insertChatWorld(m.db);
      const conversation = () =>
        m.db
          .insertInto('conversations')
          .values({ tenantId: world.a.tenantId, userId: world.a.userId, title: 'old' })
          .returning('id')
          .executeTakeFirstOrThrow();
      const one = await conversation();
      const two = await conversation();
      const ids = Array.from({ length: 6 }, () => randomUUID());
      const [root, reply, replyToReply, x, y, stray] = ids as [string, string, string, string, string, string];
      const old = '2020-01-01T00:00:00Z';
      await sql`
        insert into messages (tenant_id, id, conversation_id, parent_id, role, content, created_at, updated_at)
        values (${world.a.tenantId}::uuid, ${root}::uuid, ${one.id}::uuid, null, 'user', '{}', ${old}::timestamptz, ${old}::timestamptz),
               (${world.a.tenantId}::uuid, ${reply}::uuid, ${one.id}::uuid, ${root}::uuid, 'user', '{}', ${old}::timestamptz, ${old}::timestamptz),
               (${world.a.tenantId}::uuid, ${replyToReply}::uuid, ${one.id}::uuid, ${reply}::uuid, 'user', '{}', ${old}::timestamptz, ${old}::timestamptz),
               (${world.a.tenantId}::uuid, ${x}::uuid, ${one.id}::uuid, null, 'user', '{}', ${old}::timestamptz, ${old}::timestamptz),
               (${world.a.tenantId}::uuid, ${y}::uuid, ${one.id}::uuid, ${x}::uuid, 'user', '{}', ${old}::timestamptz, ${old}::timestamptz),
               (${world.a.tenantId}::uuid, ${stray}::uuid, ${two.id}::uuid, ${root}::uuid, 'user', '{}', ${old}::timestamptz, ${old}::timestamptz)`.execute(m.db);
      // x → y → x, as raw SQL could write before 0013.
      await sql`update messages set parent_id = ${y}::uuid where id = ${x}::uuid`.execute(m.db);
      const failure = await migrate(m.db).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(failure?.message).toMatch(/3 message\(s\) are not on a path of at most 10,000 messages from a root of their own conversation/);
      for (const id of [x, y, stray]) expect(failure?.message).toContain(id);
      const applied = await sql<{ name: string }>`select name from schema_migrations where name like '0013%'`.execute(m.db);
      expect(applied.rows).toEqual([]);
      // As the hint says: give them a parent of their own conversation (or none), then migrate.
      await sql`update messages set parent_id = null where id in (${x}::uuid, ${stray}::uuid)`.execute(m.db);
      const updatedAt = async () =>
        Object.fromEntries((await m.db.selectFrom('messages').select(['id', 'updatedAt']).execute()).map((r) => [r.id, r.updatedAt.toISOString()]));
      const before = await updatedAt();
      expect(before[root]).toBe('2020-01-01T00:00:00.000Z');
      await migrate(m.db);
      const rows = await m.db.selectFrom('messages').select(['id', 'depth']).execute();
      expect(Object.fromEntries(rows.map((r) => [r.id, r.depth]))).toEqual({ [root]: 0, [reply]: 1, [replyToReply]: 2, [x]: 0, [y]: 1, [stray]: 0 });
      expect(await updatedAt()).toEqual(before);
    } finally {
      await m.close();
    }
  });
});
