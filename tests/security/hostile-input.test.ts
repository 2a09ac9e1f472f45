import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/db/errors.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { createConversation, listConversations, renameConversation } from '../../src/queries/conversations.ts';
import { appendMessage, listMessages } from '../../src/queries/messages.ts';
import { createResource, getResource } from '../../src/queries/resources.ts';
import { getUser } from '../../src/queries/users.ts';
import { addChunks, hybridSearch, similaritySearch } from '../../src/queries/vectors.ts';
import { insertCatalog, insertTenant } from '../support/fixtures.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

/** Strings that have broken SQL builders, parsers and encoders before. */
const HOSTILE = {
  injection: "'; drop table users; --",
  quoteMix: `it's "quoted" \`back\` ''doubled''`,
  dollarQuote: '$$; drop table users; $$ $tag$ x $tag$',
  backslashes: 'C:\\path\\to\\file \\x00 \\n \\\\ E\'\\047\'',
  emoji: '👩🏽‍💻 🚀 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ℌ',
  rtl: '\u202Eevil.txt\u202C \u05E9\u05DC\u05D5\u05DD \u0645\u0631\u062D\u0628\u0627',
  combining: 'Z\u0351\u0363\u0364a\u0352\u036Bl\u0346go',
  controls: 'tab\tnewline\nreturn\rbell\u0007',
  percent: '100% _wild_ %s %d ${x} {{y}}',
} as const;
const NUL = 'before\u0000after';
const ONE_MB = 'x'.repeat(1024 * 1024 - 2) + '🙂'; // 1 MiB of UTF-16 code units, ending in a surrogate pair

let t: TestDb;
let a: { tenantId: string; userId: string };
let b: { tenantId: string; userId: string };
let agentId: string;
let countsBefore: Record<string, number>;

