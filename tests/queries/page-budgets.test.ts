import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withTenant } from '../../src/db/tenant.ts';
import type { Page } from '../../src/queries/cursor.ts';
import { DEFAULT_PAGE_BYTES, MAX_COST_SUMMARY_ROWS, MAX_DATE, MAX_PAGE_BYTES, MIN_DATE } from '../../src/queries/limits.ts';
import { appendMessage, getThread, listMessages, type Message } from '../../src/queries/messages.ts';
import { createResource, listResources, type Resource } from '../../src/queries/resources.ts';
import { costSummary } from '../../src/queries/usage.ts';
import { addChunks, hybridSearch, similaritySearch } from '../../src/queries/vectors.ts';
import { insertCatalog, insertTenant } from '../support/fixtures.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let modelId: number;
let roleId: number;

beforeAll(async () => {
  t = await openTestDb();
  ({ roleId, modelId } = await insertCatalog(t.db));
});
afterAll(() => t?.close());

/** Every page of a list, following nextCursor. */
async function walk<T>(page: (cursor: string | null) => Promise<Page<T>>): Promise<T[][]> {
  const pages: T[][] = [];
  let cursor: string | null = null;
  do {
    const next: Page<T> = await page(cursor);
    pages.push(next.items);
    cursor = next.nextCursor;
  } while (cursor !== null);
  return pages;
}

const bytes = (text: string | null) => Buffer.byteLength(text ?? '', 'utf8');

describe('listResources has a byte budget per page', () => {
  let tenantId: string;
  const ids: string[] = [];
  const TEN_MB = 10_000_000;

  beforeAll(async () => {
    ({ tenantId } = await insertTenant(t.db, roleId, 'budget-resources'));
    for (let i = 0; i < 30; i += 1) {
      const content = `resource ${i} `.padEnd(TEN_MB, 'x');
      const resource = await withTenant(t.db, tenantId, (tx) => createResource(tx, { name: `doc ${i}`, type: 'text', content }));
      ids.push(resource.id);
    }
  }, 300_000);

  it('a list of 30 resources of 10 MB each comes back in pages of at most DEFAULT_PAGE_BYTES, each resource once', async () => {
    const pages = await walk((cursor) => withTenant(t.db, tenantId, (tx) => listResources(tx, { limit: 200, cursor })));
    for (const page of pages) {
      expect(page.reduce((sum, r) => sum + bytes(r.content) + bytes(r.name) + bytes(r.type) + 2, 0)).toBeLessThanOrEqual(DEFAULT_PAGE_BYTES);
      expect(page.every((r) => r.content!.length === TEN_MB)).toBe(true);
    }
    // 3 × 10 MB fit 32 MiB, 4 do not.
    expect(pages.map((p) => p.length)).toEqual(new Array(10).fill(3));
    expect(pages.flat().map((r) => r.id).sort()).toEqual([...ids].sort());
  }, 120_000);

  it('maxPageBytes narrows the budget; the page ends before the row that would pass it and nextCursor continues there', async () => {
    const pages = await walk((cursor) => withTenant(t.db, tenantId, (tx) => listResources(tx, { limit: 20, cursor, maxPageBytes: 2 * TEN_MB + 100 })));
    expect(pages.map((p) => p.length)).toEqual(new Array(15).fill(2));
    expect(new Set(pages.flat().map((r) => r.id)).size).toBe(30);
  }, 120_000);

  it('refuses a resource that alone passes the budget, naming it and the bytes it needs', async () => {
    const newest = ids.at(-1)!;
    await expect(withTenant(t.db, tenantId, (tx) => listResources(tx, { maxPageBytes: 1_000_000 }))).rejects.toMatchObject({
      name: 'ValidationError',
      field: 'maxPageBytes',
      message: expect.stringMatching(new RegExp(`resource ${newest} alone holds 100000\\d\\d bytes, more than the budget of 1000000 bytes per call \\(maxPageBytes\\): pass maxPageBytes of at least 100000\\d\\d`)),
    });
    await expect(withTenant(t.db, tenantId, (tx) => listResources(tx, { maxPageBytes: MAX_PAGE_BYTES + 1 }))).rejects.toMatchObject({ field: 'maxPageBytes' });
  });

  it('lists a resource written with a raised limit only with a budget that holds it', async () => {
    const { tenantId: other } = await insertTenant(t.db, roleId, 'budget-big-resource');
    const content = 'b'.repeat(DEFAULT_PAGE_BYTES + 1);
    const big = await withTenant(t.db, other, (tx) => createResource(tx, { name: 'big', type: 'text', content, maxContentBytes: DEFAULT_PAGE_BYTES + 1 }));
    await expect(withTenant(t.db, other, (tx) => listResources(tx, {}))).rejects.toMatchObject({
      field: 'maxPageBytes',
      message: expect.stringContaining(`resource ${big.id} alone holds`),
    });
    const page = await withTenant(t.db, other, (tx) => listResources(tx, { maxPageBytes: DEFAULT_PAGE_BYTES + 100 }));
    expect(page.items.map((r: Resource) => r.content?.length)).toEqual([DEFAULT_PAGE_BYTES + 1]);
  });
});

