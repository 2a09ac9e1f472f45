/**
 * `database studio` in a real browser: every page opened on a seeded database with two tenants,
 * clicked through, and what it shows checked — as the owner, and as each tenant through
 * withTenant, where tenant A's pages must show none of tenant B's rows. Screenshots go to
 * test-artifacts/studio/.
 */
import { sql } from 'kysely';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeTarget } from '../../src/db/target.ts';
import { startStudio, type RunningStudio } from '../../src/studio/server.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';
import { hasChromium, launchChromium, screenshotPath, SKIP_REASON } from './browser.ts';
import { buildStudioWorld, type StudioWorld } from './studio-world.ts';

let t: TestDb;
let world: StudioWorld;
let studio: RunningStudio;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let before: string;
/** Errors the pages logged (CSP violations, script errors): there must be none. */
const consoleErrors: string[] = [];

/** Row counts and a digest of every public table, as the owner: the studio must leave them as they were. */
async function snapshot(): Promise<string> {
  const tables = ['tenants', 'users', 'conversations', 'messages', 'usage', 'vectors', 'resources', 'models', 'prompts'];
  const parts: string[] = [];
  for (const table of tables) {
    const { rows } = await sql<{ n: number; digest: string | null }>`
      select count(*)::int as n, md5(string_agg(t::text, ',' order by t::text)) as digest from ${sql.table(table)} t`.execute(t.db);
    parts.push(`${table}:${rows[0]!.n}:${rows[0]!.digest}`);
  }
  return parts.join(' ');
}

/** The visible text of the page's main part. */
const mainText = () => page.locator('main').innerText();

