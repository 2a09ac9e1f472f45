/**
 * The studio's routes (Hono): every request needs the token, only GET and HEAD exist, and each
 * page reads through read-only.ts — as the owner, or as a tenant through withTenant.
 */
import { Hono, type Context } from 'hono';
import { getCookie, setCookie } from 'hono/cookie';
import type { Kysely } from 'kysely';
import { appRole, type AppRole } from '../db/config.ts';
import { ConfigError, NotFoundError, PermissionError, TenantContextError, ValidationError, sqlState } from '../db/errors.ts';
import type { DB } from '../db/schema.generated.ts';
import { assertUuid } from '../db/tenant.ts';
import { asset } from './assets.ts';
import { ColumnPermissionError } from './errors.ts';
import { findTable, listTableNames, type TableInfo } from './catalog.ts';
import { findConversationHeader, listChargedUsage, listConversationSummaries, listTreeMessages } from './conversations.ts';
import { readOverview } from './overview.ts';
import { readOnly, readOnlyAsTenant } from './read-only.ts';
import { checkFilter, decodeKey, DEFAULT_PAGE_SIZE, fetchRows, type RowFilter, type RowsQuery } from './rows.ts';
import { listChunks, searchFromChunk } from './search.ts';
import { budgetStates, dayRange, spendByDay } from './spend.ts';
import { findTenantName, listTenants } from './tenants.ts';
import { conversationHeaderBody, conversationListBody, messageTree } from './render/conversation-page.ts';
import { html, type Html } from './render/html.ts';
import { errorBox, page, type Frame, type TenantFrame } from './render/layout.ts';
import { overviewBody } from './render/overview-page.ts';
import { chunkPicker, searchForm, searchResults } from './render/search-page.ts';
import { budgetTable, spendChart, spendForm } from './render/spend-page.ts';
import { tableBody } from './render/table-page.ts';
import { tenantHomeBody, tenantsBody } from './render/tenants-page.ts';
import { cookieName, TOKEN_PARAMETER, tokenSource } from './token.ts';

/** What the studio's routes need. */
export interface StudioAppOptions {
  /** The database, connected as the owner (the role the operator runs `database` as). */
  db: Kysely<DB>;
  /** The target line every page shows (describeTarget). */
  target: string;
  /** The access token of this run. */
  token: string;
}

/** Headers of every response: nothing is cached, framed, or loaded from anywhere but the studio. */
const SECURITY_HEADERS: Record<string, string> = {
  'cache-control': 'no-store',
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
};

