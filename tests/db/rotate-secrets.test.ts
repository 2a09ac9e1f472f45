/**
 * rotateSecrets: every secret moves to the current key; old values keep opening only while their
 * key is in the ring; plaintext stored before migration 0012 is encrypted; a second run rewrites
 * nothing. The same database is reopened with another ring, as an operator restarts with another
 * DB_SECRET_KEYS (PGlite: a directory store, closed and reopened).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresConfig } from '../../src/db/config.ts';
import { createDb } from '../../src/db/create-db.ts';
import { ConfigError } from '../../src/db/errors.ts';
import { migrate, readMigrationFiles } from '../../src/db/migrator.ts';
import { rotateSecrets } from '../../src/db/rotate-secrets.ts';
import type { DB } from '../../src/db/schema.generated.ts';
import { providerKeyBinding, userToolBinding } from '../../src/db/secret-bindings.ts';
import { sealSecret, type SecretKeyRing } from '../../src/db/secrets.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { getProviderCredentials } from '../../src/queries/providers.ts';
import { getUserToolCredential, setUserToolCredential } from '../../src/queries/user-tools.ts';
import { seed } from '../../src/seed/seed.ts';
import { createLoginRole } from '../support/login-role.ts';
import { keyEntry, ringOf } from '../support/secret-keys.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

const k0 = keyEntry('k0');
const k1 = keyEntry('k1');
const k2 = keyEntry('k2');

let server: TestDb | undefined;
let storeDir: string | undefined;
let db: Kysely<DB>;

/** The test database, reopened with `ring` as its DB_SECRET_KEYS. */
async function reopen(ring: SecretKeyRing): Promise<Kysely<DB>> {
  await db?.destroy();
  db = server !== undefined ? createDb({ ...server.config, secretKeys: ring }) : createDb({ kind: 'pglite', storage: join(storeDir!, 'pglite'), secretKeys: ring });
  return db;
}

const tenants = { a: '', b: '' };
const users = { a: '', b: '' };
const TOOLS = [101, 102, 103];
const LEGACY_PROVIDER = 101;
const SEALED_PROVIDER = 102;

const gateway = <T>(fn: Parameters<typeof withTenant<T>>[2]) => withTenant(db, tenants.a, fn, { role: 'app_gateway' });
const cms = <T>(tenant: string, fn: Parameters<typeof withTenant<T>>[2]) => withTenant(db, tenant, fn, { role: 'app_cms' });

/** Every secret as stored: provider keys and the envelopes of the credentials, with their key ids. */
async function storedSecrets(): Promise<{ where: string; value: string }[]> {
  const raw = db.withoutPlugins();
  const providers = await sql<{ id: number; api_key: string }>`select id, api_key from providers where api_key is not null order by id`.execute(raw);
  const tools = await sql<{ user_id: string; tool_id: number; credential: string }>`
    select user_id, tool_id, credential::text as credential from user_tools where credential <> '{}' order by tenant_id, id`.execute(raw);
  return [
    ...providers.rows.map((r) => ({ where: `provider ${r.id}`, value: r.api_key })),
    ...tools.rows.map((r) => ({ where: `tool ${r.tool_id} of ${r.user_id}`, value: r.credential })),
  ];
}
const keyIdsOf = async () => (await storedSecrets()).map((s) => /v1\.([A-Za-z0-9_-]+)\./.exec(s.value)?.[1] ?? 'plaintext');
/** xmin of every secret's row: unchanged means not rewritten. */
const versions = async () =>
  (await sql<{ x: string }>`select xmin::text as x from providers union all select xmin::text from user_tools order by 1`.execute(db.withoutPlugins())).rows;

