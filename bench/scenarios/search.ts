/**
 * similaritySearch over the big tenant (k = 10): recall@10 against exact search (the same call
 * with index scans off), latency, and throughput at concurrency 4; the same search as the tenant
 * owning 5% of the rows (the HNSW index is shared by all tenants: pgvector's iterative scan must
 * keep going past other tenants' rows); and hybridSearch against vector-only search, exact (every
 * full-text match ranked) and with its full-text leg bounded to TEXT_CANDIDATES matches, whose
 * fused top-10 is compared with the exact fusion's (recall at several bounds). The latency
 * variants run interleaved. EXPLAIN (ANALYZE, BUFFERS) of one query of each shows where the time goes.
 */
import { sql } from 'kysely';
import type { TenantTx } from '../../src/db/tenant-tx.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { hybridSearch, similaritySearch } from '../../src/queries/vectors.ts';
import type { Backend } from '../backend.ts';
import { captureStatements } from '../capture.ts';
import type { World } from '../data.ts';
import { cpuFigures, cpuMeter } from '../cpu.ts';
import { concurrent, interleaved, ratio, summarize, timeIt } from '../measure.ts';
import { progress, say } from '../progress.ts';
import type { Result } from '../report.ts';

const K = 10;
/** hybridSearch's textCandidates timed against vector-only search (the latency rows). */
const TEXT_CANDIDATES = [200, 400] as const;
/** The bounds whose fused top-10 is compared with the exact fusion's (no timing: cheap). */
const RECALL_BOUNDS = [100, 200, 400, 800, 1600] as const;
/** Time caps: a slow plan (e.g. a sequential scan of 100,000 vectors) must not make a run last an hour. */
const RECALL_MAX_MS = 150_000;
const LATENCY_MAX_MS = 120_000;

interface Query {
  cluster: number;
  embedding: number[];
  text: string;
}

