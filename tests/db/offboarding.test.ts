/**
 * Tenant offboarding, the owner path: exportTenant, deleteTenant, importTenant, on a tenant with
 * rows in every table (a message tree whose reply sorts before its parent, a summary message, a
 * sealed credential, exact costs, vectors), next to a second tenant that must stay as it is.
 */
import { createHash, randomUUID } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deleteTenant } from '../../src/db/delete-tenant.ts';
import { NotFoundError, TenantTransferError } from '../../src/db/errors.ts';
import { exportTenant, type TenantExportManifest } from '../../src/db/export-tenant.ts';
import { importTenant } from '../../src/db/import-tenant.ts';
import { DERIVED_TABLES } from '../../src/db/owned-tables.ts';
import { readMigrationFiles } from '../../src/db/migrator.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { toVectorSql } from '../../src/db/vector.ts';
import { getUserToolCredential, setUserToolCredential } from '../../src/queries/user-tools.ts';
import { createPromptVersion } from '../../src/queries/prompts.ts';
import { createTool } from '../../src/queries/tools.ts';
import { insertCatalog, publicTables } from '../support/fixtures.ts';
import { createLoginRole } from '../support/login-role.ts';
import { testRing } from '../support/secret-keys.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

/** The last migration of migrations/sql: the one an export made now names last. */
const LATEST_MIGRATION = readMigrationFiles().at(-1)!.name;

const CATALOG = ['roles', 'policies', 'role_policies', 'providers', 'models'];

let t: TestDb;
let a: string;
let b: string;
let aUser: string;
let aTool: number;
const folders: string[] = [];
const folder = () => {
  const dir = mkdtempSync(join(tmpdir(), 'tenant-export-'));
  folders.push(dir);
  return join(dir, 'export');
};

/** agents.scope of a global agent (migration 0011). */
const GLOBAL_SCOPE = '00000000-0000-0000-0000-000000000000';