/** The studio as a Hono app (server.ts listens with it). */
export function createStudioApp(options: StudioAppOptions): Hono {
  const { db, target, token } = options;
  const cookie = cookieName(token);
  const app = new Hono();

  app.use('*', async (c, next) => {
    await next();
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) c.res.headers.set(name, value);
  });

  app.use('*', async (c, next) => {
    const source = tokenSource(
      { query: c.req.query(TOKEN_PARAMETER), cookie: getCookie(c, cookie), authorization: c.req.header('authorization') },
      token,
    );
    if (source === undefined) {
      return c.text('401 Unauthorized: open the URL `database studio` printed (it carries the access token).\n', 401);
    }
    if (source === 'query' && (c.req.method === 'GET' || c.req.method === 'HEAD')) {
      // The token goes into an HttpOnly cookie and out of the address bar.
      setCookie(c, cookie, token, { httpOnly: true, sameSite: 'Strict', path: '/' });
      const url = new URL(c.req.url);
      url.searchParams.delete(TOKEN_PARAMETER);
      return c.redirect(`${url.pathname}${url.search}`, 303);
    }
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD') {
      return c.text('405 Method Not Allowed: the studio is read-only.\n', 405, { allow: 'GET, HEAD' });
    }
    return next();
  });

  const frame = (title: string, active: Frame['active'], tenant?: TenantFrame): Frame => ({ target, title, active, tenant });

  app.get('/assets/:name', (c) => {
    const file = asset(c.req.param('name'));
    if (file === undefined) return c.text('404 Not Found\n', 404);
    return c.body(file.body, 200, { 'content-type': file.type });
  });
  app.get('/favicon.ico', (c) => c.body(null, 204));

  app.get('/', async (c) => {
    const overview = await readOnly(db, (tx) => readOverview(tx));
    return c.html(page(frame('Overview', 'overview'), overviewBody(target, overview)));
  });

  app.get('/tables', (c) => c.redirect('/', 303));
  app.get('/tables/:table', async (c) => {
    const { tableNames, table } = await readOnly(db, async (tx) => ({
      tableNames: await listTableNames(tx),
      table: await findTable(tx, c.req.param('table')),
    }));
    if (table === undefined) throw new NotFoundError('table', c.req.param('table'));
    const { query, filter } = rowsQuery(c, table);
    const rows = await attempt(() => readOnly(db, (tx) => fetchRows(tx, table, query)));
    return c.html(
      page(frame(`Table ${table.name}`, 'overview'), tableBody({ tablesPath: '/tables', keep: {}, tableNames, table, rows, limit: query.limit, filter, showEstimate: true })),
      'error' in rows ? rows.status : 200,
    );
  });

  app.get('/tenants', async (c) => {
    const search = c.req.query('q') ?? '';
    const { tenants, more } = await readOnly(db, (tx) => listTenants(tx, search));
    return c.html(page(frame('Tenants', 'tenants'), tenantsBody(tenants, more, search)));
  });

  /** The tenant and role of a tenant page; NotFoundError when the tenant does not exist. */
  const tenantOfRequest = async (c: Context, section: TenantFrame['section']): Promise<TenantFrame> => {
    const id = c.req.param('tenant') ?? '';
    assertUuid('tenant', id);
    const role: AppRole = appRole(c.req.query('role') ?? 'app_user', 'role');
    const name = await readOnly(db, (tx) => findTenantName(tx, id));
    if (name === undefined) throw new NotFoundError('tenant', id);
    return { id: id.toLowerCase(), name, role, section, path: c.req.path, query: c.req.query() };
  };
  const asTenant = <T>(tenant: TenantFrame, fn: Parameters<typeof readOnlyAsTenant<T>>[3]) => readOnlyAsTenant(db, tenant.id, tenant.role, fn);

  app.get('/tenants/:tenant', async (c) => {
    const tenant = await tenantOfRequest(c, 'tables');
    const tableNames = await asTenant(tenant, (tx) => listTableNames(tx));
    return c.html(page(frame(`Tenant ${tenant.name}`, 'tenants', tenant), tenantHomeBody(tenant, tableNames)));
  });

  app.get('/tenants/:tenant/tables', async (c) => {
    const tenant = await tenantOfRequest(c, 'tables');
    return c.redirect(`/tenants/${tenant.id}?role=${tenant.role}`, 303);
  });
  app.get('/tenants/:tenant/tables/:table', async (c) => {
    const tenant = await tenantOfRequest(c, 'tables');
    const { tableNames, table } = await asTenant(tenant, async (tx) => ({
      tableNames: await listTableNames(tx),
      table: await findTable(tx, c.req.param('table')),
    }));
    if (table === undefined) throw new NotFoundError('table', c.req.param('table'));
    const { query, filter } = rowsQuery(c, table);
    const rows = await attempt(() => asTenant(tenant, (tx) => fetchRows(tx, table, query)));
    const view = { tablesPath: `/tenants/${tenant.id}/tables`, keep: { role: tenant.role }, tableNames, table, rows, limit: query.limit, filter, showEstimate: false };
    return c.html(page(frame(`Table ${table.name}`, 'tenants', tenant), tableBody(view)), 'error' in rows ? rows.status : 200);
  });

  app.get('/tenants/:tenant/conversations', async (c) => {
    const tenant = await tenantOfRequest(c, 'conversations');
    const list = await attempt(() => asTenant(tenant, (tx) => listConversationSummaries(tx, tenant.id)));
    return c.html(page(frame('Conversations', 'tenants', tenant), 'error' in list ? list.error : conversationListBody(tenant, list)));
  });

  app.get('/tenants/:tenant/conversations/:conversation', async (c) => {
    const tenant = await tenantOfRequest(c, 'conversations');
    const conversationId = c.req.param('conversation');
    assertUuid('conversation', conversationId);
    const header = await attempt(() => asTenant(tenant, (tx) => findConversationHeader(tx, tenant.id, conversationId)));
    if (header === undefined) throw new NotFoundError('conversation', conversationId);
    if ('error' in header) return c.html(page(frame('Conversation', 'tenants', tenant), header.error), header.status);
    const usage = await attempt(() => asTenant(tenant, (tx) => listChargedUsage(tx, tenant.id, conversationId)));
    const tree = await attempt(() => asTenant(tenant, (tx) => listTreeMessages(tx, tenant.id, conversationId)));
    const body = html`${conversationHeaderBody(header, 'error' in usage ? usage.error : usage)}
      <h2>Messages</h2>
      ${'error' in tree ? tree.error : messageTree(tree.messages, 'error' in usage ? [] : usage, tree.more)}`;
    return c.html(page(frame(header.title === '' ? '(untitled conversation)' : header.title, 'tenants', tenant), body));
  });

  app.get('/tenants/:tenant/spend', async (c) => {
    const tenant = await tenantOfRequest(c, 'spend');
    const range = dayRange(c.req.query('from'), c.req.query('to'));
    const spend = await attempt(() => asTenant(tenant, (tx) => spendByDay(tx, range)));
    const budgets = await attempt(() => asTenant(tenant, (tx) => budgetStates(tx, tenant.id, range)));
    const body = html`${spendForm(tenant, range)}
      <h2>Cost per day by model <span class="hint">costSummary (UTC days)</span></h2>
      ${'error' in spend ? spend.error : spendChart(spend)}
      <h2>Budgets</h2>
      ${'error' in budgets ? budgets.error : budgetTable(budgets.users, budgets.more)}`;
    return c.html(page(frame('Spend', 'tenants', tenant), body));
  });

  app.get('/tenants/:tenant/search', async (c) => {
    const tenant = await tenantOfRequest(c, 'search');
    const chunkId = c.req.query('chunk') ?? '';
    const query = c.req.query('q') ?? '';
    const contains = c.req.query('contains') ?? '';
    if (chunkId !== '') assertUuid('chunk', chunkId);
    let results: Html | string = '';
    if (chunkId !== '') {
      const found = await attempt(() => asTenant(tenant, (tx) => searchFromChunk(tx, tenant.id, chunkId, query)));
      if (found === undefined) results = errorBox(new NotFoundError('chunk', chunkId));
      else results = 'error' in found ? found.error : searchResults(found, query);
    }
    const chunks = await attempt(() => asTenant(tenant, (tx) => listChunks(tx, tenant.id, contains)));
    const body = html`${searchForm(tenant, chunkId, query, contains)}
      ${results}
      <h2>Chunks <span class="hint">newest first</span></h2>
      ${'error' in chunks ? chunks.error : chunkPicker(tenant, chunks, query, contains)}`;
    return c.html(page(frame('Search', 'tenants', tenant), body));
  });

  app.notFound((c) => c.html(page(frame('Not found', 'overview'), errorBox(new NotFoundError('page', c.req.path))), 404));
  app.onError((error, c) => {
    const status = statusOf(error);
    if (status === 500) console.error(`studio: ${c.req.method} ${c.req.path}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    return c.html(page(frame(status === 404 ? 'Not found' : 'Cannot show this page', 'overview'), errorBox(error)), status);
  });
  return app;
}

/** The table browser's parameters, checked against the table. */
function rowsQuery(c: Context, table: TableInfo): { query: RowsQuery; filter: RowFilter | undefined } {
  const width = table.primaryKey.length > 0 ? table.primaryKey.length : 1;
  const limitText = c.req.query('limit');
  const limit = limitText === undefined || limitText === '' ? DEFAULT_PAGE_SIZE : Number(limitText);
  const column = c.req.query('column');
  const filter =
    column === undefined || column === '' ? undefined : checkFilter(table, { column, op: c.req.query('op') ?? 'eq', value: c.req.query('value') ?? '' });
  const after = c.req.query('after');
  const before = c.req.query('before');
  if (after !== undefined && before !== undefined) throw new ValidationError('before', 'give after or before, not both');
  return {
    query: {
      limit,
      after: after === undefined ? undefined : decodeKey('after', after, width),
      before: before === undefined ? undefined : decodeKey('before', before, width),
      filter,
    },
    filter,
  };
}

/** Runs one section's read; a failure becomes the error box shown in its place (and the page's status). */
async function attempt<T>(read: () => Promise<T>): Promise<T | { error: Html; status: 400 | 403 | 404 | 500 }> {
  try {
    return await read();
  } catch (error) {
    const status = statusOf(error);
    if (status === 500) throw error;
    return { error: errorBox(error), status };
  }
}

/** The HTTP status an error stands for. */
function statusOf(error: unknown): 400 | 403 | 404 | 500 {
  if (error instanceof NotFoundError) return 404;
  if (error instanceof PermissionError || error instanceof ColumnPermissionError) return 403;
  if (error instanceof ValidationError || error instanceof ConfigError || error instanceof TenantContextError) return 400;
  const code = sqlState(error);
  if (code === '42501') return 403; // insufficient privilege: the role's grants say no
  if (code !== undefined && (code.startsWith('22') || code === '42883')) return 400; // a filter value the column's type refuses
  if (code === '57014') return 400; // statement_timeout (DB_STATEMENT_TIMEOUT_MS): a filter that scans a big table
  return 500;
}
