/**
 * Results of a run: the shape every scenario reports, the printed table and goal list, the
 * results JSON, and the embedded-vs-server comparison read from an earlier server run's file.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Latency } from './measure.ts';

/** Operations per second of a concurrent run. */
export interface Rate {
  perSecond: number;
  /** What is counted: 'queries', 'chunks', 'charges', … */
  unit: string;
  concurrency: number;
}

/** A goal of the issue, judged on this run's figures. */
export interface Goal {
  text: string;
  met: boolean;
  /** The measured value, as printed next to the goal. */
  actual: string;
}

/** One line of the table. */
export interface Result {
  /** Stable key, shared by server and embedded runs (e.g. `lookup.getUser`). */
  id: string;
  group: string;
  label: string;
  latency?: Latency;
  rate?: Rate;
  baseline?: { label: string; latency?: Latency; rate?: Rate };
  /** This scenario against its baseline: p50 / baseline p50, or rate / baseline rate. */
  ratio?: { value: number; of: 'p50' | 'rate' };
  /** Other figures (recall, rows, seconds, …), printed as notes. */
  figures?: Record<string, number | string | boolean>;
  goals?: Goal[];
}

/** What every results file starts with (the main run's, --growth's, --halfvec's): where and how it ran. */
export interface RunHeader {
  backend: 'server' | 'embedded';
  mode: 'full' | 'quick';
  startedAt: string;
  seconds: number;
  where: string;
  settings: Record<string, unknown>;
  versions: Record<string, string>;
  databaseSettings: Record<string, string>;
  machine: Record<string, string | number>;
}

/** The results file of a run. */
export interface Report extends RunHeader {
  load: Record<string, unknown>;
  results: Result[];
  comparison?: { file: string; startedAt: string; mode: string; bigTenantVectors: unknown };
}

/**
 * Where a run's JSON goes: bench/results/<backend>.json, <backend>-quick.json for --quick, and
 * with `-partial` before `.json` for a run of some groups only (--only), which the comparison ignores.
 */
export function resultsPath(backend: 'server' | 'embedded', mode: 'full' | 'quick', partial = false): string {
  return new URL(`./results/${backend}${mode === 'quick' ? '-quick' : ''}${partial ? '-partial' : ''}.json`, import.meta.url).pathname;
}

/** Writes the report as JSON (creating bench/results/). */
export function writeReport(path: string, report: Report): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(report, null, 2)}\n`);
}

/** An earlier server run to compare an embedded run with: the same mode's file first, else the other. */
export function readServerReport(mode: 'full' | 'quick'): { path: string; report: Report } | undefined {
  for (const m of mode === 'quick' ? (['quick', 'full'] as const) : (['full', 'quick'] as const)) {
    const path = resultsPath('server', m);
    if (existsSync(path)) return { path, report: JSON.parse(readFileSync(path, 'utf8')) as Report };
  }
  return undefined;
}

const fmt = (x: number | undefined, digits = 2) =>
  x === undefined || !Number.isFinite(x) ? '—' : x >= 1000 ? Math.round(x).toLocaleString('en-US') : x.toFixed(x >= 100 ? 0 : digits);

function rateText(rate: Rate | undefined): string {
  return rate === undefined ? '—' : `${fmt(rate.perSecond)}/s c${rate.concurrency}`;
}

function figureText(figures: Result['figures']): string {
  if (figures === undefined) return '';
  return Object.entries(figures)
    .map(([k, v]) => `${k} ${typeof v === 'number' ? fmt(v, Number.isInteger(v) ? 0 : 3) : String(v)}`)
    .join('; ');
}

/** The comparison of a result with the same scenario of the server run (embedded ÷ server). */
export function versusServer(result: Result, server: Report | undefined): string {
  const other = server?.results.find((r) => r.id === result.id);
  if (other === undefined) return '—';
  // Throughput is the headline of loads, ingestion and charges; latency of everything else.
  const rateFirst = /^(load|ingest|usage)\./.test(result.id);
  if (rateFirst && result.rate !== undefined && other.rate !== undefined) return `${fmt(result.rate.perSecond / other.rate.perSecond)}× rate`;
  if (result.latency !== undefined && other.latency !== undefined) return `${fmt(result.latency.p50 / other.latency.p50)}× p50`;
  if (result.rate !== undefined && other.rate !== undefined) return `${fmt(result.rate.perSecond / other.rate.perSecond)}× rate`;
  const a = result.figures?.seconds;
  const b = other.figures?.seconds;
  if (typeof a === 'number' && typeof b === 'number') return `${fmt(a / b)}× time`;
  return '—';
}

/** The table, the goals and the notes, as printed at the end of a run. */
export function formatReport(report: Report, server: Report | undefined): string {
  const headers = ['scenario', 'p50 ms', 'p95 ms', 'throughput', 'baseline', 'base p50 ms', 'base thr.', 'ratio'];
  if (report.backend === 'embedded') headers.push('vs server');
  const rows = report.results.map((r) => {
    const cells = [
      r.label,
      fmt(r.latency?.p50, 3),
      fmt(r.latency?.p95, 3),
      rateText(r.rate),
      r.baseline?.label ?? '—',
      fmt(r.baseline?.latency?.p50, 3),
      rateText(r.baseline?.rate),
      r.ratio === undefined ? '—' : `${fmt(r.ratio.value, 2)}× ${r.ratio.of}`,
    ];
    if (report.backend === 'embedded') cells.push(versusServer(r, server));
    return { group: r.group, cells };
  });
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r.cells[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const out: string[] = [];
  out.push(line(headers), widths.map((w) => '─'.repeat(w)).join('  '));
  let group = '';
  for (const row of rows) {
    if (row.group !== group) {
      group = row.group;
      out.push(`[${group}]`);
    }
    out.push(line(row.cells));
  }
  out.push('', report.backend === 'server' ? 'Goals (this 2-core machine, server):' : 'Goals (they are set for the server; shown here for reference):');
  for (const r of report.results) {
    for (const g of r.goals ?? []) out.push(`  ${g.met ? 'MET    ' : 'NOT MET'}  ${r.label}: ${g.text} — measured ${g.actual}`);
  }
  out.push('', 'Details:');
  for (const r of report.results) {
    const text = figureText(r.figures);
    if (text !== '') out.push(`  ${r.label}: ${text}`);
  }
  return out.join('\n');
}
