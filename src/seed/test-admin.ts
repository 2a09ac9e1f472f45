import { sql, type Kysely } from 'kysely';
import { hashApiKey, isPlausibleApiKey } from '../queries/users.ts';
import { SeedError } from './errors.ts';

/** Slug of the tenant the test admin belongs to. */
export const DEFAULT_TENANT_SLUG = 'default';
/** Email of the admin user created for TEST_API_KEY. */
export const TEST_ADMIN_EMAIL = 'admin@default.local';
/** Role of the test admin (a row of roles.csv). */
export const TEST_ADMIN_ROLE = 'admin';

/** What {@link ensureTestAdmin} did: created the user, changed its key hash, or found it as it should be. */
export type TestAdminOutcome = 'created' | 'updated' | 'unchanged';

/**
 * Makes sure the `default` tenant exists with an admin user (admin@default.local, role admin)
 * whose API key is `apiKey`; only the key's sha256 hex is stored. Found again on the next run:
 * nothing is rewritten unless the key changed. Runs as the owner inside the seed's transaction
 * (row-level security does not bind a superuser or BYPASSRLS role).
 */
export async function ensureTestAdmin(tx: Kysely<any>, apiKey: string): Promise<TestAdminOutcome> {
  if (!isPlausibleApiKey(apiKey)) {
    throw new SeedError([], 'TEST_API_KEY must be 8 to 256 visible ASCII characters (no spaces): authenticateApiKey would never accept it; nothing was written');
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
  const { rows } = await sql<{ inserted: boolean }>`
    insert into users as cur (tenant_id, email, first_name, last_name, role_id, api_key_hash)
    values (${tenantId}::uuid, ${TEST_ADMIN_EMAIL}, 'Test', 'Admin', ${roleId}::integer, ${hashApiKey(apiKey)})
    on conflict (tenant_id, email) do update set api_key_hash = excluded.api_key_hash
    where cur.api_key_hash is distinct from excluded.api_key_hash
    returning (xmax = 0) as inserted`.execute(conn);
  const row = rows[0];
  return row === undefined ? 'unchanged' : row.inserted ? 'created' : 'updated';
}
