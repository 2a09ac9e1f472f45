import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/db/errors.ts';
import type { TenantTx } from '../../src/db/tenant-tx.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { toVectorSql } from '../../src/db/vector.ts';
import { addChunks, hybridSearch, similaritySearch } from '../../src/queries/vectors.ts';
import { insertCatalog, insertTenant } from '../support/fixtures.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let a: { tenantId: string; userId: string };

/** A unit vector along axis i, tilted towards axis i + 1. */
function axis(i: number, tilt = 0): number[] {
  const v = new Array<number>(1536).fill(0);
  v[i] = 1;
  v[(i + 1) % 1536] = tilt;
  return v;
}
const filled = (x: number) => new Array<number>(1536).fill(x);

/** Vectors whose cosine distance pgvector cannot compute (NaN), or computes as 0 for every query. */
const degenerate = {
  zero: filled(0),
  // Each value is a normal 4-byte float, but its square is below the smallest one: pgvector's
  // float4 sum of squares is 0.
  underflowing: filled(1e-30),
  // Rounds to a zero float4 vector.
  vanishing: filled(1e-50),
  // Squares overflow the float4 sum (1536 × 1e38).
  overflowing: filled(1e19),
};

async function countVectors(): Promise<number> {
  const row = await t.db.selectFrom('vectors').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
  return Number(row.n);
}

beforeAll(async () => {
  t = await openTestDb();
  const { roleId } = await insertCatalog(t.db);
  a = await insertTenant(t.db, roleId, 'norms-a');
  await withTenant(t.db, a.tenantId, (tx) =>
    addChunks(tx, { chunks: [0, 0.5, 1, 2].map((tilt, i) => ({ content: `real chunk ${i} about whales`, embedding: axis(0, tilt) })) }),
  );
});
afterAll(() => t?.close());

describe('zero and non-finite norms are refused', () => {
  it('addChunks refuses a zero, underflowing, vanishing or overflowing embedding, naming the chunk, and writes nothing', async () => {
    const before = await countVectors();
    for (const [kind, embedding] of Object.entries(degenerate)) {
      const call = withTenant(t.db, a.tenantId, (tx) =>
        addChunks(tx, { chunks: [{ content: 'fine', embedding: axis(3) }, { content: kind, embedding }] }),
      );
      await expect(call, kind).rejects.toBeInstanceOf(ValidationError);
      await expect(call, kind).rejects.toMatchObject({ field: 'chunks[1].embedding', message: expect.stringMatching(/norm/) });
    }
    expect(await countVectors()).toBe(before);
  });

  it('similaritySearch and hybridSearch refuse such a query embedding', async () => {
    for (const [kind, embedding] of Object.entries(degenerate)) {
      await expect(withTenant(t.db, a.tenantId, (tx) => similaritySearch(tx, { embedding })), kind).rejects.toMatchObject({
        name: 'ValidationError',
        field: 'embedding',
      });
      await expect(withTenant(t.db, a.tenantId, (tx) => hybridSearch(tx, { query: 'whales', embedding })), kind).rejects.toMatchObject({
        name: 'ValidationError',
        field: 'embedding',
      });
    }
  });

  it('accepts tiny and large vectors whose float4 norm is neither 0 nor infinite, and finds them', async () => {
    const tiny = axis(700).map((x) => x * 1e-20); // squares 1e-40: a float4 subnormal, not 0
    const large = axis(701).map((x) => x * 1e18);
    await withTenant(t.db, a.tenantId, (tx) => addChunks(tx, { chunks: [{ content: 'tiny', embedding: tiny }, { content: 'large', embedding: large }] }));
    for (const [content, query] of [['tiny', axis(700)], ['large', axis(701)]] as const) {
      const [hit] = await withTenant(t.db, a.tenantId, (tx) => similaritySearch(tx, { embedding: query, k: 1 }));
      expect(hit).toMatchObject({ content });
      expect(hit!.similarity).toBeCloseTo(1, 3);
    }
  });
});

describe('searches never return a NaN similarity', () => {
  beforeAll(async () => {
    // Written by the owner with raw SQL, past addChunks' checks.
    for (const [kind, embedding] of Object.entries(degenerate)) {
      if (kind === 'vanishing' || kind === 'overflowing') continue; // the same float4 vectors as zero, and a large one
      await sql`insert into vectors (tenant_id, content, embedding)
                values (${a.tenantId}, ${`degenerate ${kind} about whales`}, ${toVectorSql(embedding)}::vector)`.execute(t.db);
    }
    await sql`insert into vectors (tenant_id, content, embedding)
              values (${a.tenantId}, 'degenerate overflowing about whales', ${toVectorSql(degenerate.overflowing)}::vector)`.execute(t.db);
  });

  /**
   * Runs `fn` in a's tenant on the HNSW index (sequential scans off), or on an exact scan (index
   * scans off), where a NaN distance used to come back for every query.
   */
  async function inTenant<T>(exact: boolean, fn: (tx: TenantTx) => Promise<T>): Promise<T> {
    return withTenant(t.db, a.tenantId, async (tx) => {
      await sql`select set_config(${exact ? 'enable_indexscan' : 'enable_seqscan'}, 'off', true)`.execute(tx);
      return fn(tx);
    });
  }

  for (const exact of [false, true]) {
    const scan = exact ? 'exact scan' : 'index scan';
    it(`similaritySearch leaves out rows with a degenerate norm, with and without a threshold (${scan})`, async () => {
      for (const query of [axis(0), axis(5), filled(1)]) {
        const all = await inTenant(exact, (tx) => similaritySearch(tx, { embedding: query, k: 50 }));
        expect(all.every((hit) => Number.isFinite(hit.similarity))).toBe(true);
        expect(all.filter((hit) => hit.content.startsWith('degenerate'))).toEqual([]);
        const close = await inTenant(exact, (tx) => similaritySearch(tx, { embedding: query, k: 50, threshold: 0.99 }));
        expect(close.every((hit) => hit.similarity >= 0.99)).toBe(true);
        expect(close.filter((hit) => hit.content.startsWith('degenerate'))).toEqual([]);
      }
      // The real chunks are still found, nearest first.
      const [first] = await inTenant(exact, (tx) => similaritySearch(tx, { embedding: axis(0), k: 1 }));
      expect(first).toMatchObject({ content: 'real chunk 0 about whales', similarity: 1 });
    });

    it(`hybridSearch ranks rows with a degenerate norm only by their words (${scan})`, async () => {
      const hits = await inTenant(exact, (tx) => hybridSearch(tx, { query: 'whales', embedding: axis(0), k: 50 }));
      expect(hits.every((hit) => Number.isFinite(hit.score))).toBe(true);
      const degenerateHits = hits.filter((hit) => hit.content.startsWith('degenerate'));
      expect(degenerateHits.length).toBe(3);
      expect(degenerateHits.every((hit) => hit.vectorRank === null && hit.textRank !== null)).toBe(true);
    });
  }

});
