/** How the table browser shows one value: JSON indented, vectors as dimension + norm + first values, long text cut. */
import type { Cell } from '../rows.ts';
import { count, html, type Html } from './html.ts';

/** Text longer than this is shown folded (the first part, then the rest on click). */
const FOLD_CHARS = 120;
/** Text this short (timestamps, numbers, names) is kept on one line; UUIDs (36) may wrap. */
const SHORT_CHARS = 30;

/** One cell's HTML. */
export function renderCell(cell: Cell): Html {
  switch (cell.kind) {
    case 'null':
      return html`<span class="null">null</span>`;
    case 'denied':
      return html`<span class="denied" title="this role has no SELECT on this column">no privilege</span>`;
    case 'secret':
      return html`<span class="secret" title="secret: not shown">hidden, ${count(cell.length)} chars</span>`;
    case 'bytea':
      return html`<span class="bytea">${count(cell.bytes)} bytes <code>${cell.headHex}${cell.bytes > 16 ? '…' : ''}</code></span>`;
    case 'vector':
      return html`<span class="vector" title="vector: dimensions, L2 norm, first values"><span class="dims">${cell.dimensions}-d</span>
        <span class="norm">‖v‖ ${cell.norm.toPrecision(4)}</span>
        <code>[${cell.head.map((x) => x.toPrecision(3)).join(', ')}${cell.dimensions > cell.head.length ? ', …' : ''}]</code></span>`;
    case 'json':
      return renderJson(cell.text, cell.length);
    case 'text':
      return renderText(cell.text, cell.length);
  }
}

function renderJson(text: string, length: number): Html {
  if (length > text.length) return renderText(text, length);
  let pretty: string;
  try {
    pretty = JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return renderText(text, length);
  }
  if (pretty.length <= FOLD_CHARS && !pretty.includes('\n')) return html`<code class="json">${pretty}</code>`;
  const oneLine = text.length > FOLD_CHARS ? `${text.slice(0, FOLD_CHARS)}…` : text;
  return html`<details class="json"><summary><code>${oneLine}</code></summary><pre>${pretty}</pre></details>`;
}

function renderText(text: string, length: number): Html {
  const cut = length > text.length ? html` <span class="more">(${count(length)} chars, first ${count(text.length)} shown)</span>` : '';
  if (text.length <= SHORT_CHARS) return html`<span class="text short">${text}</span>${cut}`;
  if (text.length <= FOLD_CHARS) return html`<span class="text">${text}</span>${cut}`;
  return html`<details class="text"><summary>${text.slice(0, FOLD_CHARS)}…</summary><pre>${text}</pre>${cut}</details>`;
}
