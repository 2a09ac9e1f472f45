/**
 * The studio's static files, all served by the studio itself (nothing is fetched from the
 * network): its stylesheet and two small scripts, kept here as text so that the built package
 * needs no copy step, and Chart.js's UMD build, read from the package's node_modules.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** One static file. */
export interface Asset {
  type: string;
  body: string;
}

/**
 * Chart.js's self-contained build. chart.js 4 exports no subpath for it, so it is found next to
 * the file its main entry resolves to (`dist/chart.cjs` → `dist/chart.umd.min.js`).
 */
function chartJs(): string {
  const main = createRequire(import.meta.url).resolve('chart.js');
  return readFileSync(join(dirname(main), 'chart.umd.min.js'), 'utf8');
}

const STUDIO_CSS = `
:root { --fg: #1d2330; --muted: #667085; --line: #e3e6ec; --bg: #f7f8fa; --accent: #2457c5; --warn: #b54708; --ok: #067647; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
code, pre { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: 12.5px; }
pre { white-space: pre-wrap; word-break: break-word; margin: 4px 0; }
header.top { display: flex; align-items: center; gap: 18px; padding: 10px 20px; background: #111827; color: #e5e7eb; }
header.top a { color: #e5e7eb; } header.top .brand { font-weight: 700; }
header.top nav a { margin-right: 12px; padding: 4px 8px; border-radius: 4px; } header.top nav a.active { background: #374151; }
header.top .target { margin-left: auto; font-family: ui-monospace, monospace; font-size: 12px; color: #9ca3af; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; background: #eef2ff; color: #3538cd; font-size: 11px; }
.badge.readonly { background: #065f46; color: #d1fae5; } .badge.warn { background: #fef0c7; color: var(--warn); }
.tenantbar { display: flex; flex-wrap: wrap; align-items: center; gap: 14px; padding: 8px 20px; background: #e8eefc; border-bottom: 1px solid #c7d4f5; }
.tenantbar nav a { margin-right: 10px; padding: 3px 8px; border-radius: 4px; } .tenantbar nav a.active { background: #fff; font-weight: 600; }
.tenantbar .note { color: var(--muted); font-size: 12px; }
main { padding: 16px 20px 40px; }
h1 { font-size: 20px; margin: 4px 0 14px; } h2 { font-size: 16px; margin: 22px 0 8px; } h3 { font-size: 14px; margin: 16px 0 6px; }
.hint, .meta, .empty { color: var(--muted); } h2 .hint { font-weight: normal; font-size: 12px; margin-left: 8px; }
.facts dl { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 0; padding: 10px 14px; background: #fff; border: 1px solid var(--line); border-radius: 6px; max-width: 900px; }
.facts dt { color: var(--muted); } .facts dd { margin: 0; font-family: ui-monospace, monospace; font-size: 13px; }
table.grid { border-collapse: collapse; background: #fff; border: 1px solid var(--line); }
table.grid th, table.grid td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
table.grid thead th { background: #f2f4f7; font-weight: 600; position: sticky; top: 0; }
table.grid .num { text-align: right; font-variant-numeric: tabular-nums; }
td.ok { color: var(--ok); } td.warn, .warn { color: var(--warn); } td.off { color: var(--muted); }
td.priv { font-family: ui-monospace, monospace; font-size: 12px; text-align: center; }
th.rot { height: 110px; white-space: nowrap; vertical-align: bottom; } th.rot span { display: inline-block; writing-mode: vertical-rl; transform: rotate(180deg); font-weight: normal; font-size: 12px; }
.scroll { overflow-x: auto; max-width: 100%; }
.null { color: #98a2b3; font-style: italic; } .denied { color: #b42318; font-style: italic; font-size: 12px; } .secret { color: var(--warn); font-style: italic; }
.vector .dims { font-weight: 600; } .vector .norm { color: var(--muted); margin: 0 4px; }
table.rows td { max-width: 420px; } table.rows details { min-width: 240px; } table.rows details summary { cursor: pointer; }
.more { color: var(--muted); font-size: 11px; } .text.short { white-space: nowrap; }
.browser { display: grid; grid-template-columns: 190px 1fr; gap: 18px; }
nav.tables ul { list-style: none; margin: 0; padding: 0; } nav.tables a { display: block; padding: 2px 8px; border-radius: 4px; }
nav.tables a.active { background: #e8eefc; font-weight: 600; }
.content { min-width: 0; }
form.filter { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin: 10px 0; padding: 8px 10px; background: #fff; border: 1px solid var(--line); border-radius: 6px; }
input, select, button { font: inherit; padding: 3px 6px; } button { cursor: pointer; }
input[type=number] { width: 70px; }
nav.pager { display: flex; gap: 14px; margin: 8px 0; } nav.pager .off { color: #c0c5cf; } nav.pager .shown { color: var(--muted); }
details.columns { margin: 8px 0; } details.columns > summary { cursor: pointer; color: var(--muted); }
ul.indexes { margin: 6px 0; padding-left: 18px; color: var(--muted); }
.error { margin: 10px 0; padding: 8px 12px; background: #fef3f2; border: 1px solid #fecdca; color: #b42318; border-radius: 6px; }
.tree .chain { display: flex; flex-direction: column; gap: 6px; }
.message { background: #fff; border: 1px solid var(--line); border-left: 4px solid #98a2b3; border-radius: 6px; padding: 6px 10px; max-width: 760px; }
.message.role-user { border-left-color: var(--accent); } .message.role-assistant { border-left-color: var(--ok); }
.message.role-system { border-left-color: #7a5af8; } .message.role-tool { border-left-color: var(--warn); }
.message header { font-size: 12px; color: var(--muted); } .message .role { font-weight: 600; color: var(--fg); }
.message .content { white-space: pre-wrap; margin: 4px 0; } .message .charge { font-size: 12px; color: var(--muted); border-top: 1px dashed var(--line); padding-top: 3px; margin-top: 4px; }
.branches { border: 1px dashed #c7d4f5; border-radius: 6px; padding: 6px; background: #f5f8ff; }
.branch-label { font-size: 12px; font-weight: 600; color: var(--accent); margin-bottom: 4px; }
.branch-row { display: flex; gap: 10px; align-items: flex-start; overflow-x: auto; } .branch { flex: 1 1 0; min-width: 280px; }
.branch-name { font-size: 11px; color: var(--muted); margin-bottom: 3px; }
.chart { position: relative; height: 320px; max-width: 1000px; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
meter { width: 90px; vertical-align: middle; }
`;

