/**
 * What a `--growth` run reports: the growth table (size × call, p50/p95 ms), the table and index
 * sizes at each size, the issue-18 goals judged as ratios largest ÷ smallest size of the same
 * run, the results JSON (bench/results/growth-server.json; -quick for --quick) and the chart of
 * p50 against size (the same name, .svg).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { logLogChart, shortNumber } from '../chart.ts';
import type { Goal, RunHeader } from '../report.ts';
import { GROWTH_CALLS, type GrowthCallId, type SizeMeasure } from './calls.ts';
import type { StepSeconds } from './load.ts';
import type { GrowthStep } from './settings.ts';
import type { TableSize } from './sizes.ts';

/** One size of the ladder: what was loaded, how long it took, what was measured. */
export interface GrowthPoint {
  step: GrowthStep;
  /** The growing tenant's rows at this size. */
  tenant: { conversations: number; messages: number; usage: number; chunks: number; usageRollups: number; usageDayRollups: number };
  load: StepSeconds & { hnswSeconds: number; vacuumSeconds: number };
  /** usage_rollups and usage_day_rollups buckets of the tenant that differ from its usage rows (0: exact). */
  rollupMismatches: number;
  measure: SizeMeasure;
  sizes: { tables: TableSize[]; hnswMiB: number };
}

/** The results file of a growth run. */
export interface GrowthReport extends RunHeader {
  backend: 'server';
  points: GrowthPoint[];
  goals: Goal[];
}

/** Where the JSON and the SVG of a growth run go. */
export function growthPaths(mode: 'full' | 'quick'): { json: string; svg: string } {
  const base = new URL(`../results/growth-server${mode === 'quick' ? '-quick' : ''}`, import.meta.url).pathname;
  return { json: `${base}.json`, svg: `${base}.svg` };
}

const LIST_CALLS: GrowthCallId[] = ['listConversations.first', 'listConversations.deep', 'listMessages', 'getThread'];
const COST_CALLS: GrowthCallId[] = ['costSummary.day', 'costSummary.dayModel'];
const label = (id: GrowthCallId) => GROWTH_CALLS.find((c) => c.id === id)!.label;
const sizeOf = (id: GrowthCallId, step: GrowthStep) => (GROWTH_CALLS.find((c) => c.id === id)!.axis === 'chunks' ? step.chunks : step.rows);

/** p50 at the largest size ÷ p50 at the smallest. */
export function growthRatio(points: GrowthPoint[], id: GrowthCallId): number {
  return points.at(-1)!.measure.latency[id].p50 / points[0]!.measure.latency[id].p50;
}

/** The goals of issue 18, judged on this run. */
export function growthGoals(points: GrowthPoint[]): Goal[] {
  const first = points[0]!.step;
  const last = points.at(-1)!.step;
  const span = (id: GrowthCallId) => `${shortNumber(sizeOf(id, first))} → ${shortNumber(sizeOf(id, last))} ${GROWTH_CALLS.find((c) => c.id === id)!.axis}`;
  const within2 = (id: GrowthCallId, what: string): Goal => {
    const r = growthRatio(points, id);
    return { text: `${label(id)}: p50 within 2× ${what} (${span(id)})`, met: r <= 2, actual: `${r.toFixed(2)}×` };
  };
  const minRecall = Math.min(...points.map((p) => p.measure.recall));
  return [
    ...LIST_CALLS.map((id) => within2(id, 'from the smallest to the largest size')),
    within2('similaritySearch', 'from the smallest to the largest chunk count'),
    { text: `similaritySearch: recall@10 ≥ 0.95 at every size`, met: minRecall >= 0.95, actual: `min ${minRecall.toFixed(3)}` },
    ...COST_CALLS.map((id) => within2(id, '(flat)')),
  ];
}

