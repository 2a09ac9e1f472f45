/** The overview page: target, versions, migrations, tables, roles. */
import type { Overview } from '../overview.ts';
import { bytes, count, href, html, timestamp, type Html } from './html.ts';

/** The overview's body. */
export function overviewBody(target: string, overview: Overview): Html {
  const applied = overview.migrations.filter((m) => m.state === 'applied').length;
  const pending = overview.migrations.filter((m) => m.state === 'pending').length;
  const broken = overview.migrations.filter((m) => m.state === 'changed' || m.state === 'missing');
  const tableNames = overview.tables.map((t) => t.name);
  return html`
<section class="facts">
  <dl>
    <dt>target</dt><dd id="target">${target}</dd>
    <dt>PostgreSQL</dt><dd id="server-version">${overview.serverVersion}</dd>
    <dt>pgvector</dt><dd id="pgvector-version">${overview.pgvector ?? 'not installed'}</dd>
    <dt>connected as</dt><dd>${overview.currentUser}</dd>
    <dt>migrations</dt><dd id="migration-counts">${applied} applied, ${pending} pending${broken.length > 0 ? `, ${broken.length} changed or missing` : ''}</dd>
  </dl>
</section>

<h2>Tables</h2>
<table class="grid" id="tables">
  <thead><tr><th>table</th><th class="num">rows</th><th class="num">size</th><th>row-level security</th><th class="num">policies</th></tr></thead>
  <tbody>
  ${overview.tables.map(
    (t) => html`<tr data-table="${t.name}">
      <td><a href="${href(`/tables/${t.name}`)}">${t.name}</a></td>
      <td class="num">${t.rows === null ? html`<span class="null" title="big and never analyzed">?</span>` : t.exact ? count(t.rows) : html`<span title="planner estimate (a big table is not counted)">≈ ${count(t.rows)}</span>`}</td>
      <td class="num">${bytes(t.bytes)}</td>
      <td class="${t.rlsForced ? 'ok' : t.rlsEnabled ? 'warn' : 'off'}">${t.rlsForced ? 'forced' : t.rlsEnabled ? 'enabled, not forced' : 'off'}</td>
      <td class="num">${t.policies}</td>
    </tr>`,
  )}
  </tbody>
</table>

<h2>Migrations</h2>
<table class="grid" id="migrations">
  <thead><tr><th>migration</th><th>state</th><th>applied at</th><th class="num">took</th></tr></thead>
  <tbody>
  ${overview.migrations.map(
    (m) => html`<tr class="state-${m.state}">
      <td><code>${m.name}</code></td>
      <td>${m.state}${m.downFileMissing ? ' (no down file)' : ''}</td>
      <td>${m.appliedAt === undefined ? '' : timestamp(new Date(m.appliedAt))}</td>
      <td class="num">${m.durationMs === undefined ? '' : `${count(Math.round(Number(m.durationMs)))} ms`}</td>
    </tr>`,
  )}
  </tbody>
</table>

<h2>Roles</h2>
<p class="hint">S select, I insert, U update, D delete (lower case: on some columns only); what each role holds on each table, its own grants and those it inherits.</p>
<div class="scroll">
<table class="grid" id="roles">
  <thead><tr><th>role</th><th>attributes</th>${tableNames.map((t) => html`<th class="rot"><span>${t}</span></th>`)}</tr></thead>
  <tbody>
  ${overview.roles.map(
    (r) => html`<tr data-role="${r.name}">
      <th>${r.name}</th>
      <td>${r.exists ? attributes(r) : html`<span class="warn">missing (migrations not applied)</span>`}</td>
      ${tableNames.map((t) => html`<td class="priv">${r.privileges[t] ?? ''}</td>`)}
    </tr>`,
  )}
  </tbody>
</table>
</div>
<h3>Package functions per service role</h3>
<table class="grid" id="role-functions">
  <tbody>
  ${overview.roles
    .filter((r) => r.functions.length > 0)
    .map((r) => html`<tr><th>${r.name}</th><td>${r.functions.map((f) => html`<code>${f}</code> `)}</td></tr>`)}
  </tbody>
</table>`;
}

function attributes(r: Overview['roles'][number]): string {
  const flags = [r.login ? 'login' : 'nologin', r.superuser ? 'superuser' : '', r.bypassRls ? 'bypassrls' : ''].filter((f) => f !== '');
  return `${flags.join(', ')}${r.memberOf.length > 0 ? `; member of ${r.memberOf.join(', ')}` : ''}`;
}
