/**
 * The seed writes providers.api_key encrypted (README, "Secrets"), compares it by its plaintext
 * so that a re-seed writes nothing, and encrypts a key stored in plaintext before migration 0012.
 */
import { createHash } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/db/errors.ts';
import { migrate, readMigrationFiles } from '../../src/db/migrator.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { getProviderCredentials } from '../../src/queries/providers.ts';
import { seed } from '../../src/seed/seed.ts';
import { insertTenant } from '../support/fixtures.ts';
import { testRing } from '../support/secret-keys.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';
import { emptySeedTables, ledgerEntry, providerKey, quiet, snapshot, storedProviderKey } from './seed-fixtures.ts';

const KEY = 'AIza-gemini-key-from-the-environment-0123';
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** Every row of every table in public and app, as the owner sees it, as text. */
async function everyRow(db: Kysely<any>): Promise<string> {
  const raw = db.withoutPlugins();
  const { rows: tables } = await sql<{ name: string }>`
    select format('%I.%I', n.nspname, c.relname) as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in ('public', 'app') and c.relkind in ('r', 'p') order by 1`.execute(raw);
  const texts: string[] = [];
  for (const { name } of tables) {
    const { rows } = await sql<{ r: string }>`select to_jsonb(t)::text as r from ${sql.raw(name)} as t`.execute(raw);
    texts.push(...rows.map((r) => r.r));
  }
  expect(tables.map((t) => t.name)).toEqual(expect.arrayContaining(['public.providers', 'app.seed_rows']));
  return texts.join('\n');
}

let t: TestDb;
beforeAll(async () => {
  t = await openTestDb({ secretKeys: testRing });
});
beforeEach(async () => {
  await emptySeedTables(t.db);
});
afterAll(() => t?.close());

