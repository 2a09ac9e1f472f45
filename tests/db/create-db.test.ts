import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SnakeCamelPlugin } from '../../src/db/camel-case.ts';
import { loadConfig } from '../../src/db/config.ts';
import { ConfigError } from '../../src/db/errors.ts';
import { checkHealth } from '../../src/db/health.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { insertCatalog, insertTenant } from '../support/fixtures.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
beforeAll(async () => {
  t = await openTestDb();
});
afterAll(() => t?.close());

/** Exposes the plugin's name mapping, to check it against every column of the schema. */
class NameMapping extends SnakeCamelPlugin {
  toSnake = (name: string) => this.snakeCase(name);
  toCamel = (name: string) => this.camelCase(name);
}

describe('createDb', () => {
  it('maps every column name of the schema to camelCase and back unchanged', async () => {
    const { rows } = await sql<{ table_name: string; column_name: string }>`
      select table_name, column_name from information_schema.columns
      where table_schema = 'public' order by 1, 2`.execute(t.db.withoutPlugins());
    expect(rows.length).toBeGreaterThan(100);
    const mapping = new NameMapping();
    const broken = rows.filter((r) => mapping.toSnake(mapping.toCamel(r.column_name)) !== r.column_name);
    expect(broken).toEqual([]);
    expect(mapping.toCamel('cost_1k_input')).toBe('cost1kInput');
    expect(mapping.toCamel('s3_uri')).toBe('s3Uri');
  });

  it('reads and writes camelCase columns with digits (cost1kInput, s3Uri)', async () => {
    const { modelId, roleId } = await insertCatalog(t.db);
    const model = await t.db.selectFrom('models').select(['cost1kInput', 'cost1kOutput']).where('id', '=', modelId).executeTakeFirstOrThrow();
    expect(model).toEqual({ cost1kInput: '0.003', cost1kOutput: '0.015' }); // numeric comes back exact, as a string
    const { tenantId } = await insertTenant(t.db, roleId);
    const resource = await t.db
      .insertInto('resources')
      .values({ tenantId, name: 'report.pdf', type: 'pdf', s3Uri: 's3://bucket/report.pdf' })
      .returning(['s3Uri'])
      .executeTakeFirstOrThrow();
    expect(resource.s3Uri).toBe('s3://bucket/report.pdf');
  });

  it('writes number[] into a vector column and reads number[] back, also under withTenant', async () => {
    const { roleId } = await insertCatalog(t.db);
    const { tenantId } = await insertTenant(t.db, roleId);
    const embedding = Array.from({ length: 1536 }, (_, i) => ((i % 7) - 3) / 8); // exact in float4
    const inserted = await withTenant(t.db, tenantId, (tx) =>
      tx.insertInto('vectors').values({ tenantId, content: 'hello vectors', embedding }).returning(['id', 'embedding']).executeTakeFirstOrThrow(),
    );
    expect(inserted.embedding).toEqual(embedding);
    const read = await withTenant(t.db, tenantId, (tx) =>
      tx.selectFrom('vectors').select(['embedding', 'contentTsv']).where('id', '=', inserted.id).executeTakeFirstOrThrow(),
    );
    expect(read.embedding).toEqual(embedding);
    expect(read.contentTsv).toBe("'hello':1 'vector':2");
    const changed = embedding.map((x) => 0.5 - x);
    const updated = await withTenant(t.db, tenantId, (tx) =>
      tx.updateTable('vectors').set({ embedding: changed }).where('id', '=', inserted.id).returning('embedding').executeTakeFirstOrThrow(),
    );
    expect(updated.embedding).toEqual(changed);
  });

  it('refuses a vector of the wrong dimension in the database', async () => {
    const { roleId } = await insertCatalog(t.db);
    const { tenantId } = await insertTenant(t.db, roleId);
    await expect(
      t.db.insertInto('vectors').values({ tenantId, content: 'short', embedding: [1, 2, 3] }).execute(),
    ).rejects.toMatchObject({ code: '22000' }); // expected 1536 dimensions, not 3
  });
});

describe('checkHealth', () => {
  it('reports the server and pgvector versions', async () => {
    const health = await checkHealth(t.db);
    expect(health).toMatchObject({ ok: true, serverVersion: expect.stringMatching(/^\d+\.\d+/), pgvector: expect.stringMatching(/^0\.(8|9)\.|^[1-9]\./) });
  });
});

describe('loadConfig', () => {
  it('uses embedded PGlite at .data/pglite when no server is configured, as an absolute path', () => {
    expect(loadConfig({})).toEqual({ kind: 'pglite', storage: join(process.cwd(), '.data', 'pglite') });
    expect(loadConfig({ DB_STORAGE: 'memory://' })).toEqual({ kind: 'pglite', storage: 'memory://' });
    expect(loadConfig({ DB_STORAGE: 'stores/../store' })).toEqual({ kind: 'pglite', storage: join(process.cwd(), 'store') });
    expect(loadConfig({ DB_STORAGE: 'file:///srv/chat/pglite/' })).toEqual({ kind: 'pglite', storage: '/srv/chat/pglite' });
  });

  it('uses a pg Pool for DATABASE_URL or PG*, with pool settings from the environment', () => {
    expect(loadConfig({ DATABASE_URL: 'postgres://u@h/db', DB_POOL_MAX: '20', DB_STATEMENT_TIMEOUT_MS: '0' })).toEqual({
      kind: 'postgres',
      connectionString: 'postgres://u@h/db',
      poolMax: 20,
      idleTimeoutMs: 10_000,
      connectTimeoutMs: 5_000,
      statementTimeoutMs: 0,
      idleInTransactionTimeoutMs: 60_000,
      applicationName: 'database',
      preparedStatements: true,
    });
    expect(loadConfig({ DATABASE_URL: 'postgres://u@h/db', DB_PREPARED_STATEMENTS: 'false' })).toMatchObject({ preparedStatements: false });
    expect(loadConfig({ PGHOST: '/var/run/postgresql' })).toMatchObject({ kind: 'postgres', connectionString: undefined });
    expect(loadConfig({ PGHOST: 'db', NODE_ENV: 'test' })).toMatchObject({ poolMax: 4 });
  });

  it('names the variable and the value when a setting is wrong', () => {
    expect(() => loadConfig({ DATABASE_URL: 'mysql://x' })).toThrow(ConfigError);
    expect(() => loadConfig({ DATABASE_URL: 'postgres://h/db', DB_POOL_MAX: 'ten' })).toThrow('DB_POOL_MAX must be an integer >= 1, got "ten"');
    expect(() => loadConfig({ DATABASE_URL: 'postgres://h/db', DB_POOL_MAX: '0' })).toThrow(/DB_POOL_MAX/);
    expect(() => loadConfig({ DATABASE_URL: 'postgres://h/db', DB_PREPARED_STATEMENTS: 'maybe' })).toThrow(
      'DB_PREPARED_STATEMENTS must be true or false, got "maybe"',
    );
  });
});