const fmt = (x: number) => (!Number.isFinite(x) ? '—' : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

/** The growth table, the sizes, the goals and the load times, as printed at the end of a run. */
export function formatGrowth(report: GrowthReport): string {
  const points = report.points;
  const out: string[] = [];
  const header = ['call', ...points.map((p) => `${shortNumber(p.step.rows)} rows / ${shortNumber(p.step.chunks)} chunks`), 'p50 ratio'];
  const rows = GROWTH_CALLS.map((c) => [
    c.label,
    ...points.map((p) => `${fmt(p.measure.latency[c.id].p50)} / ${fmt(p.measure.latency[c.id].p95)}`),
    `${growthRatio(points, c.id).toFixed(2)}×`,
  ]);
  rows.push(['similaritySearch recall@10', ...points.map((p) => p.measure.recall.toFixed(3)), '']);
  out.push(...table(header, rows, 'p50 / p95 ms at each size of the growing tenant (rows: its messages and usage rows; chunks: its vectors)'));

  out.push('');
  const sizeHeader = ['table (all tenants)', ...points.map((p) => `${shortNumber(p.step.rows)} / ${shortNumber(p.step.chunks)}`)];
  const sizeRows = points[0]!.sizes.tables.map((t, i) => [
    t.table,
    ...points.map((p) => {
      const s = p.sizes.tables[i]!;
      return `${shortNumber(s.rows)} rows, ${fmt(s.heapMiB)} + ${fmt(s.indexesMiB)} idx = ${fmt(s.totalMiB)} MiB`;
    }),
  ]);
  sizeRows.push(['  of which the HNSW index', ...points.map((p) => `${fmt(p.sizes.hnswMiB)} MiB`)]);
  out.push(...table(sizeHeader, sizeRows, 'table sizes: heap + indexes = total (with TOAST), MiB'));

  out.push('', 'Goals (issue 18; ratios largest ÷ smallest size of this run):');
  for (const g of report.goals) out.push(`  ${g.met ? 'MET    ' : 'NOT MET'}  ${g.text} — measured ${g.actual}`);
  out.push(`  (no goal) hybridSearch: p50 ${growthRatio(points, 'hybridSearch').toFixed(2)}× from the smallest to the largest chunk count`);

  out.push('', 'Load and details:');
  for (const p of points) {
    const t = p.tenant;
    const users = p.measure.listedUsers.map((u) => `${u.conversations} (deep page at ${u.deepAt})`).join(', ');
    out.push(
      `  ${shortNumber(p.step.rows)} / ${shortNumber(p.step.chunks)}: tenant ${t.conversations.toLocaleString('en-US')} conversations, ` +
        `${t.messages.toLocaleString('en-US')} messages, ${t.usage.toLocaleString('en-US')} usage rows (${t.usageRollups.toLocaleString('en-US')} per-user and ${t.usageDayRollups.toLocaleString('en-US')} per-stripe rollup buckets, ` +
        `${p.rollupMismatches} wrong), ${t.chunks.toLocaleString('en-US')} chunks; step load ${fmt(p.load.conversationsMessages)} s conversations+messages, ` +
        `${fmt(p.load.usage)} s usage, ${fmt(p.load.chunks)} s chunks, ${fmt(p.load.hnswSeconds)} s HNSW build, ${fmt(p.load.vacuumSeconds)} s vacuum analyze; ` +
        `listed users' live conversations: ${users}; recall over ${p.measure.recallQueries} queries`,
    );
  }
  return out.join('\n');
}

function table(header: string[], rows: string[][], caption: string): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [caption, line(header), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.map(line)];
}

/** Writes the JSON and the chart (p50 against size, log x, one line per call). */
export function writeGrowth(report: GrowthReport): { json: string; svg: string } {
  const paths = growthPaths(report.mode);
  mkdirSync(dirname(paths.json), { recursive: true });
  writeFileSync(paths.json, `${JSON.stringify(report, null, 2)}\n`);
  const cores = report.machine.cores;
  const svg = logLogChart({
    title: 'Cost as a tenant grows: p50 of each call against the tenant’s size',
    subtitle: `npm run bench -- --growth${report.mode === 'quick' ? ' --quick' : ''}, ${report.startedAt.slice(0, 10)}, PostgreSQL server, ${cores} cores; searches (dashed) against chunks`,
    xLabel: 'rows of the growing tenant (messages, usage rows; dashed: chunks), log scale',
    yLabel: 'p50 ms (log scale)',
    series: GROWTH_CALLS.map((c) => ({
      label: c.label,
      dashed: c.axis === 'chunks',
      points: report.points.map((p) => ({ x: sizeOf(c.id, p.step), y: p.measure.latency[c.id].p50 })),
    })),
  });
  writeFileSync(paths.svg, svg);
  return paths;
}