/** Runs the search scenarios; the HNSW index must be in place. */
export async function searchScenarios(backend: Backend, world: World): Promise<Result[]> {
  const s = world.settings;
  const queries: Query[] = Array.from({ length: Math.max(s.recallQueries, 50) }, () => {
    const cluster = Math.floor(world.random() * s.clusters);
    return { cluster, embedding: world.points.point(cluster), text: world.texts.query(world.random, cluster) };
  });
  const big = world.big.id;
  const five = world.five.id;
  const search = (tenantId: string, q: Query) => withTenant(backend.db, tenantId, (tx) => similaritySearch(tx, { embedding: q.embedding, k: K }));
  const exact = (tenantId: string, q: Query) =>
    withTenant(backend.db, tenantId, async (tx) => {
      await sql`set local enable_indexscan = off`.execute(tx);
      return similaritySearch(tx, { embedding: q.embedding, k: K });
    });

  // Recall: the package's answer against the exact one, for both tenants.
  const recall = { big: [] as number[], five: [] as number[] };
  const exactMs = { big: [] as number[], five: [] as number[] };
  let fiveShort = 0;
  const bar = progress('exact top-10 (index off) for recall', s.recallQueries * 2, 'queries');
  const recallDeadline = performance.now() + RECALL_MAX_MS;
  let recallQueries = 0;
  for (let i = 0; i < s.recallQueries; i += 1) {
    if (i >= 20 && performance.now() > recallDeadline) break;
    recallQueries += 1;
    const q = queries[i]!;
    for (const [name, tenantId] of [['big', big], ['five', five]] as const) {
      let truth: { id: string }[] = [];
      exactMs[name].push(await timeIt(async () => (truth = await exact(tenantId, q))));
      const found = await search(tenantId, q);
      if (name === 'five' && found.length < K) fiveShort += 1;
      const want = new Set(truth.map((row) => row.id));
      recall[name].push(found.filter((row) => want.has(row.id)).length / Math.max(1, want.size));
    }
    bar.update(2 * (i + 1));
  }
  bar.finish(recallQueries < s.recallQueries ? `(stopped after ${recallQueries} queries: time cap)` : undefined);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

  // hybridSearch with a bounded full-text leg against the exact fusion (hybridSearch's default):
  // the share of the exact top-10 the bounded call returns, and how often it returns the same rows.
  const hybridCall = (q: Query, textCandidates?: number) =>
    withTenant(backend.db, big, (tx) => hybridSearch(tx, { query: q.text, embedding: q.embedding, k: K, ...(textCandidates === undefined ? {} : { textCandidates }) }));
  const fusion = Object.fromEntries(RECALL_BOUNDS.map((n) => [n, { recall: [] as number[], same: 0 }])) as Record<number, { recall: number[]; same: number }>;
  const fusionQueries = Math.min(queries.length, 100);
  const fusionBar = progress('hybridSearch: bounded text leg against exact fusion', fusionQueries, 'queries');
  for (let i = 0; i < fusionQueries; i += 1) {
    const q = queries[i]!;
    const exactIds = (await hybridCall(q)).map((row) => row.id);
    for (const n of RECALL_BOUNDS) {
      const ids = (await hybridCall(q, n)).map((row) => row.id);
      const want = new Set(exactIds);
      fusion[n]!.recall.push(ids.filter((id) => want.has(id)).length / Math.max(1, want.size));
      if (ids.join() === exactIds.join()) fusion[n]!.same += 1;
    }
    fusionBar.update(i + 1);
  }
  fusionBar.finish();
  const fusionRecall = (n: number) => mean(fusion[n]!.recall);
  const fusionFigures = Object.fromEntries(
    RECALL_BOUNDS.flatMap((n) => [
      [`recall@10 vs exact fusion, ${n} candidates`, fusionRecall(n)],
      [`same top-10 as exact, ${n} candidates`, `${fusion[n]!.same}/${fusionQueries}`],
    ]),
  );

  say(`search latency: ${s.searchIterations} calls × ${3 + TEXT_CANDIDATES.length} variants, interleaved…`);
  let fiveRows = 0;
  let fiveCalls = 0;
  let hybridRows = 0;
  let hybridTextHits = 0;
  const samples = await interleaved(
    {
      similarity: (i) => search(big, queries[i % queries.length]!),
      filtered: async (i) => {
        const rows = await search(five, queries[i % queries.length]!);
        fiveCalls += 1;
        if (rows.length === K) fiveRows += 1;
      },
      hybrid: async (i) => {
        const q = queries[i % queries.length]!;
        const rows = await hybridCall(q);
        hybridRows += rows.length;
        hybridTextHits += rows.filter((row) => row.textRank !== null).length;
      },
      bounded0: (i) => hybridCall(queries[i % queries.length]!, TEXT_CANDIDATES[0]),
      bounded1: (i) => hybridCall(queries[i % queries.length]!, TEXT_CANDIDATES[1]),
    },
    { iterations: s.searchIterations, warmup: 20, maxMs: LATENCY_MAX_MS, minIterations: 30 },
  );
  const similarity = summarize(samples.similarity);
  const filtered = summarize(samples.filtered);
  const hybrid = summarize(samples.hybrid);
  const bounded = [summarize(samples.bounded0), summarize(samples.bounded1)];

  say(`search throughput: concurrency 4 for ${s.throughputSeconds} s…`);
  const meter = await cpuMeter(backend);
  const rate = await concurrent((_, i) => search(big, queries[i % queries.length]!), {
    concurrency: 4,
    durationMs: s.throughputSeconds * 1000,
  });
  const spent = await meter();

  // How many chunks the full-text leg has to rank (all matches of the tenant), for the first queries.
  const matches: number[] = [];
  for (const q of queries.slice(0, 30)) {
    const [row] = await backend.bare.query<{ n: number }>(
      `select count(*)::int as n from vectors where tenant_id = $1 and content_tsv @@ websearch_to_tsquery('english', $2)`,
      [big, q.text],
    );
    matches.push(row?.n ?? 0);
  }
  const planBig = await explainSearch(backend, big, (tx) => similaritySearch(tx, { embedding: queries[0]!.embedding, k: K }));
  const planFive = await explainSearch(backend, five, (tx) => similaritySearch(tx, { embedding: queries[0]!.embedding, k: K }));
  const planHybrid = await explainSearch(backend, big, (tx) => hybridSearch(tx, { query: queries[0]!.text, embedding: queries[0]!.embedding, k: K }));
  const planBounded = await explainSearch(backend, big, (tx) =>
    hybridSearch(tx, { query: queries[0]!.text, embedding: queries[0]!.embedding, k: K, textCandidates: TEXT_CANDIDATES[0] }),
  );

  const exactBig = summarize(exactMs.big);
  const exactFive = summarize(exactMs.five);
  const recallBig = mean(recall.big);
  const recallFive = mean(recall.five);
  const fiveRatio = ratio(filtered.p50, similarity.p50);
  const hybridRatio = ratio(hybrid.p50, similarity.p50);
  const everyTime = fiveShort === 0 && fiveRows === fiveCalls;
  const group = `vector search (k = ${K}, 1536-d; big tenant ${world.big.vectors.toLocaleString('en-US')} rows of ${world.counts.vectors?.toLocaleString('en-US')})`;
  return [
    {
      id: 'search.similarity',
      group,
      label: 'similaritySearch, big tenant',
      latency: similarity,
      rate: { perSecond: rate.perSecond, unit: 'queries', concurrency: 4 },
      baseline: { label: 'exact (index off)', latency: exactBig },
      ratio: { value: ratio(similarity.p50, exactBig.p50), of: 'p50' },
      figures: { 'recall@10': recallBig, 'c4 p50 ms': rate.latency.p50, 'c4 p95 ms': rate.latency.p95, ...cpuFigures(spent, rate.operations), plan: planBig },
      goals: [
        { text: 'recall@10 ≥ 0.95', met: recallBig >= 0.95, actual: recallBig.toFixed(3) },
        { text: 'p50 ≤ 5 ms', met: similarity.p50 <= 5, actual: `${similarity.p50.toFixed(2)} ms` },
        { text: 'p95 ≤ 15 ms', met: similarity.p95 <= 15, actual: `${similarity.p95.toFixed(2)} ms` },
        { text: '≥ 250 queries/s at concurrency 4', met: rate.perSecond >= 250, actual: `${rate.perSecond.toFixed(0)}/s` },
      ],
    },
    {
      id: 'search.filtered5',
      group,
      label: `similaritySearch, 5% tenant (${world.five.vectors.toLocaleString('en-US')} rows)`,
      latency: filtered,
      baseline: { label: 'unfiltered (big tenant)', latency: similarity },
      ratio: { value: fiveRatio, of: 'p50' },
      figures: { 'recall@10': recallFive, 'k rows returned': `${fiveRows + recallQueries - fiveShort}/${fiveCalls + recallQueries}`, 'recall queries': recallQueries, 'exact p50 ms': exactFive.p50, plan: planFive },
      goals: [
        { text: 'returns k rows every time', met: everyTime, actual: everyTime ? 'always' : `${fiveShort + fiveCalls - fiveRows} short` },
        { text: 'recall@10 ≥ 0.9', met: recallFive >= 0.9, actual: recallFive.toFixed(3) },
        { text: 'p50 ≤ 2× unfiltered', met: fiveRatio <= 2, actual: `${fiveRatio.toFixed(2)}×` },
      ],
    },
    {
      id: 'search.hybrid',
      group,
      label: 'hybridSearch, big tenant',
      latency: hybrid,
      baseline: { label: 'similaritySearch', latency: similarity },
      ratio: { value: hybridRatio, of: 'p50' },
      figures: {
        'rows per call': hybridRows / Math.max(1, samples.hybrid.length + 20),
        'latency rounds': samples.hybrid.length,
        'text-leg matches per query (median)': summarize(matches).p50,
        'rows found by the text leg': hybridTextHits / Math.max(1, hybridRows),
        plan: planHybrid,
      },
      goals: [{ text: 'p50 ≤ 2× vector-only', met: hybridRatio <= 2, actual: `${hybridRatio.toFixed(2)}×` }],
    },
    ...TEXT_CANDIDATES.map((n, i): Result => {
      const r = ratio(bounded[i]!.p50, similarity.p50);
      return {
        id: `search.hybrid${n}`,
        group,
        label: `hybridSearch, big tenant, textCandidates ${n}`,
        latency: bounded[i]!,
        baseline: { label: 'similaritySearch', latency: similarity },
        ratio: { value: r, of: 'p50' },
        figures: { 'recall@10 vs exact fusion': fusionRecall(n), 'same top-10 as exact': `${fusion[n]!.same}/${fusionQueries}`, ...(i === 0 ? { ...fusionFigures, plan: planBounded } : {}) },
        goals: [
          { text: 'p50 ≤ 2× vector-only', met: r <= 2, actual: `${r.toFixed(2)}×` },
          { text: 'recall@10 vs exact fusion ≥ 0.95', met: fusionRecall(n) >= 0.95, actual: fusionRecall(n).toFixed(3) },
        ],
      };
    }),
  ];
}

