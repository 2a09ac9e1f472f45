/**
 * Changing and re-indexing resources: updateResource, deleteResource (its chunks go too),
 * replaceResourceChunks (old or new for a concurrent search, never a mix or nothing: a race on the
 * server), deleteChunks; and the searches' filters (resource, conversation, tool, metadata
 * containment), which still return k rows when the filter matches 1% of the chunks, also when
 * pgvector's iterative index scan gives up early. As the cms's role, across the tenant wall.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError, ValidationError } from '../../src/db/errors.ts';
import type { TenantTx } from '../../src/db/tenant-tx.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { toVectorSql } from '../../src/db/vector.ts';
import { createConversation } from '../../src/queries/conversations.ts';
import { createResource, deleteResource, getResource, updateResource } from '../../src/queries/resources.ts';
import { addChunks, deleteChunks, hybridSearch, replaceResourceChunks, similaritySearch, type NewChunk } from '../../src/queries/vectors.ts';
import { clusteredPoints, prng } from '../support/clustered-vectors.ts';
import { insertChatWorld, type ChatWorld } from '../support/conversation-fixtures.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let w: ChatWorld;

beforeAll(async () => {
  t = await openTestDb({ poolMax: 4 });
  w = await insertChatWorld(t.db);
});
afterAll(() => t?.close());

const asA = <T>(fn: (tx: TenantTx) => Promise<T>) => withTenant(t.db, w.a.tenantId, fn, { role: 'app_cms' });
const asB = <T>(fn: (tx: TenantTx) => Promise<T>) => withTenant(t.db, w.b.tenantId, fn, { role: 'app_cms' });

function axis(i: number, tilt = 0): number[] {
  const v = new Array<number>(1536).fill(0);
  v[i] = 1;
  v[(i + 1) % 1536] = tilt;
  return v;
}

const newResource = (name = 'doc.txt') => asA((tx) => createResource(tx, { name, type: 'text', content: 'text', metadata: { v: 1 } }));
async function chunkContents(where: { resourceId?: string; conversationId?: string }): Promise<string[]> {
  let q = t.db.selectFrom('vectors').select('content').orderBy('content');
  if (where.resourceId !== undefined) q = q.where('resourceId', '=', where.resourceId);
  if (where.conversationId !== undefined) q = q.where('conversationId', '=', where.conversationId);
  return (await q.execute()).map((r) => r.content);
}

describe('updateResource', () => {
  it('changes the given fields only, refuses bad values before any SQL, and a foreign resource as missing', async () => {
    const r = await newResource();
    const updated = await asA((tx) => updateResource(tx, { resourceId: r.id, name: 'doc-v2.txt', metadata: { v: 2, lang: 'en' }, s3Uri: 's3://b/doc' }));
    expect(updated).toMatchObject({ id: r.id, name: 'doc-v2.txt', type: 'text', content: 'text', s3Uri: 's3://b/doc', metadata: { v: 2, lang: 'en' } });
    expect(updated.updatedAt.getTime()).toBeGreaterThanOrEqual(r.updatedAt.getTime());
    const cleared = await asA((tx) => updateResource(tx, { resourceId: r.id, content: null, s3Uri: null }));
    expect(cleared).toMatchObject({ content: null, s3Uri: null, name: 'doc-v2.txt' });
    await expect(asA((tx) => updateResource(tx, { resourceId: r.id }))).rejects.toBeInstanceOf(ValidationError);
    await expect(asA((tx) => updateResource(tx, { resourceId: r.id, name: '  ' }))).rejects.toMatchObject({ field: 'name' });
    await expect(asA((tx) => updateResource(tx, { resourceId: r.id, s3Uri: 'http://x' }))).rejects.toMatchObject({ field: 's3Uri' });
    await expect(asA((tx) => updateResource(tx, { resourceId: r.id, metadata: [] as never }))).rejects.toMatchObject({ field: 'metadata' });
    await expect(asA((tx) => updateResource(tx, { resourceId: r.id, content: 'x'.repeat(11), maxContentBytes: 10 }))).rejects.toMatchObject({ field: 'content' });
    await expect(asB((tx) => updateResource(tx, { resourceId: r.id, name: 'stolen' }))).rejects.toEqual(new NotFoundError('resource', r.id));
    expect((await asA((tx) => getResource(tx, { resourceId: r.id }))).name).toBe('doc-v2.txt');
  });
});

describe('deleteResource and deleteChunks', () => {
  it('deleteResource removes the resource and its chunks, only in its own tenant', async () => {
    const r = await newResource();
    await asA((tx) => addChunks(tx, { resourceId: r.id, chunks: [{ content: 'one', embedding: axis(1) }, { content: 'two', embedding: axis(2) }] }));
    expect(await asB((tx) => deleteResource(tx, { resourceId: r.id }))).toBe(false);
    expect(await chunkContents({ resourceId: r.id })).toEqual(['one', 'two']);
    expect(await asA((tx) => deleteResource(tx, { resourceId: r.id }))).toBe(true);
    expect(await chunkContents({ resourceId: r.id })).toEqual([]);
    expect(await asA((tx) => deleteResource(tx, { resourceId: r.id }))).toBe(false);
  });

  it('deleteChunks by resource, by conversation, or both; nothing of another tenant', async () => {
    const r = await newResource();
    const c = await asA((tx) => createConversation(tx, { userId: w.a.userId, agentId: w.a.agentId }));
    await asA((tx) => addChunks(tx, { resourceId: r.id, chunks: [{ content: 'r1', embedding: axis(1) }] }));
    await asA((tx) => addChunks(tx, { resourceId: r.id, conversationId: c.id, chunks: [{ content: 'rc1', embedding: axis(1) }] }));
    await asA((tx) => addChunks(tx, { conversationId: c.id, chunks: [{ content: 'c1', embedding: axis(1) }, { content: 'c2', embedding: axis(2) }] }));
    await expect(asA((tx) => deleteChunks(tx, {}))).rejects.toBeInstanceOf(ValidationError);
    await expect(asA((tx) => deleteChunks(tx, { resourceId: 'x' }))).rejects.toMatchObject({ field: 'resourceId' });
    expect(await asB((tx) => deleteChunks(tx, { conversationId: c.id }))).toEqual({ deleted: 0 });
    expect(await asA((tx) => deleteChunks(tx, { resourceId: r.id, conversationId: c.id }))).toEqual({ deleted: 1 });
    expect(await asA((tx) => deleteChunks(tx, { conversationId: c.id }))).toEqual({ deleted: 2 });
    expect(await chunkContents({ resourceId: r.id })).toEqual(['r1']);
    expect(await asA((tx) => deleteChunks(tx, { resourceId: r.id }))).toEqual({ deleted: 1 });
  });
});

describe('replaceResourceChunks', () => {
  const generation = (g: number, n = 5): NewChunk[] =>
    Array.from({ length: n }, (_, i) => ({ content: `gen ${g} chunk ${i}`, embedding: axis(10 + i, 0.1 * (g % 7)), metadata: { gen: g } }));

  it('replaces the old chunks by the new ones', async () => {
    const r = await newResource();
    await asA((tx) => addChunks(tx, { resourceId: r.id, chunks: generation(0, 3) }));
    expect(await asA((tx) => replaceResourceChunks(tx, { resourceId: r.id, chunks: generation(1, 2) }))).toEqual({ deleted: 3, inserted: 2 });
    expect(await chunkContents({ resourceId: r.id })).toEqual(['gen 1 chunk 0', 'gen 1 chunk 1']);
    const hits = await asA((tx) => similaritySearch(tx, { embedding: axis(10), resourceId: r.id, k: 5 }));
    expect(hits.map((h) => h.metadata)).toEqual([{ gen: 1 }, { gen: 1 }]);
  });

  it('keeps the old chunks when the new ones are refused, and refuses a foreign resource as missing', async () => {
    const r = await newResource();
    await asA((tx) => addChunks(tx, { resourceId: r.id, chunks: generation(0, 2) }));
    const bad = [...generation(1, 1), { content: 'bad', embedding: [1, 2] }];
    await expect(asA((tx) => replaceResourceChunks(tx, { resourceId: r.id, chunks: bad }))).rejects.toMatchObject({ field: 'chunks[1].embedding' });
    await expect(asB((tx) => replaceResourceChunks(tx, { resourceId: r.id, chunks: generation(2, 1) }))).rejects.toEqual(new NotFoundError('resource', r.id));
    // In the caller's transaction, after a failure the caller catches: the old chunks are still there.
    const kept = await asA(async (tx) => {
      const error = await replaceResourceChunks(tx, { resourceId: randomUUID(), chunks: generation(3, 1) }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(NotFoundError);
      return similaritySearch(tx, { embedding: axis(10), resourceId: r.id, k: 5 });
    });
    expect(kept.map((h) => h.content).sort()).toEqual(['gen 0 chunk 0', 'gen 0 chunk 1']);
  });

  it.runIf(onServer)('a search running meanwhile sees the old chunks or the new ones, never a mix or nothing (race, server)', async () => {
    const r = await newResource('raced.txt');
    await asA((tx) => addChunks(tx, { resourceId: r.id, chunks: generation(0) }));
    const generations = 30;
    let done = false;
    const replacer = (async () => {
      try {
        for (let g = 1; g <= generations; g++) await asA((tx) => replaceResourceChunks(tx, { resourceId: r.id, chunks: generation(g) }));
      } finally {
        done = true;
      }
    })();
    const seen: string[] = [];
    let searches = 0;
    const searcher = async (kind: 'similarity' | 'hybrid') => {
      while (!done || searches < 2) {
        const rows =
          kind === 'similarity'
            ? await asA((tx) => similaritySearch(tx, { embedding: axis(12), resourceId: r.id, k: 10 }))
            : await asA((tx) => hybridSearch(tx, { query: 'chunk', embedding: axis(12), resourceId: r.id, k: 10 }));
        const gens = new Set(rows.map((row) => (row.metadata as { gen: number }).gen));
        seen.push(`${kind}: ${rows.length} rows of generations ${[...gens].join(',')}`);
        expect(rows.length, seen.at(-1)).toBe(5);
        expect(gens.size, seen.at(-1)).toBe(1);
        searches++;
      }
    };
    await Promise.all([replacer, searcher('similarity'), searcher('hybrid')]);
    expect(searches).toBeGreaterThanOrEqual(2);
    expect(await chunkContents({ resourceId: r.id })).toEqual(generation(generations).map((c) => c.content));
  });

  it.runIf(onServer)('two re-indexes of one resource at once leave one set of chunks (the resource row is locked)', async () => {
    const r = await newResource('twice.txt');
    await asA((tx) => addChunks(tx, { resourceId: r.id, chunks: generation(0) }));
    await Promise.all([
      asA((tx) => replaceResourceChunks(tx, { resourceId: r.id, chunks: generation(1) })),
      asA((tx) => replaceResourceChunks(tx, { resourceId: r.id, chunks: generation(2) })),
    ]);
    const rows = await t.db.selectFrom('vectors').select('metadata').where('resourceId', '=', r.id).execute();
    expect(rows).toHaveLength(5);
    expect(new Set(rows.map((row) => (row.metadata as { gen: number }).gen)).size).toBe(1);
  });
});

describe('search filters', () => {
  it('store chunk metadata, refuse bad metadata, and filter by containment on both searches', async () => {
    const r = await newResource();
    await expect(asA((tx) => addChunks(tx, { resourceId: r.id, chunks: [{ content: 'x', embedding: axis(1), metadata: 'page 1' as never }] }))).rejects.toMatchObject({ field: 'chunks[0].metadata' });
    await asA((tx) =>
      addChunks(tx, {
        resourceId: r.id,
        chunks: [
          { content: 'alpha intro', embedding: axis(20), metadata: { section: 'intro', page: 1 } },
          { content: 'alpha body', embedding: axis(20, 0.2), metadata: { section: 'body', page: 2, tags: ['x', 'y'] } },
          { content: 'alpha end', embedding: axis(20, 0.4) },
        ],
      }),
    );
    const byMeta = (metadata: Record<string, unknown>) => asA((tx) => similaritySearch(tx, { embedding: axis(20), resourceId: r.id, metadata, k: 10 }));
    expect((await byMeta({ section: 'body' })).map((h) => h.content)).toEqual(['alpha body']);
    expect((await byMeta({ tags: ['y'] })).map((h) => h.content)).toEqual(['alpha body']);
    expect((await byMeta({})).map((h) => h.content)).toEqual(['alpha intro', 'alpha body', 'alpha end']);
    expect((await byMeta({ page: 3 })).map((h) => h.content)).toEqual([]);
    const hybrid = await asA((tx) => hybridSearch(tx, { query: 'alpha', embedding: axis(20), resourceId: r.id, metadata: { page: 1 }, k: 10 }));
    expect(hybrid.map((h) => [h.content, h.metadata, h.vectorRank, h.textRank])).toEqual([['alpha intro', { section: 'intro', page: 1 }, 1, 1]]);
    await expect(asA((tx) => similaritySearch(tx, { embedding: axis(20), metadata: 'x' as never }))).rejects.toMatchObject({ field: 'metadata' });
    // Tenant B filtering on A's resource finds nothing.
    expect(await asB((tx) => similaritySearch(tx, { embedding: axis(20), resourceId: r.id, k: 10 }))).toEqual([]);
  });

  it('return k rows when the filter matches 1% of the chunks, the exact nearest when the index scan gives up early', async () => {
    const points = clusteredPoints({ seed: 11, clusters: 10 });
    const random = prng(5);
    const tool = await t.db.insertInto('tools').values({ name: `rare-${randomUUID()}`, type: 'builtin' }).returning('id').executeTakeFirstOrThrow();
    const r = await newResource('big.txt');
    const rareResource = await newResource('rare.txt');
    const chunks: NewChunk[] = Array.from({ length: 2000 }, (_, i) => ({
      content: `chunk ${i}`,
      embedding: points.next(),
      metadata: { rare: i % 100 === 0, shard: i % 7 },
    }));
    for (let i = 0; i < chunks.length; i += 500) await asA((tx) => addChunks(tx, { resourceId: r.id, chunks: chunks.slice(i, i + 500) }));
    // 1% by resource, and 1% by tool: the same 20 points again under other sources.
    const rare = chunks.filter((_, i) => i % 100 === 0).map((c) => ({ ...c, content: `${c.content} again`, metadata: { copy: true } }));
    await asA((tx) => addChunks(tx, { resourceId: rareResource.id, chunks: rare }));
    await asA((tx) => addChunks(tx, { toolId: tool.id, chunks: rare }));
    await sql`analyze vectors`.execute(t.db);
    const k = 10;
    for (let q = 0; q < 2; q++) {
      const query = points.point(Math.floor(random() * 10));
      const exact = async (condition: ReturnType<typeof sql>) =>
        (
          await sql<{ id: string }>`select id from vectors where tenant_id = ${w.a.tenantId} and ${condition}
            order by (embedding <=> ${toVectorSql(query)}::vector) + 0, id limit ${k}`.execute(t.db)
        ).rows.map((row) => row.id);
      const cases = [
        { filter: { metadata: { rare: true } }, condition: sql`metadata @> '{"rare": true}'` },
        { filter: { resourceId: rareResource.id }, condition: sql`resource_id = ${rareResource.id}` },
        { filter: { toolId: tool.id }, condition: sql`tool_id = ${tool.id}` },
      ];
      for (const { filter, condition } of cases) {
        const expected = await exact(condition);
        expect(expected).toHaveLength(k);
        for (const maxScanTuples of [undefined, '30']) {
          const hits = await asA(async (tx) => {
            // The planner may answer a selective filter by its own index and a sort (exact); with
            // sorts disabled it takes the HNSW index, whose scan then ends short of k rows.
            if (maxScanTuples !== undefined) await sql`select set_config('hnsw.max_scan_tuples', ${maxScanTuples}, true), set_config('enable_sort', 'off', true)`.execute(tx);
            return similaritySearch(tx, { embedding: query, k, ...filter });
          });
          const what = JSON.stringify({ filter, maxScanTuples });
          expect(hits, what).toHaveLength(k);
          const found = hits.filter((h) => expected.includes(h.id)).length;
          if (maxScanTuples === undefined) {
            // The HNSW index, iterating past the rows the filter drops: approximate, k rows.
            expect(found / k, what).toBeGreaterThanOrEqual(0.8);
          } else {
            // The scan stops after 30 tuples, short of k matching rows: the exact fallback answers.
            expect(hits.map((h) => h.id), what).toEqual(expected);
          }
          const hybrid = await asA(async (tx) => {
            if (maxScanTuples !== undefined) await sql`select set_config('hnsw.max_scan_tuples', ${maxScanTuples}, true), set_config('enable_sort', 'off', true)`.execute(tx);
            return hybridSearch(tx, { query: 'chunk', embedding: query, k, ...filter });
          });
          expect(hybrid, JSON.stringify({ filter, maxScanTuples })).toHaveLength(k);
        }
      }
    }
  });
});