/** Submits the role picker when another role is chosen. */
const STUDIO_JS = `
document.addEventListener('DOMContentLoaded', () => {
  const picker = document.getElementById('role-picker');
  if (picker) picker.addEventListener('change', () => picker.form.submit());
});
`;

/** Draws the spend chart: one stacked bar per day, one dataset per model. */
const SPEND_JS = `
document.addEventListener('DOMContentLoaded', () => {
  const data = document.getElementById('spend-data');
  const canvas = document.getElementById('spend-chart');
  if (!data || !canvas || !window.Chart) return;
  const { days, series } = JSON.parse(data.textContent);
  const colors = ['#2457c5', '#067647', '#b54708', '#7a5af8', '#c11574', '#0e9384', '#667085', '#dc6803'];
  const chart = new Chart(canvas, {
    type: 'bar',
    data: {
      labels: days,
      datasets: series.map((s, i) => ({ label: s.label, data: s.costs.map(Number), backgroundColor: colors[i % colors.length] })),
    },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false,
      scales: { x: { stacked: true }, y: { stacked: true, title: { display: true, text: 'cost' } } },
      plugins: { tooltip: { mode: 'index' } },
    },
  });
  canvas.dataset.drawn = String(chart.data.datasets.length);
});
`;

let chart: string | undefined;

/** The static file at `/assets/NAME`, or undefined. Chart.js is read from disk once. */
export function asset(name: string): Asset | undefined {
  switch (name) {
    case 'studio.css':
      return { type: 'text/css; charset=utf-8', body: STUDIO_CSS };
    case 'studio.js':
      return { type: 'text/javascript; charset=utf-8', body: STUDIO_JS };
    case 'spend.js':
      return { type: 'text/javascript; charset=utf-8', body: SPEND_JS };
    case 'chart.umd.min.js':
      chart ??= chartJs();
      return { type: 'text/javascript; charset=utf-8', body: chart };
    default:
      return undefined;
  }
}