/**
 * EXPLAIN (ANALYZE, BUFFERS) of the last statement of a search call, replayed as the package sent
 * it (same role, tenant and pgvector settings): the scan used, rows, buffers and time, in one line.
 */
export async function explainSearch(backend: Backend, tenantId: string, call: (tx: TenantTx) => Promise<unknown>): Promise<string> {
  const statements = await captureStatements(backend.db, tenantId, call);
  const last = statements.at(-1)!;
  const [plan] = await backend.bare.tenantTransaction(tenantId, async (q) => {
    for (const st of statements.slice(0, -1)) await q(st.sql, st.parameters);
    return q<Record<string, unknown>>(`explain (analyze, buffers, format json) ${last.sql}`, last.parameters);
  });
  const json = Object.values(plan ?? {})[0];
  const parsed = (typeof json === 'string' ? JSON.parse(json) : json) as { Plan: PlanNode; 'Execution Time': number }[];
  const root = parsed[0]!;
  const scans = nodes(root.Plan)
    .filter((n) => /Scan/.test(n['Node Type']))
    .map((n) => `${n['Node Type']}${n['Index Name'] ? ` ${n['Index Name']}` : ''}${n['Relation Name'] && !n['Index Name'] ? ` ${n['Relation Name']}` : ''} rows ${n['Actual Rows']}${n['Rows Removed by Filter'] ? ` (filtered ${n['Rows Removed by Filter']})` : ''}`);
  return `${[...new Set(scans)].join(', ')}; buffers hit ${root.Plan['Shared Hit Blocks'] ?? 0} read ${root.Plan['Shared Read Blocks'] ?? 0}; exec ${root['Execution Time'].toFixed(2)} ms`;
}

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Relation Name'?: string;
  'Actual Rows'?: number;
  'Rows Removed by Filter'?: number;
  'Shared Hit Blocks'?: number;
  'Shared Read Blocks'?: number;
  Plans?: PlanNode[];
}

function nodes(node: PlanNode): PlanNode[] {
  return [node, ...(node.Plans ?? []).flatMap(nodes)];
}
