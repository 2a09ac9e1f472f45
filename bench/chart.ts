/**
 * A line chart as a self-contained SVG string, written by hand (no dependency): log-scaled x and
 * y axes with decade ticks (and 2 and 5 between them), one coloured line with point markers per
 * series, a legend to the right. Used by `--growth` for p50 against size.
 */

/** One line of the chart. */
export interface Series {
  label: string;
  points: { x: number; y: number }[];
  /** Drawn dashed (e.g. a call measured against another size axis). */
  dashed?: boolean;
}

const COLOURS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Tick values (1, 2, 5 × powers of ten) within [lo, hi]. */
function logTicks(lo: number, hi: number): number[] {
  const ticks: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e += 1) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) ticks.push(v);
    }
  }
  return ticks;
}

/** 1,000 → "1k", 1,000,000 → "1M", 0.5 → "0.5". */
export function shortNumber(v: number): string {
  if (v >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toPrecision(3)}k`;
  return `${+v.toPrecision(3)}`;
}

/** The SVG text of a log–log line chart of `series`. */
export function logLogChart(options: { title: string; subtitle?: string; xLabel: string; yLabel: string; series: Series[]; width?: number; height?: number }): string {
  const width = options.width ?? 960;
  const height = options.height ?? 540;
  const margin = { left: 70, right: 330, top: 62, bottom: 58 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const all = options.series.flatMap((s) => s.points).filter((p) => p.x > 0 && p.y > 0 && Number.isFinite(p.y));
  const xs = all.map((p) => p.x);
  const ys = all.map((p) => p.y);
  // The axes span whole 1-2-5 steps around the data.
  const down = (v: number) => {
    const e = 10 ** Math.floor(Math.log10(v));
    return [5, 2, 1].map((m) => m * e).find((t) => t <= v) ?? e;
  };
  const up = (v: number) => {
    const e = 10 ** Math.floor(Math.log10(v));
    return [1, 2, 5, 10].map((m) => m * e).find((t) => t >= v) ?? 10 * e;
  };
  const x0 = down(Math.min(...xs));
  const x1 = up(Math.max(...xs));
  const y0 = down(Math.min(...ys));
  const y1 = up(Math.max(...ys));
  const px = (x: number) => margin.left + ((Math.log10(x) - Math.log10(x0)) / (Math.log10(x1) - Math.log10(x0))) * plotW;
  const py = (y: number) => margin.top + plotH - ((Math.log10(y) - Math.log10(y0)) / (Math.log10(y1) - Math.log10(y0))) * plotH;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${margin.left}" y="24" font-size="16" font-weight="bold">${escape(options.title)}</text>`,
  );
  if (options.subtitle !== undefined) out.push(`<text x="${margin.left}" y="44" fill="#555">${escape(options.subtitle)}</text>`);
  for (const t of logTicks(x0, x1)) {
    const x = px(t).toFixed(1);
    out.push(`<line x1="${x}" y1="${margin.top}" x2="${x}" y2="${margin.top + plotH}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${x}" y="${margin.top + plotH + 18}" text-anchor="middle">${shortNumber(t)}</text>`);
  }
  for (const t of logTicks(y0, y1)) {
    const y = py(t).toFixed(1);
    out.push(`<line x1="${margin.left}" y1="${y}" x2="${margin.left + plotW}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${margin.left - 8}" y="${(Number(y) + 4).toFixed(1)}" text-anchor="end">${shortNumber(t)}</text>`);
  }
  out.push(`<rect x="${margin.left}" y="${margin.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#888"/>`);
  out.push(`<text x="${margin.left + plotW / 2}" y="${height - 14}" text-anchor="middle">${escape(options.xLabel)}</text>`);
  out.push(
    `<text x="18" y="${margin.top + plotH / 2}" text-anchor="middle" transform="rotate(-90 18 ${margin.top + plotH / 2})">${escape(options.yLabel)}</text>`,
  );
  options.series.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length]!;
    const points = s.points.filter((p) => p.x > 0 && p.y > 0 && Number.isFinite(p.y));
    const path = points.map((p, j) => `${j === 0 ? 'M' : 'L'}${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(' ');
    out.push(`<path d="${path}" fill="none" stroke="${colour}" stroke-width="2"${s.dashed === true ? ' stroke-dasharray="6 4"' : ''}/>`);
    for (const p of points) out.push(`<circle cx="${px(p.x).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="3.5" fill="${colour}"/>`);
    const ly = margin.top + 10 + i * 22;
    const lx = margin.left + plotW + 16;
    out.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 26}" y2="${ly}" stroke="${colour}" stroke-width="2"${s.dashed === true ? ' stroke-dasharray="6 4"' : ''}/>`);
    out.push(`<text x="${lx + 32}" y="${ly + 4}">${escape(s.label)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
