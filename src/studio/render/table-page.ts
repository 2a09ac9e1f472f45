/** The table browser (as the owner, or as a tenant): columns, filter form, one keyset page of rows. */
import type { TableInfo } from '../catalog.ts';
import { DEFAULT_PAGE_SIZE, encodeKey, FILTER_OPS, MAX_PAGE_SIZE, type RowFilter, type RowPage } from '../rows.ts';
import { renderCell } from './cells.ts';
import { count, href, html, type Html } from './html.ts';

/** What the table browser shows. */
export interface TableView {
  /** Path of a table under this browser, without the name: `/tables` or `/tenants/ID/tables`. */
  tablesPath: string;
  /** Query parameters every link keeps (the tenant pages' role). */
  keep: Record<string, string>;
  tableNames: string[];
  table: TableInfo;
  /** The rows, or the error that prevented reading them (e.g. the role has no SELECT). */
  rows: RowPage | { error: Html };
  limit: number;
  filter: RowFilter | undefined;
  /** Show the planner's row estimate (the owner's view: it counts every tenant). */
  showEstimate: boolean;
}

const OP_LABELS: Record<(typeof FILTER_OPS)[number], string> = {
  eq: '=',
  contains: 'contains',
  null: 'is null',
  notnull: 'is not null',
};

/** The side list of tables, linking into the same browser. */
export function tableList(tablesPath: string, keep: Record<string, string>, names: string[], current?: string): Html {
  return html`<nav class="tables" aria-label="tables"><ul>
    ${names.map((n) => html`<li><a href="${href(`${tablesPath}/${n}`, keep)}" class="${n === current ? 'active' : ''}">${n}</a></li>`)}
  </ul></nav>`;
}

/** The table browser's body. */
export function tableBody(view: TableView): Html {
  const { table } = view;
  const base = `${view.tablesPath}/${table.name}`;
  const filterQuery = view.filter === undefined ? {} : { column: view.filter.column, op: view.filter.op, value: view.filter.value };
  const link = (extra: Record<string, string | number | undefined>) => href(base, { ...view.keep, ...filterQuery, limit: view.limit === DEFAULT_PAGE_SIZE ? undefined : view.limit, ...extra });
  return html`<div class="browser">
${tableList(view.tablesPath, view.keep, view.tableNames, table.name)}
<div class="content">
  ${table.comment === null ? '' : html`<p class="comment">${table.comment}</p>`}
  <p class="meta">
    ${view.showEstimate ? html`<span id="estimate">${table.estimatedRows === null ? 'never analyzed' : `≈ ${count(Math.round(table.estimatedRows))} rows (planner estimate)`}</span> ·` : ''}
    row-level security ${table.rlsForced ? 'forced' : table.rlsEnabled ? 'enabled' : 'off'} ·
    ordered by ${table.primaryKey.length > 0 ? html`primary key <code>${table.primaryKey.join(', ')}</code>` : html`<code>ctid</code> (no primary key)`}
  </p>
  <details class="columns" open>
    <summary>${table.columns.length} columns, ${table.indexes.length} indexes</summary>
    <table class="grid" id="columns">
      <thead><tr><th>column</th><th>type</th><th>null</th><th>default</th><th>comment</th></tr></thead>
      <tbody>
      ${table.columns.map(
        (c) => html`<tr data-column="${c.name}">
          <td><code>${c.name}</code>${table.primaryKey.includes(c.name) ? html` <span class="badge">pk</span>` : ''}</td>
          <td><code>${c.type}</code></td>
          <td>${c.notNull ? 'not null' : ''}</td>
          <td>${c.default === null ? '' : html`<code>${c.default}</code>`}</td>
          <td class="comment">${c.comment ?? ''}</td>
        </tr>`,
      )}
      </tbody>
    </table>
    <ul class="indexes">${table.indexes.map((i) => html`<li><code>${i.definition}</code></li>`)}</ul>
  </details>

  <form method="get" action="${base}" class="filter" id="filter">
    ${Object.entries(view.keep).map(([n, v]) => html`<input type="hidden" name="${n}" value="${v}">`)}
    <label>filter <select name="column">
      ${table.columns.map((c) => html`<option value="${c.name}" ${view.filter?.column === c.name ? html`selected` : ''}>${c.name}</option>`)}
    </select></label>
    <select name="op" aria-label="operator">
      ${FILTER_OPS.map((op) => html`<option value="${op}" ${(view.filter?.op ?? 'eq') === op ? html`selected` : ''}>${OP_LABELS[op]}</option>`)}
    </select>
    <input type="text" name="value" value="${view.filter?.value ?? ''}" placeholder="value" aria-label="value">
    <label>rows <input type="number" name="limit" min="1" max="${MAX_PAGE_SIZE}" value="${view.limit}"></label>
    <button type="submit">apply</button>
    ${view.filter === undefined ? '' : html`<a href="${href(base, view.keep)}">clear</a>`}
  </form>

  ${'error' in view.rows ? view.rows.error : rowsGrid(view, view.rows, link)}
</div>
</div>`;
}

function rowsGrid(view: TableView, page: RowPage, link: (extra: Record<string, string | number | undefined>) => string): Html {
  const nav = html`<nav class="pager">
    <a href="${link({})}">first</a>
    ${page.hasPrevious && page.firstKey !== null ? html`<a href="${link({ before: encodeKey(page.firstKey) })}" rel="prev">← previous</a>` : html`<span class="off">← previous</span>`}
    ${page.hasNext && page.lastKey !== null ? html`<a href="${link({ after: encodeKey(page.lastKey) })}" rel="next">next →</a>` : html`<span class="off">next →</span>`}
    <span class="shown">${page.rows.length === 0 ? 'no rows' : `${page.rows.length} rows`}</span>
  </nav>`;
  return html`${nav}
  <div class="scroll">
  <table class="grid rows" id="rows">
    <thead><tr>${view.table.columns.map((c) => html`<th title="${c.type}">${c.name}</th>`)}</tr></thead>
    <tbody>
    ${page.rows.map((r) => html`<tr data-key="${r.key.join(',')}">${r.cells.map((cell, i) => html`<td data-column="${view.table.columns[i]!.name}">${renderCell(cell)}</td>`)}</tr>`)}
    </tbody>
  </table>
  </div>
  ${nav}`;
}
