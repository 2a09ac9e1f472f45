import { randomUUID } from 'node:crypto';
import { CompiledQuery, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError, TenantContextError, ValidationError } from '../../src/db/errors.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { toVectorSql } from '../../src/db/vector.ts';
import { addChunks, hybridSearch, similaritySearch } from '../../src/queries/vectors.ts';
import { clusteredPoints } from '../support/clustered-vectors.ts';
import { insertCatalog, insertTenant } from '../support/fixtures.ts';
import { QueryRecorder } from '../support/query-recorder.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let roleId: number;
let a: { tenantId: string; userId: string };
let b: { tenantId: string; userId: string };
const points = clusteredPoints({ seed: 7 });

/** A unit vector along axis i, plus a small tilt towards axis j: similarity to axis i is known. */
function axis(i: number, tilt = 0, j = (i + 1) % 1536): number[] {
  const v = new Array<number>(1536).fill(0);
  v[i] = 1;
  v[j] = tilt;
  return v;
}

beforeAll(async () => {
  t = await openTestDb();
  ({ roleId } = await insertCatalog(t.db));
  a = await insertTenant(t.db, roleId, 'vec-a');
  b = await insertTenant(t.db, roleId, 'vec-b');
});
afterAll(() => t?.close());

async function countVectors(tenantId?: string): Promise<number> {
  let q = t.db.selectFrom('vectors').select((eb) => eb.fn.countAll<number>().as('n'));
  if (tenantId !== undefined) q = q.where('tenantId', '=', tenantId);
  return Number((await q.executeTakeFirstOrThrow()).n);
}