describe('listMessages and getThread have a byte budget', () => {
  let tenantId: string;
  let conversationId: string;
  const messages: Message[] = [];

  beforeAll(async () => {
    const tenant = await insertTenant(t.db, roleId, 'budget-messages');
    tenantId = tenant.tenantId;
    conversationId = (await t.db.insertInto('conversations').values({ tenantId, userId: tenant.userId }).returning('id').executeTakeFirstOrThrow()).id;
    await withTenant(t.db, tenantId, async (tx) => {
      let parentId: string | null = null;
      for (let i = 0; i < 6; i += 1) {
        const message: Message = await appendMessage(tx, { conversationId, role: 'user', content: { text: `${i}`.padEnd(100_000, 'm') }, parentId });
        messages.push(message);
        parentId = message.id;
      }
    });
  });

  /** Bytes of a message's content as PostgreSQL sends it (jsonb's text, with its spaces). */
  async function sentBytes(ids: string[]): Promise<number> {
    const { rows } = await sql<{ n: number | string }>`select coalesce(sum(octet_length(content::text)), 0) as n from messages where id = any(${ids}::uuid[])`.execute(t.db);
    return Number(rows[0]!.n);
  }

  it('ends each page before the message that would pass maxPageBytes; a walk returns every message once, in order', async () => {
    const pages = await walk((cursor) => withTenant(t.db, tenantId, (tx) => listMessages(tx, { conversationId, cursor, maxPageBytes: 250_000 })));
    expect(pages.map((p) => p.length)).toEqual([2, 2, 2]);
    for (const page of pages) expect(await sentBytes(page.map((m) => m.id))).toBeLessThanOrEqual(250_000);
    expect(pages.flat().map((m) => m.id)).toEqual(messages.map((m) => m.id));
    expect(pages.flat().map((m) => m.content)).toEqual(messages.map((m) => m.content));
  });

  it('refuses a message that alone passes the budget', async () => {
    await expect(withTenant(t.db, tenantId, (tx) => listMessages(tx, { conversationId, maxPageBytes: 50_000 }))).rejects.toMatchObject({
      name: 'ValidationError',
      field: 'maxPageBytes',
      message: expect.stringContaining(`message ${messages[0]!.id} alone holds 1000`),
    });
  });

  it('getThread refuses a thread past maxPageBytes with its size, and returns it within the budget', async () => {
    const leaf = messages.at(-1)!.id;
    const total = await sentBytes(messages.map((m) => m.id));
    await expect(withTenant(t.db, tenantId, (tx) => getThread(tx, { messageId: leaf, maxPageBytes: total - 1 }))).rejects.toMatchObject({
      name: 'ValidationError',
      field: 'maxPageBytes',
      message: expect.stringContaining(`the thread of 6 messages up to ${leaf} holds ${total} bytes`),
    });
    const thread = await withTenant(t.db, tenantId, (tx) => getThread(tx, { messageId: leaf, maxPageBytes: total }));
    expect(thread.map((m) => m.id)).toEqual(messages.map((m) => m.id));
  });
});

