/** The frame of every studio page: header with the target, navigation, and for tenant pages the tenant bar with its role picker. */
import { APP_ROLES, type AppRole } from '../../db/config.ts';
import { href, html, type Html } from './html.ts';

/** The tenant a tenant page shows, and as which role. */
export interface TenantFrame {
  id: string;
  name: string | undefined;
  role: AppRole;
  section: 'tables' | 'conversations' | 'spend' | 'search';
  /** The page's path and query, to switch the role on the same page. */
  path: string;
  query: Record<string, string>;
}

/** What the frame needs to know about the page. */
export interface Frame {
  target: string;
  title: string;
  active: 'overview' | 'tenants';
  tenant?: TenantFrame | undefined;
}

/** Links of a tenant page keep the role: `/tenants/ID/…?role=…`. */
export function tenantHref(tenant: { id: string; role: AppRole }, rest: string, query: Record<string, string | number | undefined | null> = {}): string {
  return href(`/tenants/${tenant.id}${rest}`, { ...query, role: tenant.role });
}

/** A whole page. */
export function page(frame: Frame, body: Html): Html {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${frame.title} · database studio</title>
<link rel="stylesheet" href="/assets/studio.css">
<script src="/assets/studio.js" defer></script>
</head>
<body>
<header class="top">
  <a class="brand" href="/">database studio</a>
  <nav>
    <a href="/" class="${frame.active === 'overview' ? 'active' : ''}">Overview</a>
    <a href="/tenants" class="${frame.active === 'tenants' ? 'active' : ''}">Tenants</a>
  </nav>
  <span class="target" title="the database this studio reads">${frame.target}</span>
  <span class="badge readonly" title="every transaction of the studio is read-only">read-only</span>
</header>
${frame.tenant === undefined ? '' : tenantBar(frame.tenant)}
<main>
<h1>${frame.title}</h1>
${body}
</main>
</body>
</html>`;
}

function tenantBar(tenant: TenantFrame): Html {
  const link = (section: TenantFrame['section'], label: string, rest: string) =>
    html`<a href="${tenantHref(tenant, rest)}" class="${tenant.section === section ? 'active' : ''}">${label}</a>`;
  const hidden = Object.entries(tenant.query)
    .filter(([name]) => name !== 'role')
    .map(([name, value]) => html`<input type="hidden" name="${name}" value="${value}">`);
  return html`<div class="tenantbar">
  <span class="who">as tenant <strong>${tenant.name ?? tenant.id}</strong> <code>${tenant.id}</code></span>
  <nav>
    ${link('tables', 'Tables', '')}
    ${link('conversations', 'Conversations', '/conversations')}
    ${link('spend', 'Spend', '/spend')}
    ${link('search', 'Search', '/search')}
  </nav>
  <form method="get" action="${tenant.path}" class="rolepicker">
    ${hidden}
    <label>role <select name="role" id="role-picker">
      ${APP_ROLES.map((r) => html`<option value="${r}" ${r === tenant.role ? html`selected` : ''}>${r}</option>`)}
    </select></label>
    <button type="submit">view as</button>
  </form>
  <span class="note">through withTenant in a read-only transaction: what this role's code sees of this tenant</span>
</div>`;
}

/** A section whose data could not be read (e.g. the role has no grant): the error in place of the data. */
export function errorBox(error: unknown): Html {
  const message = error instanceof Error ? error.message : String(error);
  const name = error instanceof Error ? error.name : 'Error';
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return html`<div class="error" role="alert"><strong>${name}${typeof code === 'string' ? ` ${code}` : ''}</strong>: ${message}</div>`;
}
