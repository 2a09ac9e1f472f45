/**
 * The searches `--halfvec` compares: similaritySearch's statement (src/queries/vectors.ts:
 * nearestChunks and the select around it, k = 10, the tenant filter, the NaN guards, the exact
 * fallback CTE, the same returned columns) sent by the bench as the owner, once against
 * `vectors` (`embedding <=> $2::vector`) and once against vectors_half (`embedding <=>
 * $2::halfvec(1536)`), on one connection with the session settings similaritySearch sets per
 * transaction (iterative scan relaxed_order, ef_search DEFAULT_EF_SEARCH, no JIT, no parallel
 * workers). The owner is a superuser, so row-level security does not apply to either; the package
 * cannot query vectors_half, so neither variant goes through it (same client path for both).
 *
 * recall@10: each variant's top 10 against the exact top 10 over the full-precision vectors
 * (index scans off), the same queries for both. Latency: interleaved rounds (bench/measure.ts),
 * both variants on the same query in each round, order alternating.
 */
import { DEFAULT_EF_SEARCH } from '../../src/queries/vectors.ts';
import type { BareClient } from '../backend.ts';
import { vectorText } from '../data.ts';
import type { GrowthQuery } from '../growth/calls.ts';
import { interleaved, quantile, summarize, type Latency } from '../measure.ts';
import { progress, say } from '../progress.ts';
import { stream } from '../random.ts';
import type { HalfvecSettings } from './settings.ts';
import { HALF_INDEX, HALF_TABLE } from './table.ts';
import { HNSW_INDEX } from '../hnsw.ts';

export const VARIANTS = ['vector', 'halfvec'] as const;
export type Variant = (typeof VARIANTS)[number];

const K = 10;
const MAX_PAGE_BYTES = 32 * 2 ** 20;

const TABLE: Record<Variant, string> = { vector: 'vectors', halfvec: HALF_TABLE };
const TYPE: Record<Variant, string> = { vector: 'vector', halfvec: 'halfvec(1536)' };
const INDEX: Record<Variant, string> = { vector: HNSW_INDEX, halfvec: HALF_INDEX };

/** similaritySearch's statement over `variant`'s table: $1 tenant, $2 query (pgvector text), $3 k, $4 page bytes. */
export function searchSql(variant: Variant): string {
  const t = TABLE[variant];
  const q = `$2::${TYPE[variant]}`;
  const valid = `(embedding <=> ${q}) <> 'NaN'::float8 and (embedding <=> embedding) <> 'NaN'::float8`;
  const columns = 'content, resource_id, conversation_id, tool_id, position, metadata';
  return `with nearest_index as materialized (
      select id, ${columns}, embedding <=> ${q} as distance
      from ${t}
      where tenant_id = $1 and ${valid}
      order by distance
      limit $3
    ),
    nearest_exact as materialized (
      select id, ${columns}, embedding <=> ${q} as distance
      from ${t}
      where tenant_id = $1 and ${valid}
        and (select count(*) from nearest_index) < $3
      order by (embedding <=> ${q}) + 0, id
      limit $3
    ),
    nearest as (
      select * from nearest_exact
      union all
      select * from nearest_index where not exists (select from nearest_exact)
    ),
    hits as (select * from nearest),
    sized as (select *, sum(octet_length(content) + octet_length(metadata::text)) over () as total_bytes from hits)
    select id, case when total_bytes <= $4 then content end as content, resource_id, conversation_id, tool_id, position,
           case when total_bytes <= $4 then metadata end as metadata, distance, total_bytes
    from sized
    order by distance, id`;
}

/** similaritySearch's transaction-local settings, here for the session of the measuring connection. */
export async function searchSession(bare: BareClient): Promise<void> {
  await bare.query(
    `select set_config('hnsw.iterative_scan', 'relaxed_order', false), set_config('hnsw.ef_search', $1, false),
            set_config('jit', 'off', false), set_config('max_parallel_workers_per_gather', '0', false)`,
    [String(DEFAULT_EF_SEARCH)],
  );
}

/** What one size measured, per variant. */
export interface SearchMeasure {
  recall: Record<Variant, number>;
  recallQueries: number;
  latency: Record<Variant, Latency>;
  /** p50 halfvec ÷ p50 vector, and a 95% bootstrap interval of it (rounds resampled, 1,000 times). */
  p50Ratio: number;
  p50RatioInterval: [number, number];
  /** Largest |distance(halfvec) − distance(vector)| of a chunk both returned for the same query. */
  maxDistanceDelta: number;
  /** Rows per call (mean): k = 10 every time is expected. */
  rows: Record<Variant, number>;
  /** The plan's HNSW index was used (EXPLAIN of the first query). */
  usesIndex: Record<Variant, boolean>;
  exactSeconds: number;
}