describe('searches have a byte budget', () => {
  let tenantId: string;
  beforeAll(async () => {
    ({ tenantId } = await insertTenant(t.db, roleId, 'budget-search'));
    const chunks = Array.from({ length: 5 }, (_, i) => {
      const embedding = new Array<number>(1536).fill(0);
      embedding[0] = 1;
      embedding[1] = i / 10;
      return { content: `whales ${i} `.padEnd(100_000, 'w'), embedding };
    });
    await withTenant(t.db, tenantId, (tx) => addChunks(tx, { chunks }));
  });
  const query = new Array<number>(1536).fill(0).map((_, i) => (i === 0 ? 1 : 0));

  it('similaritySearch refuses results past maxPageBytes, saying how many bytes they hold', async () => {
    await expect(withTenant(t.db, tenantId, (tx) => similaritySearch(tx, { embedding: query, k: 5, maxPageBytes: 300_000 }))).rejects.toMatchObject({
      name: 'ValidationError',
      field: 'maxPageBytes',
      // Content and metadata as JSON (`{}`, 2 bytes) of each chunk.
      message: expect.stringContaining('the 5 chunks found hold 500010 bytes'),
    });
    const hits = await withTenant(t.db, tenantId, (tx) => similaritySearch(tx, { embedding: query, k: 3, maxPageBytes: 300_006 }));
    expect(hits.map((h) => h.content.length)).toEqual([100_000, 100_000, 100_000]);
  });

  it('hybridSearch refuses results past maxPageBytes too', async () => {
    await expect(withTenant(t.db, tenantId, (tx) => hybridSearch(tx, { query: 'whales', embedding: query, k: 5, maxPageBytes: 300_000 }))).rejects.toMatchObject({
      field: 'maxPageBytes',
    });
    const hits = await withTenant(t.db, tenantId, (tx) => hybridSearch(tx, { query: 'whales', embedding: query, k: 3, maxPageBytes: 300_006 }));
    expect(hits).toHaveLength(3);
  });
});

describe('costSummary has a maximum number of rows', () => {
  let tenantId: string;
  beforeAll(async () => {
    const tenant = await insertTenant(t.db, roleId, 'budget-costs');
    tenantId = tenant.tenantId;
    // One call a day for 10,001 days from 2000-01-01 (as the owner).
    await sql`insert into usage (tenant_id, user_id, model_id, type, cost, created_at)
              select ${tenantId}::uuid, ${tenant.userId}::uuid, ${modelId}::integer, 'chat', 0.001,
                     timestamptz '2000-01-01 12:00:00+00' + g * interval '1 day'
              from generate_series(0, 10000) as g`.execute(t.db);
  });
  const from = new Date('2000-01-01T00:00:00Z');
  const to = new Date('2030-01-01T00:00:00Z');

  it('refuses a range and grouping with more than MAX_COST_SUMMARY_ROWS rows, saying how to narrow it', async () => {
    await expect(withTenant(t.db, tenantId, (tx) => costSummary(tx, { from, to, groupBy: 'day' }))).rejects.toMatchObject({
      name: 'ValidationError',
      field: 'maxRows',
      message: expect.stringMatching(new RegExp(`more than ${MAX_COST_SUMMARY_ROWS} rows \\(MAX_COST_SUMMARY_ROWS\\): narrow from\\.\\.to, ask for a longer groupBy \\('week' or 'month'\\)`)),
    });
    const months = await withTenant(t.db, tenantId, (tx) => costSummary(tx, { from, to, groupBy: 'month' }));
    expect(months).toHaveLength(329); // 2000-01 … 2027-05
    expect(months.reduce((n, row) => n + row.calls, 0)).toBe(10_001);
  });

  it('maxRows sets another bound for one call', async () => {
    await expect(withTenant(t.db, tenantId, (tx) => costSummary(tx, { from, to, groupBy: 'month', by: 'model', maxRows: 328 }))).rejects.toMatchObject({
      field: 'maxRows',
      message: expect.stringContaining('leave out by'),
    });
    await expect(withTenant(t.db, tenantId, (tx) => costSummary(tx, { from, to, groupBy: 'day', maxRows: 10_001 }))).resolves.toHaveLength(10_001);
    await expect(withTenant(t.db, tenantId, (tx) => costSummary(tx, { from, to, groupBy: 'day', maxRows: 0 }))).rejects.toMatchObject({ field: 'maxRows' });
  });

  it('refuses dates outside years 1..9999 with a ValidationError, never 22008', async () => {
    const cases: [string, Date, Date][] = [
      ['from', new Date(-8.64e15), to],
      ['from', new Date('0000-06-01T00:00:00Z'), to],
      ['to', from, new Date(8.64e15)],
      ['to', from, new Date('+010000-01-01T00:00:00Z')],
      ['from', new Date(Date.parse(MIN_DATE) - 1), to],
      ['to', from, new Date(Date.parse(MAX_DATE) + 1)],
    ];
    for (const [field, start, end] of cases) {
      await expect(withTenant(t.db, tenantId, (tx) => costSummary(tx, { from: start, to: end, groupBy: 'month' })), `${field} ${end.getTime()}`).rejects.toMatchObject({
        name: 'ValidationError',
        field,
      });
    }
    // The bounds themselves are accepted by both backends.
    const all = await withTenant(t.db, tenantId, (tx) => costSummary(tx, { from: new Date(MIN_DATE), to: new Date(MAX_DATE), groupBy: 'month' }));
    expect(all).toHaveLength(329);
  });
});