/** Inserts (as the owner) a tenant with rows in every tenant table; returns its id and first user. */
async function insertTenantWorld(db: Kysely<any>, roleId: number, modelId: number, toolId: number, globalAgentId: string) {
  const slug = `off-${randomUUID().slice(0, 8)}`;
  const raw = db.withoutPlugins();
  const q = async <R>(query: ReturnType<typeof sql<R>>) => (await query.execute(raw)).rows;
  const [tenant] = await q<{ id: string }>(sql`insert into tenants (name, slug, plan, settings) values (${slug}, ${slug}, 'business', '{"maxMonthlySpend": "1000"}') returning id`);
  const tenantId = tenant!.id;
  const [u1, u2] = await q<{ id: string }>(sql`
    insert into users (tenant_id, email, first_name, role_id, api_key_hash, budget, remaining) values
      (${tenantId}, ${`ada@${slug}.example`}, 'Ada', ${roleId}, ${createHash('sha256').update(randomUUID()).digest('hex')}, 25.00, 24.999416),
      (${tenantId}, ${`bob@${slug}.example`}, null, ${roleId}, null, null, null)
    returning id`);
  // The tenant's own prompt and tool (shared-or-owned since migration 0016), used by its agent.
  const [prompt] = await q<{ id: number }>(sql`insert into prompts (tenant_id, name, version, content) values (${tenantId}, 'own', 1, 'You are ours.') returning id`);
  const [ownTool] = await q<{ id: number }>(sql`insert into tools (tenant_id, name, type) values (${tenantId}, 'own-tool', 'http') returning id`);
  const [agent] = await q<{ id: string }>(sql`insert into agents (tenant_id, user_id, model_id, prompt_id, name, model_parameters) values (${tenantId}, ${u1!.id}, ${modelId}, ${prompt!.id}, 'Own', '{"temperature": 0.7}') returning id`);
  await q(sql`insert into agent_tools (agent_scope, agent_id, tool_id) values (${tenantId}, ${agent!.id}, ${toolId}), (${tenantId}, ${agent!.id}, ${ownTool!.id})`);
  // agent_scope (migration 0011): the agent's tenant, or the nil UUID for a global agent.
  await q(sql`insert into user_agents (tenant_id, user_id, agent_scope, agent_id, role) values
    (${tenantId}, ${u2!.id}, ${tenantId}, ${agent!.id}, 'editor'), (${tenantId}, ${u2!.id}, ${GLOBAL_SCOPE}, ${globalAgentId}, 'viewer')`);
  const [convo] = await q<{ id: string }>(sql`insert into conversations (tenant_id, user_id, agent_scope, agent_id, title) values (${tenantId}, ${u1!.id}, ${tenantId}, ${agent!.id}, 'First') returning id`);
  // A reply whose id sorts before its parent's: the export (in id order) has the reply first.
  const root = `ffffffff-${randomUUID().slice(9)}`;
  const reply = `00000000-${randomUUID().slice(9)}`;
  await q(sql`insert into messages (tenant_id, id, conversation_id, role, content) values (${tenantId}, ${root}, ${convo!.id}, 'user', '{"text": "hello\\nworld ✓"}')`);
  await q(sql`insert into messages (tenant_id, id, conversation_id, parent_id, role, content) values (${tenantId}, ${reply}, ${convo!.id}, ${root}, 'assistant', '[{"type": "text", "text": "hi"}]')`);
  await q(sql`update conversations set summary_message_id = ${reply} where tenant_id = ${tenantId} and id = ${convo!.id}`);
  const [resource] = await q<{ id: string }>(sql`insert into resources (tenant_id, agent_scope, agent_id, message_id, name, type, content) values (${tenantId}, ${tenantId}, ${agent!.id}, ${root}, 'notes.txt', 'text', 'notes') returning id`);
  await q(sql`
    insert into usage (tenant_id, user_id, model_id, agent_scope, agent_id, message_id, type, input_tokens, output_tokens, cost, idempotency_key) values
      (${tenantId}, ${u1!.id}, ${modelId}, ${tenantId}, ${agent!.id}, ${reply}, 'chat', 1234, 567, 0.000584, 'req-1'),
      (${tenantId}, ${u1!.id}, ${modelId}, null, null, null, 'embedding', 10, 0, 0.10000000000000000001, null)`);
  // Spend control (migration 0015): the tenant's month under its cap, and a reservation settled by the first charge.
  await q(sql`insert into tenant_spend (tenant_id, window_start, spent) values (${tenantId}, date_trunc('month', now()), 0.100584)`);
  await q(sql`insert into budget_holds (tenant_id, user_id, amount, expires_at, status, usage_id)
    select tenant_id, user_id, 0.01, now() + interval '10 minutes', 'settled', id from usage where tenant_id = ${tenantId} and idempotency_key = 'req-1'`);
  await q(sql`insert into budget_alerts (tenant_id, user_id, scope, window_start, threshold, severity, budget, spent, usage_id)
    select tenant_id, null, 'tenant', date_trunc('month', now()), 80, 'warning', 0.1, 0.100584, id from usage where tenant_id = ${tenantId} and idempotency_key = 'req-1'`);
  const embedding = toVectorSql(Array.from({ length: 1536 }, (_, i) => (i % 7) / 7 - 0.3));
  await q(sql`insert into vectors (tenant_id, conversation_id, resource_id, tool_id, position, content, embedding) values
    (${tenantId}, ${convo!.id}, ${resource!.id}, ${toolId}, 0, 'a chunk about offboarding', ${embedding}::vector)`);
  await withTenant(db, tenantId, (tx) => setUserToolCredential(tx, { userId: u1!.id, toolId, credential: { token: 'ghp_secret_token' } }));
  return { tenantId, userId: u1!.id };
}

/** The tables of public but those a trigger derives from another (usage_rollups: see rollupsOf). */
async function sourceTables(db: Kysely<any>): Promise<string[]> {
  return (await publicTables(db)).filter((table) => !Object.hasOwn(DERIVED_TABLES, table));
}

/**
 * The tenant's usage_rollups (migration 0021) without their own ids and times, which a rebuild
 * gives anew: the buckets and their sums, sorted.
 */