beforeAll(async () => {
  if (onServer) server = await openTestDb({ migrated: false });
  else storeDir = mkdtempSync(join(tmpdir(), 'rotate-secrets-'));
  await reopen(ringOf([k1]));
  // The schema before 0012: a provider key and a credential stored in plaintext.
  const names = readMigrationFiles().map((f) => f.name);
  await migrate(db, { to: names[names.findIndex((n) => n.startsWith('0012_')) - 1]! });
  await db.insertInto('roles').values({ id: 100, name: 'rotation-user' }).execute();
  for (const side of ['a', 'b'] as const) {
    tenants[side] = (await db.insertInto('tenants').values({ name: side, slug: `rot-${side}` }).returning('id').executeTakeFirstOrThrow()).id;
    users[side] = (await db.insertInto('users').values({ tenantId: tenants[side], email: `${side}@example.com`, roleId: 100 }).returning('id').executeTakeFirstOrThrow()).id;
  }
  await db.insertInto('tools').values(TOOLS.map((id) => ({ id, name: `tool-${id}`, type: 'mcp' }))).execute();
  await db.insertInto('providers').values([{ id: LEGACY_PROVIDER, name: 'legacy', apiKey: 'sk-legacy-plaintext' }, { id: SEALED_PROVIDER, name: 'sealed' }]).execute();
  await db.insertInto('userTools').values({ tenantId: tenants.a, userId: users.a, toolId: TOOLS[0]!, credential: JSON.stringify({ token: 'legacy-plaintext-token' }) }).execute();
  await migrate(db);
  // Under k1: a provider key and three credentials.
  await db.updateTable('providers').set({ apiKey: sealSecret(ringOf([k1]), 'sk-sealed-provider', providerKeyBinding(SEALED_PROVIDER)) }).where('id', '=', SEALED_PROVIDER).execute();
  await cms(tenants.a, (tx) => setUserToolCredential(tx, { userId: users.a, toolId: TOOLS[1]!, credential: { token: 'a-1' } }));
  await cms(tenants.a, (tx) => setUserToolCredential(tx, { userId: users.a, toolId: TOOLS[2]!, credential: { token: 'a-2' } }));
  await cms(tenants.b, (tx) => setUserToolCredential(tx, { userId: users.b, toolId: TOOLS[1]!, credential: { token: 'b-1' } }));
});
afterAll(async () => {
  await db?.destroy();
  await server?.close();
  if (storeDir !== undefined) rmSync(storeDir, { recursive: true, force: true });
});