describe('the seed and providers.api_key', () => {
  it('writes it encrypted, bound to its row: no plaintext (nor its hash) anywhere in the database', async () => {
    const summary = await seed(t.db, { ...quiet, env: { GEMINI_API_KEY: KEY } });
    expect(summary).toMatchObject({ inserted: 58, changed: true });
    expect(await storedProviderKey(t.db)).toMatch(/^v1\.test\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+$/);
    expect(await providerKey(t.db)).toBe(KEY);
    const dump = await everyRow(t.db);
    expect(dump).not.toContain(KEY);
    expect(dump).not.toContain(KEY.slice(5, 25));
    expect(dump).not.toContain(sha256(KEY)); // the ledger hashes what is stored: the ciphertext
    expect((await ledgerEntry(t.db, 'providers', ['2']))!.api_key).toBe(sha256((await storedProviderKey(t.db))!));
  });

  it('a re-seed with the same value and the same key writes nothing', async () => {
    await seed(t.db, { ...quiet, env: { GEMINI_API_KEY: KEY } });
    const before = await snapshot(t.db);
    const again = await seed(t.db, { ...quiet, env: { GEMINI_API_KEY: KEY } });
    expect(again).toMatchObject({ inserted: 0, updated: 0, unchanged: 58, changed: false, kept: [] });
    expect(await snapshot(t.db)).toEqual(before);
  });

  it('a new value is written (encrypted again), and the gateway reads it', async () => {
    await seed(t.db, { ...quiet, env: { GEMINI_API_KEY: KEY } });
    const summary = await seed(t.db, { ...quiet, env: { GEMINI_API_KEY: 'AIza-the-next-key' } });
    expect(summary.files.find((f) => f.table === 'providers')).toMatchObject({ updated: 1, unchanged: 2 });
    expect(summary.kept).toEqual([]);
    expect(await providerKey(t.db)).toBe('AIza-the-next-key');
    const role = await t.db.selectFrom('roles').select('id').where('name', '=', 'user').executeTakeFirstOrThrow();
    const { tenantId } = await insertTenant(t.db, role.id);
    const credentials = await withTenant(t.db, tenantId, (tx) => getProviderCredentials(tx, { providerId: 2 }), { role: 'app_gateway' });
    expect(credentials).toEqual({ providerId: 2, name: 'google', endpoint: 'https://generativelanguage.googleapis.com/v1beta', apiKey: 'AIza-the-next-key' });
  });

  it('with no key configured, a value to store is a ConfigError naming DB_SECRET_KEYS, and nothing is written', async () => {
    const keyless = await openTestDb();
    try {
      await emptySeedTables(keyless.db);
      const before = await snapshot(keyless.db);
      const error = await seed(keyless.db, { ...quiet, env: { GEMINI_API_KEY: KEY } }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toMatch(/^no secret key is configured to encrypt providers\.api_key .*: set DB_SECRET_KEYS to id:base64key/);
      expect((error as Error).message).not.toContain(KEY);
      expect(await snapshot(keyless.db)).toEqual(before);
      // Without a value to store, no key is needed.
      expect(await seed(keyless.db, quiet)).toMatchObject({ inserted: 58 });
    } finally {
      await keyless.close();
    }
  });
});

describe('a provider key stored in plaintext before migration 0012', () => {
  /** A database at the migration before 0012, seeded by the old seed: the key in plaintext, its sha256 in the ledger. */
  async function legacyDatabase(plaintext: string): Promise<TestDb> {
    const names = readMigrationFiles().map((f) => f.name);
    const before = names[names.findIndex((n) => n.startsWith('0012_')) - 1]!;
    const legacy = await openTestDb({ migrated: false, secretKeys: testRing });
    await migrate(legacy.db, { to: before });
    await seed(legacy.db, quiet);
    await sql`update providers set api_key = ${plaintext} where id = 2`.execute(legacy.db);
    await sql`update app.seed_rows set hashes = jsonb_set(hashes, '{api_key}', to_jsonb(${sha256(plaintext)}::text))
              where table_name = 'providers' and row_key = '{2}'`.execute(legacy.db);
    await migrate(legacy.db);
    return legacy;
  }

  it('reads refuse it; the next seed with the same value encrypts it, and the one after writes nothing', async () => {
    const legacy = await legacyDatabase(KEY);
    try {
      const role = await legacy.db.selectFrom('roles').select('id').where('name', '=', 'user').executeTakeFirstOrThrow();
      const { tenantId } = await insertTenant(legacy.db, role.id);
      const refused = await withTenant(legacy.db, tenantId, (tx) => getProviderCredentials(tx, { providerId: 2 }), { role: 'app_gateway' }).catch((e: unknown) => e);
      expect(refused).toMatchObject({ name: 'SecretError', reason: 'plaintext', binding: 'providers.api_key:2' });

      const summary = await seed(legacy.db, { ...quiet, env: { GEMINI_API_KEY: KEY } });
      expect(summary).toMatchObject({ updated: 1, kept: [] });
      expect(await storedProviderKey(legacy.db)).toMatch(/^v1\.test\./);
      expect(await providerKey(legacy.db)).toBe(KEY);
      expect(await everyRow(legacy.db)).not.toContain(KEY);
      const before = await snapshot(legacy.db);
      expect(await seed(legacy.db, { ...quiet, env: { GEMINI_API_KEY: KEY } })).toMatchObject({ changed: false });
      expect(await snapshot(legacy.db)).toEqual(before);
    } finally {
      await legacy.close();
    }
  });

  it('a new value for it is written encrypted, as the seed wrote the old one', async () => {
    const legacy = await legacyDatabase('AIza-old-plaintext');
    try {
      const summary = await seed(legacy.db, { ...quiet, env: { GEMINI_API_KEY: KEY } });
      expect(summary).toMatchObject({ updated: 1, kept: [] });
      expect(await providerKey(legacy.db)).toBe(KEY);
      expect(await everyRow(legacy.db)).not.toContain('AIza-old-plaintext');
    } finally {
      await legacy.close();
    }
  });
});