async function rollupsOf(db: Kysely<any>, tenantId: string): Promise<string[]> {
  const { rows } = await sql<{ row: string }>`
    select jsonb_build_array(day, user_id, model_id, agent_id, cost, input_tokens, output_tokens, calls)::text as row
    from usage_rollups where tenant_id = ${tenantId}::uuid order by 1`.execute(db.withoutPlugins());
  return rows.map((r) => r.row);
}

/** usage of the tenant summed per bucket of usage_rollups, straight from usage, as rollupsOf prints it. */
async function usageSumsOf(db: Kysely<any>, tenantId: string): Promise<string[]> {
  const { rows } = await sql<{ row: string }>`
    select jsonb_build_array((created_at at time zone 'UTC')::date, user_id, model_id, agent_id, sum(cost), sum(input_tokens), sum(output_tokens), count(*))::text as row
    from usage where tenant_id = ${tenantId}::uuid
    group by (created_at at time zone 'UTC')::date, user_id, model_id, agent_id order by 1`.execute(db.withoutPlugins());
  return rows.map((r) => r.row);
}

/** Every row of the tenant, table by table, as the owner reads it (all columns, generated ones too). */
async function tenantRows(db: Kysely<any>, tenantId: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const table of await sourceTables(db)) {
    const where = await scope(db, table, tenantId);
    if (where === undefined) continue;
    const { rows } = await sql<{ row: string }>`select to_jsonb(x)::text as row from ${sql.table(table)} x where ${where} order by 1`.execute(db.withoutPlugins());
    out[table] = rows.map((r) => r.row);
  }
  return out;
}