async function counts(): Promise<Record<string, number>> {
  const tables = ['tenants', 'users', 'roles', 'models', 'agents'];
  const out: Record<string, number> = {};
  for (const table of tables) {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)}`.execute(t.db);
    out[table] = rows[0]!.n;
  }
  return out;
}

beforeAll(async () => {
  t = await openTestDb();
  const { roleId, modelId } = await insertCatalog(t.db);
  a = await insertTenant(t.db, roleId, 'hostile-a');
  b = await insertTenant(t.db, roleId, 'hostile-b');
  agentId = (await t.db.insertInto('agents').values({ name: 'global', modelId }).returning('id').executeTakeFirstOrThrow()).id;
  countsBefore = await counts();
});
afterAll(async () => {
  // No table was harmed by anything below.
  expect(await counts()).toEqual(countsBefore);
  await t?.close();
});

describe('ids and cursors carrying SQL or garbage are refused with a ValidationError', () => {
  const bad = [...Object.values(HOSTILE), NUL, ONE_MB, '', ' ', '00000000-0000-0000-0000-00000000000g'];

  it.each(bad.map((v) => [JSON.stringify(v).slice(0, 40), v]))('tenant id %s', async (_, value) => {
    await expect(withTenant(t.db, value, async () => 'ran')).rejects.toBeInstanceOf(ValidationError);
  });

  it.each(bad.map((v) => [JSON.stringify(v).slice(0, 40), v]))('user id %s', async (_, value) => {
    await expect(withTenant(t.db, a.tenantId, (tx) => getUser(tx, { userId: value }))).rejects.toMatchObject({ name: 'ValidationError', field: 'userId' });
  });

  it.each(bad.map((v) => [JSON.stringify(v).slice(0, 40), v]))('cursor %s', async (_, value) => {
    await expect(
      withTenant(t.db, a.tenantId, (tx) => listConversations(tx, { userId: a.userId, cursor: value })),
    ).rejects.toMatchObject({ name: 'ValidationError', field: 'cursor' });
  });

  it("another tenant's cursor, and a cursor of another list", async () => {
    const conversation = await withTenant(t.db, a.tenantId, async (tx) => {
      const c = await createConversation(tx, { userId: a.userId, agentId, title: 'one' });
      await createConversation(tx, { userId: a.userId, agentId, title: 'two' });
      await appendMessage(tx, { conversationId: c.id, role: 'user', content: { text: '1' } });
      await appendMessage(tx, { conversationId: c.id, role: 'user', content: { text: '2' } });
      return c;
    });
    const page = await withTenant(t.db, a.tenantId, (tx) => listConversations(tx, { userId: a.userId, limit: 1 }));
    const messagePage = await withTenant(t.db, a.tenantId, (tx) => listMessages(tx, { conversationId: conversation.id, limit: 1 }));
    expect(page.nextCursor).not.toBeNull();
    expect(messagePage.nextCursor).not.toBeNull();
    await expect(
      withTenant(t.db, b.tenantId, (tx) => listConversations(tx, { userId: a.userId, cursor: page.nextCursor })),
    ).rejects.toMatchObject({ name: 'ValidationError', field: 'cursor' });
    await expect(
      withTenant(t.db, a.tenantId, (tx) => listConversations(tx, { userId: a.userId, cursor: messagePage.nextCursor })),
    ).rejects.toMatchObject({ name: 'ValidationError', field: 'cursor' });
    // A tampered cursor (one character changed) is garbage, not another position.
    const tampered = page.nextCursor!.slice(0, -2) + (page.nextCursor!.endsWith('A') ? 'B' : 'A') + page.nextCursor!.slice(-1);
    await expect(
      withTenant(t.db, a.tenantId, (tx) => listConversations(tx, { userId: a.userId, cursor: tampered })),
    ).rejects.toBeInstanceOf(ValidationError);
  });
});

describe('text carrying SQL, quotes, emoji or RTL marks is stored and returned byte-for-byte', () => {
  it.each(Object.entries(HOSTILE))('conversation title: %s', async (_, value) => {
    const title = value.trim() === value ? value : value.trim();
    const created = await withTenant(t.db, a.tenantId, (tx) => createConversation(tx, { userId: a.userId, agentId, title }));
    expect(created.title).toBe(title);
    const renamed = await withTenant(t.db, a.tenantId, (tx) => renameConversation(tx, { conversationId: created.id, title: `${title}!` }));
    expect(renamed.title).toBe(`${title}!`);
  });

  it.each(Object.entries(HOSTILE))('message content and resource text: %s', async (_, value) => {
    const { conversation, message, resource } = await withTenant(t.db, a.tenantId, async (tx) => {
      const conversation = await createConversation(tx, { userId: a.userId, agentId });
      const message = await appendMessage(tx, { conversationId: conversation.id, role: 'user', content: { text: value, [value]: [value] } });
      const resource = await createResource(tx, { name: value, type: 'text', content: value, metadata: { note: value } });
      return { conversation, message, resource };
    });
    expect(message.content).toEqual({ text: value, [value]: [value] });
    const listed = await withTenant(t.db, a.tenantId, (tx) => listMessages(tx, { conversationId: conversation.id }));
    expect(listed.items[0]!.content).toEqual({ text: value, [value]: [value] });
    const read = await withTenant(t.db, a.tenantId, (tx) => getResource(tx, { resourceId: resource.id }));
    expect(read).toMatchObject({ name: value, content: value, metadata: { note: value } });
  });

  it('a 1 MB resource text and a 1 MB message string round-trip', async () => {
    const back = await withTenant(t.db, a.tenantId, async (tx) => {
      const conversation = await createConversation(tx, { userId: a.userId, agentId });
      // Its JSON text is a little over MAX_MESSAGE_CONTENT_BYTES (1 MiB): this call raises the limit.
      const message = await appendMessage(tx, { conversationId: conversation.id, role: 'assistant', content: { text: ONE_MB }, maxContentBytes: 2 * 1_048_576 });
      const resource = await createResource(tx, { name: 'big', type: 'text', content: ONE_MB });
      return { message: (await listMessages(tx, { conversationId: conversation.id })).items[0]!, resource: await getResource(tx, { resourceId: resource.id }) };
    });
    expect((back.message.content as { text: string }).text === ONE_MB).toBe(true);
    expect(back.resource.content === ONE_MB).toBe(true);
  });

  it('NUL characters (which PostgreSQL text cannot hold) are refused with a ValidationError, nothing stored', async () => {
    await expect(
      withTenant(t.db, a.tenantId, (tx) => createConversation(tx, { userId: a.userId, agentId, title: NUL })),
    ).rejects.toBeInstanceOf(ValidationError);
    await expect(
      withTenant(t.db, a.tenantId, (tx) => createResource(tx, { name: 'nul', type: 'text', content: NUL })),
    ).rejects.toBeInstanceOf(ValidationError);
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from resources where name = 'nul'`.execute(t.db);
    expect(rows[0]!.n).toBe(0);
  });
});

