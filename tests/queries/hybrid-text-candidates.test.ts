/**
 * hybridSearch's full-text leg with and without a candidate bound (`textCandidates`, migration
 * 0022): unbounded, it ranks every match (exact fusion); bounded, it ranks the first
 * `textCandidates` matches of the tenant in the table's physical order, so a bound at least the
 * number of matches gives the exact answer, and another tenant's matches never take a
 * candidate's place.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/db/errors.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { MAX_TEXT_CANDIDATES } from '../../src/queries/limits.ts';
import { addChunks, hybridSearch } from '../../src/queries/vectors.ts';
import { insertCatalog, insertTenant } from '../support/fixtures.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let mine: { tenantId: string; userId: string };
let other: { tenantId: string; userId: string };

/** A unit vector along axis i. */
function axis(i: number): number[] {
  const v = new Array<number>(1536).fill(0);
  v[i % 1536] = 1;
  return v;
}

/** Chunk i mentions "needle" i + 1 times among other words: ts_rank grows with i. */
function needles(count: number, tag: string) {
  return Array.from({ length: count }, (_, i) => ({
    content: `${tag} ${i} ${Array.from({ length: i + 1 }, () => 'needle hay').join(' ')} straw`,
    embedding: axis(100 + i),
  }));
}

type TextRow = { id: string; rank: string | number };

/** app.search_text's rows, as hybridSearch calls it (the tenant's own transaction and role). */
function searchText(tenantId: string, query: string, maxRows: number, maxCandidates: number | null): Promise<TextRow[]> {
  return withTenant(t.db, tenantId, async (tx) => {
    const { rows } = await sql<TextRow>`
      select id, rank from app.search_text(websearch_to_tsquery('english', ${query}), ${maxRows}, null, null, null, null, ${maxCandidates}::integer)`.execute(tx);
    return rows.map((r) => ({ id: r.id, rank: Number(r.rank) }));
  });
}

beforeAll(async () => {
  t = await openTestDb();
  const { roleId } = await insertCatalog(t.db);
  other = await insertTenant(t.db, roleId, 'text-other');
  mine = await insertTenant(t.db, roleId, 'text-mine');
  // The other tenant's 100 matches first, then my 60: the other's rows come first in the table.
  await withTenant(t.db, other.tenantId, (tx) => addChunks(tx, { chunks: needles(100, 'other') }));
  await withTenant(t.db, mine.tenantId, (tx) => addChunks(tx, { chunks: needles(60, 'mine') }));
});
afterAll(() => t?.close());