describe('addChunks', () => {
  it('validates every chunk before any SQL, naming the chunk', async () => {
    const good = { content: 'ok', embedding: axis(0) };
    const attempt = (chunks: unknown[]) => withTenant(t.db, a.tenantId, (tx) => addChunks(tx, { chunks: chunks as never }));
    await expect(attempt([good, { content: 'short', embedding: [1, 2, 3] }])).rejects.toThrow(
      new ValidationError('chunks[1].embedding', 'must have 1536 dimensions, got 3'),
    );
    const nan = axis(0);
    nan[17] = Number.NaN;
    await expect(attempt([good, good, { content: 'nan', embedding: nan }])).rejects.toMatchObject({ field: 'chunks[2].embedding', message: expect.stringContaining('[17]') });
    const inf = axis(0);
    inf[3] = Number.POSITIVE_INFINITY;
    await expect(attempt([{ content: 'inf', embedding: inf }])).rejects.toMatchObject({ field: 'chunks[0].embedding' });
    await expect(attempt([{ content: 'str', embedding: axis(0).map(String) }])).rejects.toMatchObject({ field: 'chunks[0].embedding' });
    await expect(attempt([{ content: '', embedding: axis(0) }])).rejects.toMatchObject({ field: 'chunks[0].content' });
    expect(await countVectors()).toBe(0);
  });

  it('inserts nothing for an empty list', async () => {
    expect(await withTenant(t.db, a.tenantId, (tx) => addChunks(tx, { chunks: [] }))).toEqual({ inserted: 0 });
  });

  it('inserts chunks with positions and source, in the current tenant', async () => {
    const resource = await t.db.insertInto('resources').values({ tenantId: a.tenantId, name: 'doc', type: 'text' }).returning('id').executeTakeFirstOrThrow();
    const chunks = [0, 1, 2].map((i) => ({ content: `part ${i}`, embedding: axis(100 + i) }));
    expect(await withTenant(t.db, a.tenantId, (tx) => addChunks(tx, { resourceId: resource.id, chunks }))).toEqual({ inserted: 3 });
    const rows = await t.db.selectFrom('vectors').select(['tenantId', 'resourceId', 'position', 'content', 'embedding']).where('resourceId', '=', resource.id).orderBy('position').execute();
    expect(rows.map((r) => [r.tenantId, r.position, r.content])).toEqual([[a.tenantId, 0, 'part 0'], [a.tenantId, 1, 'part 1'], [a.tenantId, 2, 'part 2']]);
    expect(rows[1]!.embedding).toEqual(axis(101));
  });

  it('stores each value as its nearest 4-byte float, and refuses one too large for a float', async () => {
    // Values from 1e-30 to 1e10 and one of 1.8e19: their squares sum to less than a float4 holds.
    const embedding = Array.from({ length: 1536 }, (_, i) => (i % 2 === 0 ? 1 : -1) * (i + 0.1) / 3 * 10 ** ((i % 41) - 30));
    embedding[5] = 1.8e19;
    embedding[6] = -1e-44; // a float4 subnormal
    const resource = await t.db.insertInto('resources').values({ tenantId: a.tenantId, name: 'floats', type: 'text' }).returning('id').executeTakeFirstOrThrow();
    await withTenant(t.db, a.tenantId, (tx) => addChunks(tx, { resourceId: resource.id, chunks: [{ content: 'floats', embedding }] }));
    const row = await t.db.selectFrom('vectors').select('embedding').where('resourceId', '=', resource.id).executeTakeFirstOrThrow();
    // Read back as pgvector text (the shortest decimal of each float4): compare the float4s.
    expect(row.embedding.map(Math.fround)).toEqual(embedding.map(Math.fround));

    const before = await countVectors();
    const tooLarge = [...embedding];
    tooLarge[7] = 3.5e38;
    await expect(withTenant(t.db, a.tenantId, (tx) => addChunks(tx, { chunks: [{ content: 'x', embedding: tooLarge }] }))).rejects.toThrow(
      'chunks[0].embedding: [7] must fit a 4-byte float (|x| < 3.4e38), got 3.5e+38',
    );
    expect(await countVectors()).toBe(before);
  });

  it("is all-or-nothing across statements, and refuses another tenant's resource as missing", async () => {
    const before = await countVectors();
    const many = Array.from({ length: 1200 }, (_, i) => ({ content: `bulk ${i}`, embedding: axis(i % 1536) }));
    const foreign = await t.db.insertInto('resources').values({ tenantId: b.tenantId, name: 'b doc', type: 'text' }).returning('id').executeTakeFirstOrThrow();
    await expect(withTenant(t.db, a.tenantId, (tx) => addChunks(tx, { resourceId: foreign.id, chunks: many }))).rejects.toThrow(
      new NotFoundError('resource', foreign.id),
    );
    // The caller may catch the error and go on in the same transaction: nothing of the call is left.
    const left = await withTenant(t.db, a.tenantId, async (tx) => {
      const conversation = await tx.insertInto('conversations').values({ tenantId: a.tenantId, userId: a.userId }).returning('id').executeTakeFirstOrThrow();
      const broken = [...many.slice(0, 600), { content: 'x', embedding: axis(1) }];
      await addChunks(tx, { conversationId: conversation.id, chunks: broken.slice(0, 1100) });
      await expect(addChunks(tx, { conversationId: randomUUID(), chunks: many })).rejects.toBeInstanceOf(NotFoundError);
      return Number((await tx.selectFrom('vectors').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);
    });
    expect(left).toBe(before + 601);
    expect(await countVectors()).toBe(before + 601);
  });

  it('needs a tenant context', async () => {
    // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
    await expect(addChunks(t.db, { chunks: [] })).rejects.toBeInstanceOf(TenantContextError);
  });
});

describe('similaritySearch', () => {
  let resourceId: string;
  let conversationId: string;
  beforeAll(async () => {
    await sql`delete from vectors`.execute(t.db);
    resourceId = (await t.db.insertInto('resources').values({ tenantId: a.tenantId, name: 'axes', type: 'text' }).returning('id').executeTakeFirstOrThrow()).id;
    conversationId = (await t.db.insertInto('conversations').values({ tenantId: a.tenantId, userId: a.userId }).returning('id').executeTakeFirstOrThrow()).id;
    const tool = await t.db.insertInto('tools').values({ name: `tool-${randomUUID()}` }).returning('id').executeTakeFirstOrThrow();
    await withTenant(t.db, a.tenantId, async (tx) => {
      // Near axis 0 with known similarities: cos = 1/sqrt(1 + tilt²).
      await addChunks(tx, { resourceId, chunks: [0, 0.25, 0.5, 1, 2].map((tilt, i) => ({ content: `tilt ${tilt}`, embedding: axis(0, tilt), position: i })) });
      await addChunks(tx, { conversationId, chunks: [{ content: 'conversation chunk', embedding: axis(0, 0.1) }] });
      await addChunks(tx, { toolId: tool.id, chunks: [{ content: 'tool chunk', embedding: axis(0, 0.3) }] });
    });
    await withTenant(t.db, b.tenantId, (tx) => addChunks(tx, { chunks: [{ content: 'B exact match', embedding: axis(0) }] }));
    toolId = tool.id;
  });
  let toolId: number;

  it('returns the nearest chunks first with similarity = 1 - cosine distance', async () => {
    const hits = await withTenant(t.db, a.tenantId, (tx) => similaritySearch(tx, { embedding: axis(0), k: 3 }));
    expect(hits.map((h) => h.content)).toEqual(['tilt 0', 'conversation chunk', 'tilt 0.25']);
    expect(hits[0]!.similarity).toBeCloseTo(1, 6);
    expect(hits[2]!.similarity).toBeCloseTo(1 / Math.sqrt(1 + 0.25 ** 2), 6);
    expect(hits[0]).toMatchObject({ resourceId, conversationId: null, toolId: null, position: 0 });
  });

  it('keeps only rows with similarity >= threshold', async () => {
    const hits = await withTenant(t.db, a.tenantId, (tx) => similaritySearch(tx, { embedding: axis(0), k: 10, threshold: 0.9 }));
    // tilt 0 (1.0), conversation (0.995), 0.25 (0.970), tool 0.3 (0.958); tilt 0.5 is 0.894.
    expect(hits.map((h) => h.content)).toEqual(['tilt 0', 'conversation chunk', 'tilt 0.25', 'tool chunk']);
    for (const h of hits) expect(h.similarity).toBeGreaterThanOrEqual(0.9);
  });

  it('narrows by resource, conversation or tool', async () => {
    const search = (filter: object) => withTenant(t.db, a.tenantId, (tx) => similaritySearch(tx, { embedding: axis(0), k: 10, ...filter }));
    expect((await search({ resourceId })).map((h) => h.content)).toEqual(['tilt 0', 'tilt 0.25', 'tilt 0.5', 'tilt 1', 'tilt 2']);
    expect((await search({ conversationId })).map((h) => h.content)).toEqual(['conversation chunk']);
    expect((await search({ toolId })).map((h) => h.content)).toEqual(['tool chunk']);
  });

  it("never shows another tenant's chunks", async () => {
    const hits = await withTenant(t.db, b.tenantId, (tx) => similaritySearch(tx, { embedding: axis(0), k: 10 }));
    expect(hits.map((h) => h.content)).toEqual(['B exact match']);
  });

  it('validates its input', async () => {
    const search = (params: object) => withTenant(t.db, a.tenantId, (tx) => similaritySearch(tx, { embedding: axis(0), ...params } as never));
    await expect(search({ embedding: [1] })).rejects.toMatchObject({ field: 'embedding' });
    await expect(search({ k: 0 })).rejects.toMatchObject({ field: 'k' });
    await expect(search({ threshold: 2 })).rejects.toMatchObject({ field: 'threshold' });
    await expect(search({ resourceId: "'; drop table vectors; --" })).rejects.toMatchObject({ field: 'resourceId' });
  });
});

describe('hybridSearch', () => {
  it('finds a keyword-only match and a vector-only match, and says which leg found each', async () => {
    const tenant = await insertTenant(t.db, roleId, 'hybrid');
    await withTenant(t.db, tenant.tenantId, (tx) =>
      addChunks(tx, {
        chunks: [
          { content: 'The procurement officer reviewed the solicitation.', embedding: axis(10) },
          { content: 'Quarterly budget forecast for cloud spending.', embedding: axis(0) },
          { content: 'A note about gardening and tomatoes.', embedding: axis(20) },
        ],
      }),
    );
    const hits = await withTenant(t.db, tenant.tenantId, (tx) => hybridSearch(tx, { query: 'solicitation', embedding: axis(0), k: 3 }));
    const byContent = new Map(hits.map((h) => [h.content.split(' ')[1], h]));
    // "solicitation" is only in the first chunk, whose embedding is orthogonal to the query.
    expect(byContent.get('procurement')).toMatchObject({ textRank: 1 });
    // The budget chunk matches no keyword but is the nearest vector.
    expect(byContent.get('budget')).toMatchObject({ vectorRank: 1, textRank: null });
    // Both are fused with 1/(60 + rank); the keyword match is found by both legs (it is also in
    // the vector leg's over-fetch), so it ranks first.
    expect(hits[0]!.content).toContain('procurement');
    expect(hits[0]!.score).toBeCloseTo(1 / 61 + 1 / (60 + hits[0]!.vectorRank!), 10);
    const gardening = await withTenant(t.db, tenant.tenantId, (tx) => hybridSearch(tx, { query: 'tomatoes', embedding: axis(500), k: 1 }));
    expect(gardening[0]).toMatchObject({ textRank: 1 });
  });

  it("never shows another tenant's chunks, in either leg", async () => {
    const hits = await withTenant(t.db, a.tenantId, (tx) => hybridSearch(tx, { query: 'B exact match', embedding: axis(0), k: 50 }));
    expect(hits.some((h) => h.content.includes('B exact'))).toBe(false);
    expect(hits.length).toBeGreaterThan(0);
  });
});

describe('search quality on clustered data', () => {
  // 20,000 vectors on a server; PGlite (WebAssembly, one core) gets 4,000 to keep the suite short.
  const total = onServer ? 20_000 : 4_000;
  let big: { tenantId: string; userId: string };
  let small: { tenantId: string; userId: string };
  let queries: number[][];

  beforeAll(async () => {
    big = await insertTenant(t.db, roleId, 'big');
    small = await insertTenant(t.db, roleId, 'small');
    // The small tenant owns 5% of the rows, spread over all clusters.
    const rows = Array.from({ length: total }, (_, i) => ({ owner: i % 20 === 0 ? small : big, embedding: points.next(), i }));
    for (const owner of [big, small]) {
      const mine = rows.filter((r) => r.owner === owner);
      for (let i = 0; i < mine.length; i += 1000) {
        await withTenant(t.db, owner.tenantId, (tx) =>
          addChunks(tx, { chunks: mine.slice(i, i + 1000).map((r) => ({ content: `chunk ${r.i}`, embedding: r.embedding })) }),
        );
      }
    }
    await sql`analyze vectors`.execute(t.db);
    queries = Array.from({ length: 20 }, () => points.next());
  }, 600_000);

  /** Exact top k, as the owner with index scans off (a sequential scan and a sort). */
  async function exact(tenantId: string, embedding: number[], k = 10): Promise<string[]> {
    return t.db.transaction().execute(async (tx) => {
      await sql`set local enable_indexscan = off`.execute(tx);
      const { rows } = await sql<{ id: string }>`
        select id from vectors where tenant_id = ${tenantId}
        order by embedding <=> ${toVectorSql(embedding)}::vector, id limit ${k}`.execute(tx);
      return rows.map((r) => r.id);
    });
  }

  async function recall(tenantId: string): Promise<{ recall: number; minRows: number }> {
    let found = 0;
    let minRows = Infinity;
    for (const q of queries) {
      const truth = new Set(await exact(tenantId, q));
      const hits = await withTenant(t.db, tenantId, (tx) => similaritySearch(tx, { embedding: q, k: 10 }));
      minRows = Math.min(minRows, hits.length);
      found += hits.filter((h) => truth.has(h.id)).length;
    }
    return { recall: found / (10 * queries.length), minRows };
  }

  it('uses the HNSW index for the search, with its filters (NaN distances, degenerate norms) and byte budget', async () => {
    const recorder = new QueryRecorder();
    const plan = await withTenant(t.db.withPlugin(recorder), big.tenantId, async (tx) => {
      await similaritySearch(tx, { embedding: queries[0]!, k: 10 });
      // The search statement as sent (after the plugins), explained in the settings it ran with.
      const search = recorder.queries.at(-1)!;
      const compiled = t.db.getExecutor().compileQuery(search.node, search.queryId);
      const { rows } = await tx.executeQuery<{ 'QUERY PLAN': string }>(CompiledQuery.raw(`explain ${compiled.sql}`, [...compiled.parameters]));
      return rows.map((r) => r['QUERY PLAN']).join('\n');
    });
    expect(plan).toContain('vectors_embedding_hnsw_idx');
    expect(plan).toContain("<> 'NaN'::double precision");
  });

  it('searches without JIT or parallel workers: the exact fallback in the plan would get both, run or not', async () => {
    const recorder = new QueryRecorder();
    const { plan, settings } = await withTenant(t.db.withPlugin(recorder), big.tenantId, async (tx) => {
      await hybridSearch(tx, { query: 'anything', embedding: queries[0]!, k: 10 });
      const search = recorder.queries.at(-1)!;
      const compiled = t.db.getExecutor().compileQuery(search.node, search.queryId);
      const { rows } = await tx.executeQuery<{ 'QUERY PLAN': string }>(CompiledQuery.raw(`explain ${compiled.sql}`, [...compiled.parameters]));
      const current = await sql<{ jit: string; workers: string }>`select current_setting('jit') as jit, current_setting('max_parallel_workers_per_gather') as workers`.execute(tx);
      return { plan: rows.map((r) => r['QUERY PLAN']).join('\n'), settings: current.rows[0] };
    });
    expect(settings).toEqual({ jit: 'off', workers: '0' });
    expect(plan).not.toMatch(/Gather/);
  });

  it('has recall@10 >= 0.95 against exact search at the default settings', async () => {
    const { recall: r, minRows } = await recall(big.tenantId);
    console.info(`similaritySearch, ${total} vectors, big tenant: recall@10 = ${r.toFixed(3)}, fewest rows returned = ${minRows}`);
    expect(minRows).toBe(10);
    expect(r).toBeGreaterThanOrEqual(0.95);
  });

  it('returns k rows with recall@10 >= 0.9 for a tenant owning 5% of the rows', async () => {
    const { recall: r, minRows } = await recall(small.tenantId);
    console.info(`similaritySearch, ${total} vectors, 5% tenant: recall@10 = ${r.toFixed(3)}, fewest rows returned = ${minRows}`);
    expect(minRows).toBe(10);
    expect(r).toBeGreaterThanOrEqual(0.9);
  });
});
