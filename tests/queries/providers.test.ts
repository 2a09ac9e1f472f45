/**
 * getProviderCredentials: the gateway gets a provider's key decrypted; no other service can, by
 * the package's check or by SQL.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresConfig } from '../../src/db/config.ts';
import { createDb } from '../../src/db/create-db.ts';
import { ConfigError, NotFoundError, PermissionError, SecretError } from '../../src/db/errors.ts';
import { providerKeyBinding } from '../../src/db/secret-bindings.ts';
import { sealSecret } from '../../src/db/secrets.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { getProviderCredentials } from '../../src/queries/providers.ts';
import { insertTenant } from '../support/fixtures.ts';
import { createLoginRole } from '../support/login-role.ts';
import { keyEntry, ringOf, testRing } from '../support/secret-keys.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

const API_KEY = 'AIza-provider-key-for-the-gateway-0123456789';

let t: TestDb;
let tenantId: string;
let keyed: number;
let keyless: number;

beforeAll(async () => {
  t = await openTestDb({ secretKeys: testRing });
  const role = await t.db.insertInto('roles').values({ name: 'user' }).returning('id').executeTakeFirstOrThrow();
  ({ tenantId } = await insertTenant(t.db, role.id));
  keyed = (await t.db.insertInto('providers').values({ name: 'google', endpoint: 'https://llm.example.com/v1' }).returning('id').executeTakeFirstOrThrow()).id;
  keyless = (await t.db.insertInto('providers').values({ name: 'bedrock' }).returning('id').executeTakeFirstOrThrow()).id;
  await t.db.updateTable('providers').set({ apiKey: sealSecret(testRing, API_KEY, providerKeyBinding(keyed)) }).where('id', '=', keyed).execute();
});
afterAll(() => t?.close());

describe('getProviderCredentials', () => {
  it('as the gateway: the endpoint and the key, decrypted; NULL stays null', async () => {
    expect(await withTenant(t.db, tenantId, (tx) => getProviderCredentials(tx, { providerId: keyed }), { role: 'app_gateway' })).toEqual({
      providerId: keyed, name: 'google', endpoint: 'https://llm.example.com/v1', apiKey: API_KEY,
    });
    expect(await withTenant(t.db, tenantId, (tx) => getProviderCredentials(tx, { providerId: keyless }), { role: 'app_gateway' })).toEqual({
      providerId: keyless, name: 'bedrock', endpoint: null, apiKey: null,
    });
  });

  it('the database holds only the envelope, never the key', async () => {
    const { rows } = await sql<{ api_key: string }>`select api_key from providers where id = ${keyed}`.execute(t.db.withoutPlugins());
    expect(rows[0]!.api_key).toMatch(/^v1\.test\./);
    expect(rows[0]!.api_key).not.toContain(API_KEY.slice(0, 10));
  });

  it('an unknown provider is a NotFoundError; a bad id a ValidationError', async () => {
    await expect(withTenant(t.db, tenantId, (tx) => getProviderCredentials(tx, { providerId: 999_999 }), { role: 'app_gateway' })).rejects.toEqual(new NotFoundError('provider', 999_999));
    await expect(getProviderCredentials(t.db, { providerId: 0 })).rejects.toMatchObject({ name: 'ValidationError', field: 'providerId' });
  });

  it('a key copied to another provider does not open there', async () => {
    const copy = (await t.db.insertInto('providers').values({ name: 'copycat' }).returning('id').executeTakeFirstOrThrow()).id;
    await sql`update providers set api_key = (select api_key from providers where id = ${keyed}) where id = ${copy}`.execute(t.db);
    await expect(withTenant(t.db, tenantId, (tx) => getProviderCredentials(tx, { providerId: copy }), { role: 'app_gateway' })).rejects.toMatchObject({
      name: 'SecretError', reason: 'undecryptable', binding: `providers.api_key:${copy}`,
    });
  });

  it.each(['app_server', 'app_cms'] as const)('as %s: a PermissionError before any SQL', async (role) => {
    const error = await withTenant(t.db, tenantId, (tx) => getProviderCredentials(tx, { providerId: keyed }), { role }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermissionError);
    expect((error as Error).message).toContain(`role ${role} may not call getProviderCredentials: it is for app_gateway`);
  });

  it.each(['app_server', 'app_cms'] as const)('as %s in raw SQL: the function and the column are refused (42501)', async (role) => {
    for (const statement of [sql`select * from app.provider_credentials(${keyed})`, sql`select api_key from providers`]) {
      let outcome: string | undefined = 'not run';
      await withTenant(t.db, tenantId, async (tx) => {
        await sql`select set_config('role', ${role}, true)`.execute(tx); // as app_user for the package, as `role` for the database
        outcome = await statement.execute(tx).then(() => 'allowed', (e: { code?: string }) => e.code);
      }).catch(() => {}); // a refused statement aborts the transaction: its rollback is expected
      expect(outcome).toBe('42501');
    }
  });

  it('as the gateway in raw SQL, the column itself stays unreadable (the function is the only way)', async () => {
    const error = await withTenant(t.db, tenantId, (tx) => sql`select api_key from providers`.execute(tx), { role: 'app_gateway' }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: '42501' });
  });
});

describe.runIf(onServer)('with another ring', () => {
  it('a ring without the key names the key id it lacks; no ring at all is a ConfigError', async () => {
    const other = createDb({ ...t.config, secretKeys: ringOf([keyEntry('other')]) });
    const none = createDb(postgresConfig({ connectionString: t.url! }, {}));
    try {
      const error = await getProviderCredentials(other, { providerId: keyed }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SecretError);
      expect((error as Error).message).toBe(`providers.api_key:${keyed} is encrypted under key id test, which DB_SECRET_KEYS does not hold (it holds other): add that key to DB_SECRET_KEYS`);
      const missing = await getProviderCredentials(none, { providerId: keyed }).catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(ConfigError);
      expect((missing as Error).message).toMatch(/is encrypted under key id test and no secret key is configured to open it: set DB_SECRET_KEYS/);
    } finally {
      await Promise.all([other.destroy(), none.destroy()]);
    }
  });

  it('the gateway logged in as the README says gets the key, outside withTenant; the cms does not', async () => {
    const gateway = await createLoginRole(t, 'app_gateway');
    const cms = await createLoginRole(t, 'app_cms');
    const asGateway = createDb(postgresConfig({ connectionString: gateway.url, poolMax: 1, appRole: 'app_gateway', secretKeys: testRing }));
    const asCms = createDb(postgresConfig({ connectionString: cms.url, poolMax: 1, appRole: 'app_cms', secretKeys: testRing }));
    try {
      expect((await getProviderCredentials(asGateway, { providerId: keyed })).apiKey).toBe(API_KEY);
      await expect(getProviderCredentials(asCms, { providerId: keyed })).rejects.toBeInstanceOf(PermissionError);
      await expect(sql`select * from app.provider_credentials(${keyed})`.execute(asCms)).rejects.toMatchObject({ code: '42501' });
    } finally {
      await Promise.all([asGateway.destroy(), asCms.destroy()]);
      await gateway.drop();
      await cms.drop();
    }
  });
});