/** Ids of the exact top 10 over the full-precision vectors (index scans off), per query. */
export async function exactTop(bare: BareClient, tenantId: string, queries: GrowthQuery[]): Promise<string[][]> {
  await bare.query(`set enable_indexscan = off`);
  const bar = progress('exact top-10 over vectors (full precision, index scans off)', queries.length, 'queries');
  const truth: string[][] = [];
  try {
    for (const [i, q] of queries.entries()) {
      const rows = await bare.query<{ id: string }>(
        `select id from vectors where tenant_id = $1 order by embedding <=> $2::vector, id limit ${K}`,
        [tenantId, vectorText(q.embedding)],
      );
      truth.push(rows.map((r) => r.id));
      bar.update(i + 1);
    }
  } finally {
    await bare.query(`reset enable_indexscan`);
  }
  bar.finish();
  return truth;
}

/** Measures both variants at the current size: plan check, recall@10, interleaved latency. */
export async function measureSearch(
  bare: BareClient,
  tenantId: string,
  queries: GrowthQuery[],
  truth: string[][],
  s: HalfvecSettings,
  exactSeconds: number,
): Promise<SearchMeasure> {
  await searchSession(bare);
  const texts = queries.map((q) => vectorText(q.embedding));
  const run = (v: Variant, i: number) =>
    bare.query<{ id: string; distance: number }>(searchSql(v), [tenantId, texts[i % texts.length], K, MAX_PAGE_BYTES]);

  const usesIndex = {} as Record<Variant, boolean>;
  for (const v of VARIANTS) {
    const plan = await bare.query<{ 'QUERY PLAN': string }>(`explain ${searchSql(v)}`, [tenantId, texts[0], K, MAX_PAGE_BYTES]);
    usesIndex[v] = plan.some((row) => row['QUERY PLAN'].includes(`Index Scan using ${INDEX[v]}`));
  }
  if (!usesIndex.vector || !usesIndex.halfvec) say(`  WARNING: the HNSW index is not in a plan: ${JSON.stringify(usesIndex)}`);

  const hits = { vector: 0, halfvec: 0 };
  let maxDistanceDelta = 0;
  const bar = progress('recall@10 of both variants (same queries)', queries.length, 'queries');
  for (let i = 0; i < queries.length; i += 1) {
    const want = new Set(truth[i]);
    const found = {} as Record<Variant, { id: string; distance: number }[]>;
    // Alternate which variant goes first (the first touches the cache for the second).
    for (const v of i % 2 === 0 ? VARIANTS : [...VARIANTS].reverse()) found[v] = await run(v, i);
    for (const v of VARIANTS) hits[v] += found[v].filter((row) => want.has(row.id)).length;
    const full = new Map(found.vector.map((row) => [row.id, Number(row.distance)]));
    for (const row of found.halfvec) {
      const d = full.get(row.id);
      if (d !== undefined) maxDistanceDelta = Math.max(maxDistanceDelta, Math.abs(Number(row.distance) - d));
    }
    bar.update(i + 1);
  }
  bar.finish();
  const wanted = truth.reduce((a, t) => a + t.length, 0);

  const rows = { vector: 0, halfvec: 0 };
  say(`  ${s.rounds} rounds × 2 variants, interleaved (after ${s.warmup} warm-up rounds)…`);
  const samples = await interleaved<Variant>(
    {
      vector: async (i) => {
        rows.vector += (await run('vector', i)).length;
      },
      halfvec: async (i) => {
        rows.halfvec += (await run('halfvec', i)).length;
      },
    },
    { iterations: s.rounds, warmup: s.warmup },
  );
  const calls = samples.vector.length + s.warmup;
  const latency = { vector: summarize(samples.vector), halfvec: summarize(samples.halfvec) };
  return {
    recall: { vector: hits.vector / wanted, halfvec: hits.halfvec / wanted },
    recallQueries: queries.length,
    latency,
    p50Ratio: latency.halfvec.p50 / latency.vector.p50,
    p50RatioInterval: bootstrapRatio(samples.vector, samples.halfvec),
    maxDistanceDelta,
    rows: { vector: rows.vector / calls, halfvec: rows.halfvec / calls },
    usesIndex,
    exactSeconds,
  };
}

/** 95% interval of p50(b) ÷ p50(a), resampling the rounds (pairs stay together: same round, same query). */
function bootstrapRatio(a: number[], b: number[]): [number, number] {
  const random = stream(1, 'halfvec-bootstrap');
  const ratios: number[] = [];
  for (let r = 0; r < 1000; r += 1) {
    const ra: number[] = [];
    const rb: number[] = [];
    for (let i = 0; i < a.length; i += 1) {
      const j = Math.floor(random() * a.length);
      ra.push(a[j]!);
      rb.push(b[j]!);
    }
    ra.sort((x, y) => x - y);
    rb.sort((x, y) => x - y);
    ratios.push(quantile(rb, 0.5) / quantile(ra, 0.5));
  }
  ratios.sort((x, y) => x - y);
  return [quantile(ratios, 0.025), quantile(ratios, 0.975)];
}
