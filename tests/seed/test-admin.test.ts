import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authenticateApiKey } from '../../src/queries/users.ts';
import { seed } from '../../src/seed/seed.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';
import { emptySeedTables, quiet } from './seed-fixtures.ts';

// An operator-chosen key: any 32..256 visible ASCII characters.
const KEY = 'local-dev-admin-key-0123456789abcdef';
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

let t: TestDb;
beforeAll(async () => {
  t = await openTestDb();
  await emptySeedTables(t.db);
});
afterAll(() => t?.close());

/** What app.resolve_api_key finds for a key, called as the application role without any tenant context. */
async function resolve(key: string) {
  return t.db.transaction().execute(async (tx) => {
    await sql`select set_config('role', 'app_user', true)`.execute(tx); // not SET LOCAL ROLE: Citus would send it to the workers, where it would also bind the SECURITY DEFINER functions' connections
    const { rows } = await sql<{ tenantId: string; userId: string }>`select * from app.resolve_api_key(${sha256(key)})`.execute(tx);
    return rows;
  });
}

describe('TEST_API_KEY', () => {
  it('creates the default tenant and an admin user that the key resolves to', async () => {
    const summary = await seed(t.db, { ...quiet, env: { TEST_API_KEY: KEY } });
    expect(summary.testAdmin).toBe('created');
    const found = await resolve(KEY);
    expect(found).toHaveLength(1);
    const user = await t.db
      .selectFrom('users')
      .innerJoin('tenants', 'tenants.id', 'users.tenantId')
      .innerJoin('roles', 'roles.id', 'users.roleId')
      .select(['users.id', 'users.email', 'users.status', 'tenants.slug', 'roles.name as role'])
      .executeTakeFirstOrThrow();
    expect(user).toEqual({ id: found[0]!.userId, email: 'admin@default.local', status: 'active', slug: 'default', role: 'admin' });
  });

  it('authenticateApiKey finds the admin by the key', async () => {
    const owner = await authenticateApiKey(t.db, KEY);
    const admin = await t.db.selectFrom('users').select(['tenantId', 'id as userId', 'roleId']).executeTakeFirstOrThrow();
    expect(owner).toEqual(admin);
  });

  it('stores only the sha256 of the key: the key itself is in no column of users or tenants', async () => {
    const { rows } = await sql<{ n: number }>`
      select (select count(*) from users u where to_jsonb(u)::text like '%' || ${KEY} || '%')::int
           + (select count(*) from tenants x where to_jsonb(x)::text like '%' || ${KEY} || '%')::int as n`.execute(t.db);
    expect(rows[0]!.n).toBe(0);
    const user = await t.db.selectFrom('users').select('apiKeyHash').executeTakeFirstOrThrow();
    expect(user.apiKeyHash).toBe(sha256(KEY));
  });

  it('is found again on the next run: same user, nothing written', async () => {
    const before = await t.db.selectFrom('users').select(['id', 'updatedAt']).execute();
    const summary = await seed(t.db, { ...quiet, env: { TEST_API_KEY: KEY } });
    expect(summary).toMatchObject({ testAdmin: 'unchanged', changed: false });
    expect(await t.db.selectFrom('users').select(['id', 'updatedAt']).execute()).toEqual(before);
    expect(await t.db.selectFrom('tenants').select('slug').execute()).toEqual([{ slug: 'default' }]);
  });

  it('a new TEST_API_KEY replaces the old one', async () => {
    const summary = await seed(t.db, { ...quiet, env: { TEST_API_KEY: `${KEY}-rotated` } });
    expect(summary.testAdmin).toBe('updated');
    expect(await resolve(KEY)).toEqual([]);
    expect(await resolve(`${KEY}-rotated`)).toHaveLength(1);
    expect(await t.db.selectFrom('users').select('id').execute()).toHaveLength(1);
  });

  it('refuses a TEST_API_KEY that could never authenticate, writing nothing', async () => {
    for (const bad of ['aaaaaaaa', 'x'.repeat(31), 'has a space in it but is long enough', 'x'.repeat(257)]) {
      await expect(seed(t.db, { ...quiet, env: { TEST_API_KEY: bad } })).rejects.toThrow(/TEST_API_KEY must be 32 to 256 visible ASCII/);
    }
    expect(await resolve(`${KEY}-rotated`)).toHaveLength(1);
  });

  it('without TEST_API_KEY, no user is created or changed', async () => {
    const summary = await seed(t.db, quiet);
    expect(summary.testAdmin).toBeUndefined();
    expect(await resolve(`${KEY}-rotated`)).toHaveLength(1);
  });
});
