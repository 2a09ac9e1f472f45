import { sql, type Kysely } from 'kysely';
import { hashApiKey } from '../queries/users.ts';
import { SeedError } from './errors.ts';

/** Slug of the tenant the test admin belongs to. */
export const DEFAULT_TENANT_SLUG = 'default';
/** Email of the admin user created for TEST_API_KEY. */
export const TEST_ADMIN_EMAIL = 'admin@default.local';
/** Role of the test admin (a row of roles.csv). */
export const TEST_ADMIN_ROLE = 'admin';

/** Fewest characters TEST_API_KEY may have: it is an admin key (generated keys have 46). */
export const MIN_TEST_API_KEY_LENGTH = 32;
const TEST_API_KEY = new RegExp(`^[\\x21-\\x7e]{${MIN_TEST_API_KEY_LENGTH},256}$`);

/** What {@link ensureTestAdmin} did: created the user, changed its key hash, or found it as it should be. */
export type TestAdminOutcome = 'created' | 'updated' | 'unchanged';

/**
 * Makes sure the `default` tenant exists with an admin user (admin@default.local, role admin)
 * whose API key is `apiKey`; only the key's sha256 hex is stored. Found again on the next run:
 * nothing is rewritten unless the key changed. Runs as the owner inside the seed's transaction
 * (row-level security does not bind a superuser or BYPASSRLS role).
 */
export async function ensureTestAdmin(tx: Kysely<any>, apiKey: string): Promise<TestAdminOutcome> {
  if (!TEST_API_KEY.test(apiKey)) {
    throw new SeedError(
      [],
      `TEST_API_KEY must be ${MIN_TEST_API_KEY_LENGTH} to 256 visible ASCII characters (no spaces), got ${apiKey.length} characters: ` +
        'it becomes an admin key of the default tenant, so it must be as hard to guess as a generated one; nothing was written',
    );
  }
  const conn = tx.withoutPlugins();
  await sql`insert into tenants (name, slug) values ('Default', ${DEFAULT_TENANT_SLUG})
            on conflict (slug) do nothing`.execute(conn);
  const tenant = await sql<{ id: string }>`select id from tenants where slug = ${DEFAULT_TENANT_SLUG}`.execute(conn);
  const role = await sql<{ id: number }>`select id from roles where name = ${TEST_ADMIN_ROLE}`.execute(conn);
  const tenantId = tenant.rows[0]?.id;
  const roleId = role.rows[0]?.id;
  if (tenantId === undefined) throw new SeedError([], `TEST_API_KEY: the ${DEFAULT_TENANT_SLUG} tenant could not be created or read`);
  if (roleId === undefined) {
    throw new SeedError([], `TEST_API_KEY is set, but there is no role named ${TEST_ADMIN_ROLE} for the test admin (roles.csv); nothing was written`);
  }
  // What is there decides the outcome (not `returning (xmax = 0)`: Citus cannot return a system
  // column of a distributed table); the upsert stays safe against a concurrent first run.
  const hash = hashApiKey(apiKey);
  const before = await sql<{ hash: string | null }>`
    select api_key_hash as hash from users where tenant_id = ${tenantId}::uuid and email = ${TEST_ADMIN_EMAIL}`.execute(conn);
  const existing = before.rows[0];
  if (existing !== undefined && existing.hash === hash) return 'unchanged';
  await sql`
    insert into users as cur (tenant_id, email, first_name, last_name, role_id, api_key_hash)
    values (${tenantId}::uuid, ${TEST_ADMIN_EMAIL}, 'Test', 'Admin', ${roleId}::integer, ${hash})
    on conflict (tenant_id, email) do update set api_key_hash = excluded.api_key_hash
    where cur.api_key_hash is distinct from excluded.api_key_hash`.execute(conn);
  return existing === undefined ? 'created' : 'updated';
}