describe.skipIf(!hasChromium)(hasChromium ? 'database studio in chromium' : `database studio in chromium — ${SKIP_REASON}`, () => {
  beforeAll(async () => {
    t = await openTestDb();
    world = await buildStudioWorld(t.db);
    before = await snapshot();
    studio = await startStudio({ db: t.db, target: describeTarget(t.config), port: 0 });
    browser = await launchChromium();
    context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    page = await context.newPage();
    page.on('console', (m) => {
      // A page answered 400/403/404 on purpose is logged as a failed load: the responses below judge loads.
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(m.text());
    });
    page.on('response', (r) => {
      if (r.url().includes('/assets/') && r.status() !== 200) consoleErrors.push(`${r.url()}: ${r.status()}`);
    });
    page.on('pageerror', (e) => consoleErrors.push(e.message));
  });
  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await studio?.close();
    await t?.close();
  });

  it('refuses every request without the token with 401, in the browser too', async () => {
    const anonymous = await browser.newContext();
    try {
      const anon = await anonymous.newPage();
      for (const path of ['/', '/tables/users', `/tenants/${world.a.tenantId}/tables/users`, '/assets/studio.css', '/nope']) {
        const response = await anon.goto(`${studio.origin}${path}`);
        expect(response?.status(), path).toBe(401);
        expect(await anon.locator('body').innerText()).toContain('401 Unauthorized');
      }
      expect((await anon.goto(`${studio.origin}/?token=${studio.token.slice(0, -1)}x`))?.status()).toBe(401);
    } finally {
      await anonymous.close();
    }
    const wrongBearer = await fetch(`${studio.origin}/`, { headers: { authorization: 'Bearer not-the-token' } });
    expect(wrongBearer.status).toBe(401);
    const forgedCookie = await fetch(`${studio.origin}/`, { headers: { cookie: 'studio_000000000000=guess' } });
    expect(forgedCookie.status).toBe(401);
    // With the token, nothing but GET and HEAD.
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
      const response = await fetch(`${studio.origin}/tables/users`, { method, headers: { authorization: `Bearer ${studio.token}` } });
      expect(response.status, method).toBe(405);
    }
    expect((await fetch(`${studio.origin}/tables/users`, { method: 'POST' })).status).toBe(401);
  });

  it('listens on loopback only: 127.0.0.1 answers, another address of this machine does not', async () => {
    expect(studio.host).toBe('127.0.0.1');
    expect(new URL(studio.url).hostname).toBe('127.0.0.1');
    const { connect } = await import('node:net');
    const attempt = (host: string) =>
      new Promise<string>((resolve) => {
        const socket = connect({ host, port: studio.port });
        socket.once('connect', () => (socket.destroy(), resolve('connected')));
        socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      });
    expect(await attempt('127.0.0.1')).toBe('connected');
    expect(await attempt('127.0.0.2')).toBe('ECONNREFUSED');
  });

  it('overview: target, versions, migrations, tables with counts and RLS, roles', async () => {
    const response = await page.goto(studio.url);
    expect(response?.status()).toBe(200);
    // The token moved into a cookie: the address bar no longer shows it.
    expect(page.url()).toBe(`${studio.origin}/`);
    expect(await page.locator('#target').innerText()).toBe(describeTarget(t.config));
    const { rows } = await sql<{ v: string; pgv: string }>`
      select current_setting('server_version') as v, (select extversion from pg_extension where extname = 'vector') as pgv`.execute(t.db);
    expect(await page.locator('#server-version').innerText()).toBe(rows[0]!.v);
    expect(await page.locator('#pgvector-version').innerText()).toBe(rows[0]!.pgv);
    expect(await page.locator('#migration-counts').innerText()).toMatch(/^\d+ applied, 0 pending$/);
    const row = (table: string) => page.locator(`#tables tr[data-table="${table}"] td`);
    expect(await row('users').allInnerTexts()).toEqual(['users', '6', expect.stringMatching(/B$/), 'forced', '4']);
    expect((await row('tenants').allInnerTexts())[1]).toBe('2');
    expect((await row('messages').allInnerTexts())[1]).toBe('14');
    expect((await row('usage').allInnerTexts())[1]).toBe(String(world.a.usageRows + world.b.usageRows));
    expect((await row('vectors').allInnerTexts())[1]).toBe('24');
    // Roles: app_gateway may read only some columns of messages (s), insert usage, not touch conversations.
    const roleCell = async (role: string, table: string) => {
      const headers = await page.locator('#roles thead th').allInnerTexts();
      return page.locator(`#roles tr[data-role="${role}"] > *`).nth(headers.indexOf(table)).innerText();
    };
    expect(await roleCell('app_gateway', 'messages')).toBe('s');
    expect(await roleCell('app_gateway', 'usage')).toBe('SI');
    expect(await roleCell('app_gateway', 'conversations')).toBe('-');
    expect(await roleCell('app_cms', 'conversations')).toBe('SIUD');
    expect(await page.locator('#roles tr[data-role="app_cms"] td').first().innerText()).toContain('nologin');
    expect(await page.locator('#role-functions').innerText()).toContain('recordUsage');
    await page.screenshot({ path: screenshotPath('01-overview'), fullPage: true });
  });

  it('table browser: columns with types, readable JSON and vectors, secrets hidden', async () => {
    await page.goto(`${studio.origin}/`);
    await page.locator('#tables a', { hasText: /^users$/ }).click();
    await page.waitForURL(`${studio.origin}/tables/users`);
    expect(await page.locator('#columns tr[data-column="email"] td').nth(1).innerText()).toBe('text');
    expect(await page.locator('#rows tbody tr').count()).toBe(6);
    const emails = await page.locator('#rows td[data-column="email"]').allInnerTexts();
    expect(emails.sort()).toEqual([...world.a.emails, ...world.b.emails].sort());
    // The API key's hash is not shown, only that there is one.
    for (const cell of await page.locator('#rows td[data-column="api_key_hash"]').allInnerTexts()) expect(cell).toMatch(/^hidden, 64 chars$/);

    await page.goto(`${studio.origin}/tables/vectors`);
    const embedding = await page.locator('#rows td[data-column="embedding"]').first().innerText();
    expect(embedding).toMatch(/^1536-d ‖v‖ \d+(\.\d+)? \[(-?\d[\d.e+-]*, ){6}…\]$/);
    expect(await page.locator('#columns tr[data-column="embedding"] td').nth(1).innerText()).toBe('vector(1536)');

    await page.goto(`${studio.origin}/tables/messages`);
    const content = page.locator('#rows td[data-column="content"]').first();
    expect(await content.innerText()).toContain('{"text"');
    await page.screenshot({ path: screenshotPath('02-table-messages'), fullPage: true });
  });

  it('table browser: keyset pages forward and back, no row twice, none left out', async () => {
    await page.goto(`${studio.origin}/tables/messages?limit=5`);
    const keys = () => page.locator('#rows tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-key')!));
    const seen: string[][] = [await keys()];
    while (await page.locator('nav.pager a[rel="next"]').first().count() > 0) {
      await page.locator('nav.pager a[rel="next"]').first().click();
      await page.waitForLoadState();
      seen.push(await keys());
    }
    expect(seen.map((p) => p.length)).toEqual([5, 5, 4]);
    const all = seen.flat();
    expect(new Set(all).size).toBe(14);
    expect(all).toEqual([...all].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)));
    await page.locator('nav.pager a[rel="prev"]').first().click();
    await page.waitForLoadState();
    expect(await keys()).toEqual(seen[1]);
    await page.locator('nav.pager a[rel="prev"]').first().click();
    await page.waitForLoadState();
    expect(await keys()).toEqual(seen[0]);
    expect(await page.locator('nav.pager a[rel="prev"]').count()).toBe(0);
  });

  it('table browser: filters by column value with bound parameters; names are checked against the catalog', async () => {
    await page.goto(`${studio.origin}/tables/users`);
    await page.locator('#filter select[name="column"]').selectOption('email');
    await page.locator('#filter select[name="op"]').selectOption('contains');
    await page.locator('#filter input[name="value"]').fill(world.a.marker);
    await page.locator('#filter button[type="submit"]').click();
    await page.waitForLoadState();
    expect((await page.locator('#rows td[data-column="email"]').allInnerTexts()).sort()).toEqual([...world.a.emails].sort());
    await page.screenshot({ path: screenshotPath('03-table-filter'), fullPage: true });

    // Equality in the column's type: a uuid column, a uuid value.
    await page.goto(`${studio.origin}/tables/users?column=tenant_id&op=eq&value=${world.b.tenantId}`);
    expect((await page.locator('#rows td[data-column="email"]').allInnerTexts()).sort()).toEqual([...world.b.emails].sort());
    // A value the type refuses is a 400 with PostgreSQL's reason, the form still there.
    const bad = await page.goto(`${studio.origin}/tables/users?column=tenant_id&op=eq&value=nope`);
    expect(bad?.status()).toBe(400);
    expect(await page.locator('.error').innerText()).toContain('invalid input syntax for type uuid');
    // SQL in a value is a value.
    const quoted = await page.goto(`${studio.origin}/tables/users?column=email&op=eq&value=${encodeURIComponent("x' or '1'='1")}`);
    expect(quoted?.status()).toBe(200);
    expect(await page.locator('#rows tbody tr').count()).toBe(0);
    // SQL in a column or table name is refused before any SQL.
    const column = await page.goto(`${studio.origin}/tables/users?column=${encodeURIComponent('email" is not null or "1')}&op=null`);
    expect(column?.status()).toBe(400);
    expect(await page.locator('.error').innerText()).toContain('table users has no column');
    const table = await page.goto(`${studio.origin}/tables/${encodeURIComponent('users; drop table users')}`);
    expect(table?.status()).toBe(404);
    const cursor = await page.goto(`${studio.origin}/tables/users?after=${encodeURIComponent("') or true --")}`);
    expect(cursor?.status()).toBe(400);
    const secret = await page.goto(`${studio.origin}/tables/users?column=api_key_hash&op=contains&value=a`);
    expect(secret?.status()).toBe(400);
    expect((await sql<{ n: number }>`select count(*)::int as n from users`.execute(t.db)).rows[0]!.n).toBe(6);
  });

  it('as a tenant: the browser shows only that tenant, as the chosen role sees it', async () => {
    await page.goto(`${studio.origin}/tenants`);
    expect(await page.locator('#tenants tbody tr').count()).toBe(2);
    await page.locator('#tenants a', { hasText: world.a.name }).click();
    await page.waitForLoadState();
    expect(await page.locator('.tenantbar').innerText()).toContain(world.a.tenantId);
    await page.locator('nav.tables a', { hasText: /^users$/ }).click();
    await page.waitForLoadState();
    expect(page.url()).toContain(`/tenants/${world.a.tenantId}/tables/users?role=app_user`);
    expect((await page.locator('#rows td[data-column="email"]').allInnerTexts()).sort()).toEqual([...world.a.emails].sort());

    for (const table of ['tenants', 'users', 'conversations', 'messages', 'usage', 'vectors', 'resources']) {
      await page.goto(`${studio.origin}/tenants/${world.a.tenantId}/tables/${table}?limit=500`);
      const text = await mainText();
      expect(text, table).not.toContain(world.b.marker);
      expect(text, table).not.toContain(world.b.tenantId);
      expect(await page.locator('#rows tbody tr').count(), table).toBeGreaterThan(0);
      for (const cell of await page.locator('#rows td[data-column="tenant_id"]').allInnerTexts()) expect(cell).toBe(world.a.tenantId);
    }
    await page.goto(`${studio.origin}/tenants/${world.a.tenantId}/tables/messages`);
    await page.screenshot({ path: screenshotPath('04-tenant-a-messages'), fullPage: true });

    // B sees its own rows and none of A's.
    await page.goto(`${studio.origin}/tenants/${world.b.tenantId}/tables/users`);
    expect((await page.locator('#rows td[data-column="email"]').allInnerTexts()).sort()).toEqual([...world.b.emails].sort());
    expect(await mainText()).not.toContain(world.a.marker);
    // A filter cannot reach past row-level security.
    await page.goto(`${studio.origin}/tenants/${world.a.tenantId}/tables/users?column=tenant_id&op=eq&value=${world.b.tenantId}`);
    expect(await page.locator('#rows tbody tr').count()).toBe(0);
  });

  it('as a tenant: the role picker switches to what another service role may read', async () => {
    await page.goto(`${studio.origin}/tenants/${world.a.tenantId}/tables/users`);
    await page.locator('#role-picker').selectOption('app_cms');
    await page.waitForURL(/role=app_cms/);
    // app_cms holds only users' tenant_id, id and status.
    expect(await page.locator('#rows tbody tr').count()).toBe(3);
    for (const cell of await page.locator('#rows td[data-column="email"]').allInnerTexts()) expect(cell).toBe('no privilege');
    expect(await page.locator('#rows td[data-column="status"]').first().innerText()).toBe('active');
    await page.screenshot({ path: screenshotPath('05-tenant-a-users-as-app-cms'), fullPage: true });

    const denied = await page.goto(`${studio.origin}/tenants/${world.a.tenantId}/tables/conversations?role=app_gateway`);
    expect(denied?.status()).toBe(403);
    expect(await page.locator('.error').innerText()).toContain('this role holds no SELECT on table conversations');
  });

  it('conversation viewer: the message tree with its branches and the usage charged', async () => {
    await page.goto(`${studio.origin}/tenants/${world.a.tenantId}/conversations?role=app_user`);
    expect(await page.locator('#conversations tbody tr').count()).toBe(2);
    expect(await mainText()).not.toContain(world.b.marker);
    await page.locator('#conversations a', { hasText: world.a.conversationTitle }).click();
    await page.waitForLoadState();
    expect(await page.locator('h1').innerText()).toBe(world.a.conversationTitle);
    for (const id of world.a.messageIds) expect(await page.locator(`article[data-message="${id}"]`).count()).toBe(1);
    const branches = page.locator('.branches[data-branches="2"]');
    expect(await branches.count()).toBe(1);
    for (const id of world.a.branchIds) expect(await branches.locator(`article[data-message="${id}"]`).count()).toBe(1);
    // The branch point is above the branches, outside them.
    expect(await branches.locator(`article[data-message="${world.a.branchParentId}"]`).count()).toBe(0);
    expect(await page.locator('#usage-total').innerText()).toContain(`cost ${world.a.conversationCost}`);
    expect(await page.locator('article .charge').count()).toBe(3);
    expect(await mainText()).not.toContain(world.b.marker);
    await page.screenshot({ path: screenshotPath('06-conversation-tree'), fullPage: true });

    // B's conversation does not exist for A.
    const foreign = await page.goto(`${studio.origin}/tenants/${world.a.tenantId}/conversations/${world.b.conversationId}`);
    expect(foreign?.status()).toBe(404);
  });

  it('spend: cost per day stacked by model as a chart, and the budgets of the users', async () => {
    const { rows } = await sql<{ total: string }>`
      select trim_scale(sum(cost))::text as total from usage where tenant_id = ${world.a.tenantId}`.execute(t.db);
    await page.goto(`${studio.origin}/tenants/${world.a.tenantId}/spend`);
    await page.waitForSelector('#spend-chart[data-drawn="2"]');
    expect(await page.locator('#spend-total').innerText()).toContain(`Total ${rows[0]!.total} over 30 days`);
    expect(await page.locator('#spend-by-model tbody tr').count()).toBe(2);
    const budgets = page.locator('#budgets tbody tr');
    expect(await budgets.count()).toBe(3);
    expect(await page.locator('#budgets').innerText()).toContain(world.a.emails[0]!);
    expect(await mainText()).not.toContain(world.b.marker);
    await page.screenshot({ path: screenshotPath('07-spend'), fullPage: true });

    // A narrower range through the form.
    const today = new Date().toISOString().slice(0, 10);
    await page.locator('#range input[name="from"]').fill(today);
    await page.locator('#range button[type="submit"]').click();
    await page.waitForLoadState();
    expect(await page.locator('#spend-total').innerText()).toMatch(/over 1 days\.$/);

    // costSummary is app_server's: as app_cms the chart is refused, by the package's own check.
    await page.goto(`${studio.origin}/tenants/${world.a.tenantId}/spend?role=app_cms`);
    expect(await page.locator('.error').first().innerText()).toContain('may not call costSummary');
  });

  it('search playground: a chunk\'s nearest neighbours and the hybrid result, within the tenant', async () => {
    await page.goto(`${studio.origin}/tenants/${world.a.tenantId}/search`);
    expect(await page.locator('#chunks tbody tr').count()).toBe(12);
    const picked = world.a.chunkIds[4]!;
    await page.locator(`#chunks tr[data-chunk="${picked}"] a`).click();
    await page.waitForLoadState();
    const neighbours = await page.locator('#neighbours tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-chunk')!));
    expect(neighbours).toHaveLength(10);
    expect(neighbours[0]).toBe(picked);
    expect(await page.locator('#neighbours tbody tr').first().locator('td').nth(1).innerText()).toBe('0.0000');
    for (const id of neighbours) expect(world.a.chunkIds).toContain(id);

    await page.locator('#search input[name="q"]').fill('invoice approval');
    await page.locator('#search button[type="submit"]').click();
    await page.waitForLoadState();
    const hybrid = await page.locator('#hybrid tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-chunk')!));
    expect(hybrid.length).toBeGreaterThan(0);
    for (const id of hybrid) expect(world.a.chunkIds).toContain(id);
    expect(await page.locator('#hybrid tbody tr').first().innerText()).toContain('invoice approval');
    expect(await mainText()).not.toContain(world.b.marker);
    await page.screenshot({ path: screenshotPath('08-search'), fullPage: true });

    // B's marker finds nothing of B's from A: the text leg runs under A's row-level security.
    await page.goto(`${studio.origin}/tenants/${world.a.tenantId}/search?chunk=${picked}&q=${world.b.marker}`);
    for (const row of await page.locator('#hybrid tbody tr').all()) {
      expect(world.a.chunkIds).toContain(await row.getAttribute('data-chunk'));
      expect(await row.locator('td').nth(3).innerText()).toBe('–');
    }
    // B's chunk is not A's to pick.
    await page.goto(`${studio.origin}/tenants/${world.a.tenantId}/search?chunk=${world.b.chunkIds[0]}`);
    expect(await page.locator('.error').innerText()).toContain(`chunk ${world.b.chunkIds[0]} not found`);
  });

  it('changed nothing, and the pages logged no error (no CSP violation, no script error)', async () => {
    expect(await snapshot()).toBe(before);
    expect(consoleErrors).toEqual([]);
  });
});