describe('app.search_text with max_candidates', () => {
  it('ranks every match when unbounded, and gives the same rows with a bound of at least the matches', async () => {
    const exact = await searchText(mine.tenantId, 'needle', 40, null);
    expect(exact).toHaveLength(40);
    expect(exact.map((r) => r.rank)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    // The most needles first: the exact leg is my chunks 59 down to 20.
    const contents = await withTenant(t.db, mine.tenantId, (tx) =>
      tx.selectFrom('vectors').select(['id', 'content']).where('id', 'in', exact.map((r) => r.id)).execute(),
    );
    const byId = new Map(contents.map((c) => [c.id, c.content]));
    expect(exact.map((r) => Number(byId.get(r.id)!.split(' ')[1]))).toEqual(Array.from({ length: 40 }, (_, i) => 59 - i));
    expect(await searchText(mine.tenantId, 'needle', 40, 60)).toEqual(exact);
    expect(await searchText(mine.tenantId, 'needle', 40, 1000)).toEqual(exact);
  });

  it("ranks the first max_candidates of the tenant's matches in the table's order, and never another tenant's", async () => {
    const bounded = await searchText(mine.tenantId, 'needle', 40, 45);
    // The expected answer: my first 45 matches in physical order, ranked by ts_rank (then id).
    const expected = await withTenant(t.db, mine.tenantId, async (tx) => {
      const { rows } = await sql<{ id: string }>`
        with first as (
          select id, ts_rank(content_tsv, websearch_to_tsquery('english', 'needle')) as r
          from vectors where content_tsv @@ websearch_to_tsquery('english', 'needle')
          order by ctid limit 45
        )
        select id from first order by r desc, id limit 40`.execute(tx);
      return rows.map((r) => r.id);
    });
    expect(bounded.map((r) => r.id)).toEqual(expected);
    expect(bounded.map((r) => r.rank)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    // The other tenant's 100 earlier matches took no candidate's place, and none is returned.
    const foreign = await withTenant(t.db, other.tenantId, (tx) =>
      tx.selectFrom('vectors').select('id').where('id', 'in', bounded.map((r) => r.id)).execute(),
    );
    expect(foreign).toHaveLength(0);
    // Fewer candidates than the exact leg needs: the bound changed the answer.
    expect(bounded).not.toEqual(await searchText(mine.tenantId, 'needle', 40, null));
  });

  it('is what the tenant sees: no tenant context, no rows', async () => {
    const { rows } = await t.db.transaction().execute((tx) =>
      sql<TextRow>`select id from app.search_text(websearch_to_tsquery('english', 'needle'), 40, null, null, null, null, 45)`.execute(tx),
    );
    expect(rows).toHaveLength(0);
  });
});

describe('hybridSearch textCandidates', () => {
  it('gives the exact fusion when the bound covers every match', async () => {
    const q = { query: 'needle', embedding: axis(159), k: 10 }; // my chunk 59: the most needles, and the nearest
    const exact = await withTenant(t.db, mine.tenantId, (tx) => hybridSearch(tx, q));
    const covered = await withTenant(t.db, mine.tenantId, (tx) => hybridSearch(tx, { ...q, textCandidates: 60 }));
    expect(covered).toEqual(exact);
    expect(exact[0]).toMatchObject({ vectorRank: 1, textRank: 1 });
    expect(exact[0]!.content).toMatch(/^mine 59 /);
  });

  it('ranks text only among the candidates when the bound is smaller', async () => {
    const q = { query: 'needle', embedding: axis(1000), k: 10 };
    const bounded = await withTenant(t.db, mine.tenantId, (tx) => hybridSearch(tx, { ...q, textCandidates: 40 }));
    const candidates = await withTenant(t.db, mine.tenantId, async (tx) => {
      const { rows } = await sql<{ id: string }>`
        select id from vectors where content_tsv @@ websearch_to_tsquery('english', 'needle') order by ctid limit 40`.execute(tx);
      return new Set(rows.map((r) => r.id));
    });
    const textHits = bounded.filter((h) => h.textRank !== null);
    expect(textHits.length).toBeGreaterThan(0);
    for (const hit of textHits) expect(candidates.has(hit.id)).toBe(true);
    expect(bounded.every((h) => h.content.startsWith('mine '))).toBe(true);
  });

  it('refuses a bound below the leg size, a non-integer, or one above MAX_TEXT_CANDIDATES', async () => {
    const q = { query: 'needle', embedding: axis(1), k: 10 };
    for (const textCandidates of [39, 40.5, -1, MAX_TEXT_CANDIDATES + 1, Number.NaN]) {
      await expect(withTenant(t.db, mine.tenantId, (tx) => hybridSearch(tx, { ...q, textCandidates }))).rejects.toThrow(ValidationError);
    }
    // k = 20: the leg is 80 rows, so 79 is too few.
    await expect(withTenant(t.db, mine.tenantId, (tx) => hybridSearch(tx, { ...q, k: 20, textCandidates: 79 }))).rejects.toThrow(/textCandidates/);
    await expect(withTenant(t.db, mine.tenantId, (tx) => hybridSearch(tx, { ...q, k: 20, textCandidates: 80 }))).resolves.toHaveLength(20);
  });
});