describe('rotateSecrets', () => {
  it('before: plaintext values are refused, k1 values open while k1 is in the ring, and only then', async () => {
    expect((await keyIdsOf()).sort()).toEqual(['k1', 'k1', 'k1', 'k1', 'plaintext', 'plaintext']);
    await reopen(ringOf([k2, k1]));
    await expect(gateway((tx) => getProviderCredentials(tx, { providerId: LEGACY_PROVIDER }))).rejects.toMatchObject({ name: 'SecretError', reason: 'plaintext' });
    await expect(cms(tenants.a, (tx) => getUserToolCredential(tx, { userId: users.a, toolId: TOOLS[0]! }))).rejects.toMatchObject({ reason: 'plaintext' });
    expect((await gateway((tx) => getProviderCredentials(tx, { providerId: SEALED_PROVIDER }))).apiKey).toBe('sk-sealed-provider');
    expect(await cms(tenants.b, (tx) => getUserToolCredential(tx, { userId: users.b, toolId: TOOLS[1]! }))).toEqual({ token: 'b-1' });
    await reopen(ringOf([k2]));
    await expect(cms(tenants.b, (tx) => getUserToolCredential(tx, { userId: users.b, toolId: TOOLS[1]! }))).rejects.toMatchObject({
      name: 'SecretError', reason: 'unknown-key', keyId: 'k1', message: expect.stringContaining('which DB_SECRET_KEYS does not hold (it holds k2)'),
    });
  });

  it('moves every value to the current key, in batches, encrypting the plaintext ones', async () => {
    await reopen(ringOf([k1, k2], 'k2'));
    const lines: string[] = [];
    const rotation = await rotateSecrets(db, { batchSize: 2, log: (line) => lines.push(line) });
    expect(rotation).toEqual({
      keyId: 'k2',
      rewritten: 6,
      failed: 0,
      columns: [
        { column: 'providers.api_key', values: 2, reencrypted: { k1: 1 }, plaintext: 1, current: 0, failed: [], keyIds: { k2: 2 } },
        { column: 'user_tools.credential', values: 4, reencrypted: { k1: 3 }, plaintext: 1, current: 0, failed: [], keyIds: { k2: 4 } },
      ],
    });
    expect(lines).toEqual([
      'secrets: providers.api_key: 2 values: 1 re-encrypted (from k1: 1), 1 plaintext encrypted, 0 already under k2; now k2: 2',
      'secrets: user_tools.credential: 4 values: 3 re-encrypted (from k1: 3), 1 plaintext encrypted, 0 already under k2; now k2: 4',
    ]);
    expect(await keyIdsOf()).toEqual(['k2', 'k2', 'k2', 'k2', 'k2', 'k2']);
    const stored = JSON.stringify(await storedSecrets());
    for (const plaintext of ['sk-legacy-plaintext', 'legacy-plaintext-token', 'sk-sealed-provider', '"a-1"']) expect(stored).not.toContain(plaintext);
  });

  it('after: the new key alone opens everything; the old key alone opens nothing', async () => {
    await reopen(ringOf([k2]));
    expect((await gateway((tx) => getProviderCredentials(tx, { providerId: LEGACY_PROVIDER }))).apiKey).toBe('sk-legacy-plaintext');
    expect((await gateway((tx) => getProviderCredentials(tx, { providerId: SEALED_PROVIDER }))).apiKey).toBe('sk-sealed-provider');
    expect(await cms(tenants.a, (tx) => getUserToolCredential(tx, { userId: users.a, toolId: TOOLS[0]! }))).toEqual({ token: 'legacy-plaintext-token' });
    expect(await cms(tenants.a, (tx) => getUserToolCredential(tx, { userId: users.a, toolId: TOOLS[2]! }))).toEqual({ token: 'a-2' });
    expect(await cms(tenants.b, (tx) => getUserToolCredential(tx, { userId: users.b, toolId: TOOLS[1]! }))).toEqual({ token: 'b-1' });
    await reopen(ringOf([k1]));
    await expect(cms(tenants.a, (tx) => getUserToolCredential(tx, { userId: users.a, toolId: TOOLS[1]! }))).rejects.toMatchObject({ reason: 'unknown-key', keyId: 'k2' });
    await expect(gateway((tx) => getProviderCredentials(tx, { providerId: SEALED_PROVIDER }))).rejects.toMatchObject({ reason: 'unknown-key', keyId: 'k2' });
  });

  it('is idempotent: a second run rewrites nothing', async () => {
    await reopen(ringOf([k2, k1]));
    const before = await versions();
    const rotation = await rotateSecrets(db);
    expect(rotation).toMatchObject({ keyId: 'k2', rewritten: 0, failed: 0 });
    expect(rotation.columns.map((c) => [c.current, c.keyIds])).toEqual([[2, { k2: 2 }], [4, { k2: 4 }]]);
    expect(await versions()).toEqual(before);
  });

  it('a value it cannot open is named and left as it is; the others are rotated; adding its key fixes it', async () => {
    await reopen(ringOf([k1, k2], 'k1')); // back to k1 (e.g. a rotation rolled back)
    const stray = sealSecret(ringOf([k0]), JSON.stringify({ token: 'under-k0' }), userToolBinding(tenants.a, users.a, TOOLS[2]!));
    await sql`update user_tools set credential = ${JSON.stringify({ v: 1, enc: stray })}::jsonb where user_id = ${users.a} and tool_id = ${TOOLS[2]!}`.execute(db);
    const rotation = await rotateSecrets(db);
    expect(rotation).toMatchObject({ keyId: 'k1', rewritten: 5, failed: 1 });
    expect(rotation.columns[1]!.failed).toEqual([{
      binding: userToolBinding(tenants.a, users.a, TOOLS[2]!),
      keyId: 'k0',
      reason: 'unknown-key',
      message: `${userToolBinding(tenants.a, users.a, TOOLS[2]!)} is encrypted under key id k0, which DB_SECRET_KEYS does not hold (it holds k1, k2): add that key to DB_SECRET_KEYS`,
    }]);
    expect(rotation.columns[1]!.keyIds).toEqual({ k1: 3, k0: 1 });
    expect((await storedSecrets()).some((s) => s.value.includes(stray))).toBe(true);
    await reopen(ringOf([k1, k0]));
    expect(await rotateSecrets(db)).toMatchObject({ rewritten: 1, failed: 0 });
    expect(await cms(tenants.a, (tx) => getUserToolCredential(tx, { userId: users.a, toolId: TOOLS[2]! }))).toEqual({ token: 'under-k0' });
  });

  it("the seed's ledger follows a rotated provider key: the next seed writes nothing and keeps nothing", async () => {
    await reopen(ringOf([k1]));
    const env = { GEMINI_API_KEY: 'AIza-seeded-then-rotated' };
    const quiet = { env, log: () => {}, warn: () => {} };
    await seed(db, quiet);
    await reopen(ringOf([k2, k1]));
    expect((await rotateSecrets(db)).columns[0]!.reencrypted).toEqual({ k1: 3 });
    const summary = await seed(db, quiet);
    expect(summary).toMatchObject({ changed: false, kept: [], updated: 0 });
    expect((await gateway((tx) => getProviderCredentials(tx, { providerId: 2 }))).apiKey).toBe('AIza-seeded-then-rotated');
  });

  it('refuses a transaction and a bad batch size', async () => {
    await expect(db.transaction().execute((tx) => rotateSecrets(tx))).rejects.toThrow(/needs the database, not a transaction/);
    await expect(rotateSecrets(db, { batchSize: 0 })).rejects.toBeInstanceOf(ConfigError);
  });
});

describe.runIf(onServer)('as a service login', () => {
  it('is refused: it must read every tenant past row-level security', async () => {
    const login = await createLoginRole(server!, 'app_cms');
    const asCms = createDb(postgresConfig({ connectionString: login.url, poolMax: 1, appRole: 'app_cms', secretKeys: ringOf([k2]) }));
    try {
      const error = await rotateSecrets(asCms).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toMatch(/^role app_cms cannot rotate the secrets: it reads every tenant's user_tools past row-level security/);
    } finally {
      await asCms.destroy();
      await login.drop();
    }
  });
});