/** Rows of the tenant in every table, counted as the owner. */
async function tenantCounts(db: Kysely<any>, tenantId: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const table of await sourceTables(db)) {
    const where = await scope(db, table, tenantId);
    if (where === undefined) continue;
    out[table] = (await sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)} x where ${where}`.execute(db.withoutPlugins())).rows[0]!.n;
  }
  return out;
}

/** How a table's rows belong to a tenant; undefined for the catalog (every table is one or the other). */
async function scope(db: Kysely<any>, table: string, tenantId: string) {
  if (table === 'tenants') return sql`x.id = ${tenantId}::uuid`;
  if (table === 'agent_tools') return sql`x.agent_id in (select id from agents where tenant_id = ${tenantId}::uuid)`;
  const { rows } = await sql`select 1 from information_schema.columns where table_schema = 'public' and table_name = ${table} and column_name = 'tenant_id'`.execute(db);
  if (rows.length > 0) return sql`x.tenant_id = ${tenantId}::uuid`;
  expect(CATALOG, `${table} has no tenant_id and is not a catalog table`).toContain(table);
  return undefined;
}

let worldIds: { roleId: number; modelId: number; toolId: number; globalAgentId: string };

beforeAll(async () => {
  t = await openTestDb({ secretKeys: testRing });
  const { roleId, modelId } = await insertCatalog(t.db);
  aTool = (await t.db.insertInto('tools').values({ name: `tool-${randomUUID()}`, type: 'builtin' }).returning('id').executeTakeFirstOrThrow()).id;
  const globalAgentId = (await t.db.insertInto('agents').values({ tenantId: null, modelId, name: 'Global' }).returning('id').executeTakeFirstOrThrow()).id;
  worldIds = { roleId, modelId, toolId: aTool, globalAgentId };
  ({ tenantId: a, userId: aUser } = await insertTenantWorld(t.db, roleId, modelId, aTool, globalAgentId));
  ({ tenantId: b } = await insertTenantWorld(t.db, roleId, modelId, aTool, globalAgentId));
});
afterAll(async () => {
  await t?.close();
  for (const dir of folders) rmSync(dir, { recursive: true, force: true });
});

describe('exportTenant', () => {
  it('writes one NDJSON file per table with the rows of that tenant only, and a manifest with counts and checksums', async () => {
    const dir = folder();
    const manifest = await exportTenant(t.db, { tenantId: a, dir });
    const counts = await tenantCounts(t.db, a);
    expect(Math.min(...Object.values(counts))).toBeGreaterThan(0); // the world has rows in every tenant table
    expect(Object.fromEntries(manifest.tables.map((e) => [e.table, e.rows]))).toEqual(counts);
    expect(readdirSync(dir).sort()).toEqual([...manifest.tables.map((e) => e.file), 'manifest.json'].sort());
    expect(JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'))).toEqual(manifest);
    expect(manifest).toMatchObject({ format: 'database-tenant-export', version: 1, tenant: { id: a }, secretKeyIds: ['test'] });
    expect(manifest.migrations.at(-1)).toBe(LATEST_MIGRATION);
    // Parents first.
    const order = manifest.tables.map((e) => e.table);
    for (const [parent, child] of [['tenants', 'users'], ['users', 'agents'], ['agents', 'agent_tools'], ['conversations', 'messages'], ['messages', 'usage'], ['resources', 'vectors']] as [string, string][]) {
      expect(order.indexOf(parent), `${parent} before ${child}`).toBeLessThan(order.indexOf(child));
    }
    for (const entry of manifest.tables) {
      const bytes = readFileSync(join(dir, entry.file));
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(entry.sha256);
      expect(bytes.length).toBe(entry.bytes);
      const text = bytes.toString('utf8');
      expect(text).not.toContain(b); // no row of the other tenant
      expect(text.split('\n').filter(Boolean).map((line) => Object.keys(JSON.parse(line)))).toEqual(Array(entry.rows).fill(entry.columns));
    }
    const usage = readFileSync(join(dir, 'usage.ndjson'), 'utf8');
    expect(usage).toContain('"cost":0.10000000000000000001'); // exact, as the numeric is
    const tools = readFileSync(join(dir, 'user_tools.ndjson'), 'utf8');
    expect(tools).toMatch(/"credential":\{"v": 1, "enc": "v1\.test\./);
    expect(tools).not.toContain('ghp_secret_token');
    expect(manifest.tables.find((e) => e.table === 'vectors')!.columns).not.toContain('content_tsv'); // generated: recomputed on import
  });

  it('reads in keyset batches: a batch of 1 row writes the same files', async () => {
    const whole = await exportTenant(t.db, { tenantId: a, dir: folder() });
    const single = await exportTenant(t.db, { tenantId: a, dir: folder(), batchSize: 1 });
    expect(single.tables).toEqual(whole.tables);
  });

  it('refuses a folder that is not empty, an unknown tenant, and a transaction', async () => {
    const dir = folder();
    await exportTenant(t.db, { tenantId: a, dir });
    await expect(exportTenant(t.db, { tenantId: a, dir })).rejects.toThrow(/exists and is not empty/);
    const missing = randomUUID();
    await expect(exportTenant(t.db, { tenantId: missing, dir: folder() })).rejects.toThrow(new NotFoundError('tenant', missing));
    await expect(t.db.transaction().execute((tx) => exportTenant(tx, { tenantId: a, dir: folder() }))).rejects.toBeInstanceOf(TenantTransferError);
  });
});

describe('export, delete, import', () => {
  it('round trip: the same rows come back, the other tenant is untouched throughout, and secrets open again', async () => {
    const before = await tenantRows(t.db, a);
    const other = await tenantRows(t.db, b);
    const rollups = await rollupsOf(t.db, a);
    const otherRollups = await rollupsOf(t.db, b);
    expect(rollups.length).toBeGreaterThan(0);
    expect(rollups).toEqual(await usageSumsOf(t.db, a));
    const dir = folder();
    await exportTenant(t.db, { tenantId: a, dir });

    await expect(importTenant(t.db, { dir })).rejects.toThrow(`tenant ${a} exists in this database already`);

    const deletion = await deleteTenant(t.db, { tenantId: a, batchSize: 1 });
    expect(deletion.found).toBe(true);
    expect(Object.values(await tenantCounts(t.db, a)).every((n) => n === 0)).toBe(true);
    expect(await rollupsOf(t.db, a)).toEqual([]); // deleting the usage rows took their buckets away
    expect(await tenantRows(t.db, b)).toEqual(other);
    expect(await rollupsOf(t.db, b)).toEqual(otherRollups);

    const loaded = await importTenant(t.db, { dir, batchSize: 1 });
    expect(loaded).toMatchObject({ tenantId: a });
    expect(loaded.tables.map((e) => e.table)).not.toContain('usage_rollups'); // derived: rebuilt from usage, not carried
    expect(loaded.tables.map((e) => e.table)).not.toContain('usage_day_rollups');
    expect(await tenantRows(t.db, a)).toEqual(before);
    expect(await rollupsOf(t.db, a)).toEqual(rollups);
    expect(await tenantRows(t.db, b)).toEqual(other);
    expect(await rollupsOf(t.db, b)).toEqual(otherRollups);
    expect(await withTenant(t.db, a, (tx) => getUserToolCredential(tx, { userId: aUser, toolId: aTool }))).toEqual({ token: 'ghp_secret_token' });
  });
});

describe('importTenant refuses, writing nothing', () => {
  let dir: string;
  let manifest: TenantExportManifest;
  let tenant: string;
  beforeAll(async () => {
    ({ tenantId: tenant } = await insertTenantWorld(t.db, worldIds.roleId, worldIds.modelId, worldIds.toolId, worldIds.globalAgentId));
    dir = folder();
    manifest = await exportTenant(t.db, { tenantId: tenant, dir });
    await deleteTenant(t.db, { tenantId: tenant });
  });
  /** A copy of the export with `edit` applied. */
  const copy = (edit: (dir: string) => void) => {
    const target = folder();
    cpSync(dir, target, { recursive: true });
    edit(target);
    return target;
  };
  const nothingWritten = async () => expect(Object.values(await tenantCounts(t.db, tenant)).every((n) => n === 0)).toBe(true);

  it('a file changed after the export (same size), naming it', async () => {
    const changed = copy((d) => {
      const path = join(d, 'messages.ndjson');
      writeFileSync(path, readFileSync(path, 'utf8').replace('"hi"', '"HI"'));
    });
    await expect(importTenant(t.db, { dir: changed })).rejects.toThrow(/messages\.ndjson: 2 rows with sha256 [0-9a-f]{64}, the manifest says 2 rows/);
    await nothingWritten();
  });

  it("a row of another tenant slipped into a file", async () => {
    const foreign = copy((d) => {
      const path = join(d, 'users.ndjson');
      const text = readFileSync(path, 'utf8').replaceAll(tenant, b);
      writeFileSync(path, text);
      const m = JSON.parse(readFileSync(join(d, 'manifest.json'), 'utf8')) as TenantExportManifest;
      const entry = m.tables.find((e) => e.table === 'users')!;
      entry.sha256 = createHash('sha256').update(text).digest('hex');
      writeFileSync(join(d, 'manifest.json'), JSON.stringify(m));
    });
    await expect(importTenant(t.db, { dir: foreign })).rejects.toThrow(`do not belong to tenant ${tenant}`);
    await nothingWritten();
  });

  it('no manifest (an export that did not finish), other migrations, a missing table file', async () => {
    await expect(importTenant(t.db, { dir: copy((d) => rmSync(join(d, 'manifest.json'))) })).rejects.toThrow(/no manifest/);
    const older = copy((d) => writeFileSync(join(d, 'manifest.json'), JSON.stringify({ ...manifest, migrations: manifest.migrations.slice(0, -1) })));
    await expect(importTenant(t.db, { dir: older })).rejects.toThrow(`applied here only: ${LATEST_MIGRATION}`);
    const fewer = copy((d) => writeFileSync(join(d, 'manifest.json'), JSON.stringify({ ...manifest, tables: manifest.tables.filter((e) => e.table !== 'vectors') })));
    await expect(importTenant(t.db, { dir: fewer })).rejects.toThrow(/no file for table vectors/);
    await nothingWritten();
  });

  it('into a database without the catalog rows the tenant refers to, then with them', async () => {
    const empty = await openTestDb({ secretKeys: testRing });
    try {
      await expect(importTenant(empty.db, { dir })).rejects.toThrow(/could not be loaded into users: .*foreign key/);
      expect(Object.values(await tenantCounts(empty.db, tenant)).every((n) => n === 0)).toBe(true);
      // The same seed data: the catalog and the global agents, with their ids.
      // Prompts and tools are shared-or-owned (migration 0016): their global rows, like agents'.
      for (const table of [...CATALOG, 'prompts', 'tools', 'agents']) {
        const where = CATALOG.includes(table) ? sql`` : sql`where tenant_id is null`;
        const { rows } = await sql<{ row: unknown }>`select to_jsonb(x) as row from ${sql.table(table)} x ${where}`.execute(t.db.withoutPlugins());
        if (rows.length === 0) continue;
        // Every column but the generated ones (agents.scope, migration 0011), which take no value.
        const { rows: columns } = await sql<{ name: string }>`
          select column_name as name from information_schema.columns
          where table_schema = 'public' and table_name = ${table} and is_generated = 'NEVER' order by ordinal_position`.execute(empty.db.withoutPlugins());
        const list = sql.join(columns.map((c) => sql.id(c.name)));
        await sql`insert into ${sql.table(table)} (${list}) select ${list} from jsonb_populate_recordset(null::${sql.table(table)}, ${JSON.stringify(rows.map((r) => r.row))}::jsonb)`.execute(empty.db.withoutPlugins());
      }
      await importTenant(empty.db, { dir });
      expect(await tenantCounts(empty.db, tenant)).toEqual(Object.fromEntries(manifest.tables.map((e) => [e.table, e.rows])));
      // The tenant's own tools and prompts kept their integer ids; the next ones generated do not collide.
      const made = await withTenant(empty.db, tenant, async (tx) => ({
        tool: await createTool(tx, { name: 'after-import' }),
        prompt: await createPromptVersion(tx, { name: 'after-import', content: 'x' }),
      }));
      const maxIds = await sql<{ tool: number; prompt: number }>`
        select (select max(id) from tools where name <> 'after-import') as tool, (select max(id) from prompts where name <> 'after-import') as prompt`.execute(empty.db);
      expect(made.tool.id).toBeGreaterThan(maxIds.rows[0]!.tool);
      expect(made.prompt.id).toBeGreaterThan(maxIds.rows[0]!.prompt);
    } finally {
      await empty.close();
    }
  });
});

describe('deleteTenant', () => {
  it('resumes after a crash: the next run finishes, leaving nothing; a run after that finds nothing', async () => {
    const { tenantId } = await insertTenantWorld(t.db, worldIds.roleId, worldIds.modelId, worldIds.toolId, worldIds.globalAgentId);
    const before = await tenantCounts(t.db, tenantId);
    const total = Object.values(before).reduce((x, y) => x + y, 0);
    let batches = 0;
    const crash = () => {
      if (++batches === 3) throw new Error('crash');
    };
    await expect(deleteTenant(t.db, { tenantId, batchSize: 1, log: crash })).rejects.toThrow('crash');
    const halfway = await tenantCounts(t.db, tenantId);
    expect(Object.values(halfway).reduce((x, y) => x + y, 0)).toBe(total - 3); // three committed batches of one row
    const finished = await deleteTenant(t.db, { tenantId, batchSize: 2 });
    expect(finished.found).toBe(true);
    expect(await tenantCounts(t.db, tenantId)).toEqual(Object.fromEntries(Object.keys(before).map((k) => [k, 0])));
    expect(await rollupsOf(t.db, tenantId)).toEqual([]);
    expect(await deleteTenant(t.db, { tenantId })).toEqual({ tenantId, found: false, tables: [] });
  });

  it.runIf(onServer)('is the owner path: a service role, even app_server, is refused before anything is read or removed', async () => {
    const login = await createLoginRole(t, 'app_server');
    try {
      const db = login.open(1);
      await expect(deleteTenant(db, { tenantId: b })).rejects.toThrow(/cannot run deleteTenant: it reads and writes one tenant's rows past row-level security/);
      await expect(exportTenant(db, { tenantId: b, dir: folder() })).rejects.toBeInstanceOf(TenantTransferError);
      await expect(importTenant(db, { dir: folder() })).rejects.toBeInstanceOf(TenantTransferError);
      expect((await tenantCounts(t.db, b)).users).toBe(2);
    } finally {
      await login.drop();
    }
  });
});
