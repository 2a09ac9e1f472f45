/**
 * What a `--halfvec` run reports: at each size, vector and halfvec side by side (HNSW index
 * size and build time, heap size, recall@10, p50/p95 of the search), the ratios halfvec ÷ vector,
 * and the verdicts of issue 18's rule (adopt if recall@10 ≥ 0.98 and p50 not worse, at every
 * size); the results JSON, bench/results/halfvec-server.json (-quick for --quick).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { HnswBuild } from '../hnsw.ts';
import type { Goal, RunHeader } from '../report.ts';
import type { SearchMeasure } from './measure.ts';

/** Bytes, rows and seconds of both tables at one size. */
export interface HalfvecPoint {
  /** Chunks of the measured tenant, and rows of the whole table (every tenant). */
  chunks: number;
  tableRows: number;
  load: { chunksSeconds: number; copySeconds: number; vacuumSeconds: number };
  build: { vector: HnswBuild; halfvec: HnswBuild; halfFirst: boolean };
  heap: Record<'vector' | 'halfvec', { heap: number; heapAndToast: number; rows: number }>;
  search: SearchMeasure;
}

/** The results file of a halfvec run. */
export interface HalfvecReport extends RunHeader {
  backend: 'server';
  points: HalfvecPoint[];
  verdicts: Goal[];
  adopt: boolean;
}

export const RECALL_FLOOR = 0.98;

/** Where the JSON of a halfvec run goes. */
export function halfvecPath(mode: 'full' | 'quick'): string {
  return new URL(`../results/halfvec-server${mode === 'quick' ? '-quick' : ''}.json`, import.meta.url).pathname;
}

const n = (x: number) => x.toLocaleString('en-US');
const mib = (bytes: number) => bytes / 2 ** 20;
const f = (x: number, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : '—');
const size = (x: number) => (x >= 1000 ? n(Math.round(x)) : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

/** Issue 18's rule at every size: recall@10 of halfvec ≥ 0.98, p50 halfvec ÷ vector ≤ 1; and the index size ratio (no goal). */
export function halfvecVerdicts(points: HalfvecPoint[]): Goal[] {
  const goals: Goal[] = [];
  for (const p of points) {
    const at = `${n(p.chunks)} chunks`;
    goals.push({
      text: `halfvec recall@10 ≥ ${RECALL_FLOOR} (${at})`,
      met: p.search.recall.halfvec >= RECALL_FLOOR,
      actual: `${p.search.recall.halfvec.toFixed(3)} (vector ${p.search.recall.vector.toFixed(3)})`,
    });
    const [lo, hi] = p.search.p50RatioInterval;
    goals.push({
      text: `halfvec p50 not worse than vector's, interleaved (${at})`,
      met: p.search.p50Ratio <= 1,
      actual: `${f(p.search.p50Ratio)}× (95% interval ${f(lo)}–${f(hi)}×; ${f(p.search.latency.halfvec.p50)} vs ${f(p.search.latency.vector.p50)} ms)`,
    });
  }
  return goals;
}

/** The side-by-side table, the ratios and the verdicts. */
export function formatHalfvec(report: HalfvecReport): string {
  const head = ['size', 'variant', 'HNSW MiB', 'build s', 'heap MiB', 'recall@10', 'p50 ms', 'p95 ms', 'rows/call'];
  const rows: string[][] = [];
  for (const p of report.points) {
    for (const v of ['vector', 'halfvec'] as const) {
      rows.push([
        v === 'vector' ? `${n(p.chunks)} chunks (table ${n(p.tableRows)})` : '',
        v === 'vector' ? 'vector(1536)' : 'halfvec(1536)',
        size(p.build[v].sizeMiB),
        f(p.build[v].seconds, 1),
        size(mib(p.heap[v].heapAndToast)),
        p.search.recall[v].toFixed(3),
        f(p.search.latency[v].p50),
        f(p.search.latency[v].p95),
        f(p.search.rows[v], 1),
      ]);
    }
    rows.push([
      '',
      'halfvec ÷ vector',
      `${f(p.build.halfvec.sizeMiB / p.build.vector.sizeMiB)}×`,
      `${f(p.build.halfvec.seconds / p.build.vector.seconds)}×`,
      `${f(p.heap.halfvec.heapAndToast / p.heap.vector.heapAndToast)}×`,
      '',
      `${f(p.search.p50Ratio)}×`,
      `${f(p.search.latency.halfvec.p95 / p.search.latency.vector.p95)}×`,
      '',
    ]);
  }
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  const out = [line(head), line(widths.map((w) => '─'.repeat(w))), ...rows.map(line)];
  out.push('');
  const first = report.points[0];
  if (first !== undefined) {
    out.push(
      `HNSW (m, ef_construction) as migration 0004 for both; builds with maintenance_work_mem ${first.build.vector.maintenanceWorkMem}, ` +
        `up to ${first.build.vector.parallelWorkers} parallel maintenance workers, one after the other (order alternating by size). ` +
        `heap: pg_total_relation_size − pg_indexes_size (main fork + TOAST). Search: similaritySearch's statement, k = 10, ` +
        `the tenant filter, ef_search as the package, ${report.points.map((p) => n(p.search.latency.vector.n)).join(' / ')} interleaved rounds; ` +
        `recall over ${first.search.recallQueries} queries against the exact top 10 of the full-precision vectors.`,
    );
    out.push(
      `largest |distance difference| of a chunk both returned: ${report.points.map((p) => p.search.maxDistanceDelta.toExponential(1)).join(' / ')}; ` +
        `HNSW index in both plans: ${report.points.every((p) => p.search.usesIndex.vector && p.search.usesIndex.halfvec) ? 'yes' : 'NO'}`,
    );
    out.push('');
  }
  out.push('Verdicts (issue 18: adopt halfvec if recall@10 ≥ 0.98 and p50 is not worse, at every size):');
  for (const g of report.verdicts) out.push(`  ${g.met ? 'MET    ' : 'NOT MET'}  ${g.text} — measured ${g.actual}`);
  for (const p of report.points) {
    out.push(`  (no goal) HNSW index size halfvec ÷ vector at ${n(p.chunks)} chunks: ${f(p.build.halfvec.sizeMiB / p.build.vector.sizeMiB)}×`);
  }
  out.push(`  ⇒ ${report.adopt ? 'ADOPT: every verdict met' : 'DO NOT ADOPT: a verdict is not met'}`);
  return out.join('\n');
}

/** Writes the results JSON; returns its path. */
export function writeHalfvec(report: HalfvecReport): string {
  const path = halfvecPath(report.mode);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(report, null, 2)}\n`);
  return path;
}