describe('search queries', () => {
  const embedding = Array.from({ length: 1536 }, (_, i) => (i === 0 ? 1 : 0));
  beforeAll(async () => {
    await withTenant(t.db, a.tenantId, (tx) =>
      addChunks(tx, { chunks: Object.values(HOSTILE).map((content) => ({ content, embedding })) }),
    );
  });

  it.each(Object.entries(HOSTILE))('hybridSearch query %s runs as text, finds its chunk, harms nothing', async (_, query) => {
    const hits = await withTenant(t.db, a.tenantId, (tx) => hybridSearch(tx, { query, embedding, k: 20 }));
    expect(hits.length).toBeGreaterThan(0);
    for (const hit of hits) expect(Object.values(HOSTILE)).toContain(hit.content);
  });

  it('a NUL or 1 MB query is refused with a ValidationError', async () => {
    await expect(withTenant(t.db, a.tenantId, (tx) => hybridSearch(tx, { query: NUL, embedding }))).rejects.toMatchObject({ field: 'query' });
    await expect(withTenant(t.db, a.tenantId, (tx) => hybridSearch(tx, { query: ONE_MB, embedding }))).rejects.toMatchObject({ field: 'query' });
  });

  it('chunk content comes back byte-for-byte', async () => {
    const hits = await withTenant(t.db, a.tenantId, (tx) => similaritySearch(tx, { embedding, k: 50 }));
    expect(new Set(hits.map((h) => h.content))).toEqual(new Set(Object.values(HOSTILE)));
  });
});

describe('embeddings', () => {
  const unit = (i: number): number[] => Array.from({ length: 1536 }, (_, d) => (d === i % 1536 ? 1 : 0));

  it('10,000 chunks with one bad embedding at the end are refused whole, before any SQL', async () => {
    const chunks = Array.from({ length: 10_000 }, (_, i) => ({ content: `bulk ${i}`, embedding: unit(i) }));
    chunks[9_999]!.embedding = [...unit(0).slice(0, 1535), Number.NaN];
    await expect(withTenant(t.db, b.tenantId, (tx) => addChunks(tx, { chunks }))).rejects.toMatchObject({ field: 'chunks[9999].embedding' });
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from vectors where tenant_id = ${b.tenantId}`.execute(t.db);
    expect(rows[0]!.n).toBe(0);
  });

  // Inserting 10,000 vectors through the HNSW index takes minutes in PGlite (WebAssembly, one
  // core): the accepted case runs on the server.
  it.runIf(onServer)('10,000 chunks in one call are accepted whole', async () => {
    const chunks = Array.from({ length: 10_000 }, (_, i) => ({ content: `bulk ${i}`, embedding: unit(i) }));
    expect(await withTenant(t.db, b.tenantId, (tx) => addChunks(tx, { chunks }))).toEqual({ inserted: 10_000 });
  }, 300_000);

  it.each([
    ['strings', Array.from({ length: 1536 }, () => '0.5')],
    ['Infinity', [Number.POSITIVE_INFINITY, ...Array.from({ length: 1535 }, () => 0)]],
    ['too short', [1, 2, 3]],
    ['too long', Array.from({ length: 1537 }, () => 0)],
    ['not an array', '[1,2,3]'],
  ])('an embedding of %s is refused with a ValidationError', async (_, embedding) => {
    await expect(
      withTenant(t.db, b.tenantId, (tx) => addChunks(tx, { chunks: [{ content: 'x', embedding: embedding as never }] })),
    ).rejects.toMatchObject({ name: 'ValidationError', field: 'chunks[0].embedding' });
  });
});
