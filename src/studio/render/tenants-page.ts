/** The tenant picker and a tenant's home (its tables, as the chosen role sees them). */
import type { TenantSummary } from '../tenants.ts';
import { tenantHref } from './layout.ts';
import { count, href, html, type Html } from './html.ts';
import { tableList } from './table-page.ts';
import type { AppRole } from '../../db/config.ts';

/** The picker: tenants by name, with a search box. */
export function tenantsBody(tenants: TenantSummary[], more: boolean, search: string): Html {
  return html`
<form method="get" action="/tenants" class="filter">
  <label>name or slug contains <input type="text" name="q" value="${search}"></label>
  <button type="submit">search</button>
</form>
<p class="hint">Open a tenant to browse its data through the package's own tenant transaction, as a service role of your choice.</p>
<table class="grid" id="tenants">
  <thead><tr><th>tenant</th><th>slug</th><th>plan</th><th class="num">users</th><th>id</th></tr></thead>
  <tbody>
  ${tenants.map(
    (t) => html`<tr data-tenant="${t.id}">
      <td><a href="${href(`/tenants/${t.id}`)}">${t.name}</a></td>
      <td>${t.slug}</td><td>${t.plan}</td><td class="num">${count(t.users)}</td><td><code>${t.id}</code></td>
    </tr>`,
  )}
  </tbody>
</table>
${more ? html`<p class="hint">More tenants match: narrow the search.</p>` : ''}`;
}

/** A tenant's home: the tables to browse and the other views. */
export function tenantHomeBody(tenant: { id: string; role: AppRole }, tableNames: string[]): Html {
  return html`<div class="browser">
${tableList(`/tenants/${tenant.id}/tables`, { role: tenant.role }, tableNames)}
<div class="content">
  <p>Pick a table on the left: its rows are read through <code>withTenant(db, tenantId, fn, { role: '${tenant.role}' })</code>,
  so row-level security and the role's grants show exactly what that service sees.</p>
  <ul>
    <li><a href="${tenantHref(tenant, '/conversations')}">Conversations</a>: each as its message tree, with the usage charged for it</li>
    <li><a href="${tenantHref(tenant, '/spend')}">Spend</a>: cost per day by model, and the users' budgets</li>
    <li><a href="${tenantHref(tenant, '/search')}">Search</a>: a chunk's nearest neighbours and the hybrid result for a text query</li>
  </ul>
</div>
</div>`;
}
