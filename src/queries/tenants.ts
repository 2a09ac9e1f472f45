import type { Selectable } from 'kysely';
import type { Executor } from '../db/create-db.ts';
import type { TenantTx } from '../db/tenant-tx.ts';
import { TenantContextError, ValidationError, sqlState } from '../db/errors.ts';
import type { Tenants } from '../db/schema.generated.ts';
import { tenantOf } from '../db/tenant.ts';
import { assertText } from './validate.ts';
import { assertRole } from '../db/service-roles.ts';

/** A tenant as the API returns it. */
export type Tenant = Pick<Selectable<Tenants>, 'id' | 'name' | 'slug' | 'plan' | 'settings' | 'createdAt' | 'updatedAt'>;

const TENANT_COLUMNS = ['id', 'name', 'slug', 'plan', 'settings', 'createdAt', 'updatedAt'] as const;
const SLUG = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Creates a tenant. An owner/admin operation: call it with the database (a role that owns the
 * schema or bypasses RLS), not inside withTenant. A taken slug → ValidationError('slug').
 *
 * @example
 * const acme = await createTenant(db, { name: 'Acme', slug: 'acme', plan: 'pro' });
 */
export async function createTenant(db: Executor, params: { name: string; slug: string; plan?: string }): Promise<Tenant> {
  assertText('name', params.name, 200);
  if (typeof params.slug !== 'string' || !SLUG.test(params.slug)) {
    throw new ValidationError('slug', 'must be 1-63 lowercase letters, digits or inner hyphens');
  }
  if (params.plan !== undefined) assertText('plan', params.plan, 50);
  if (isTenantScoped(db)) {
    throw new TenantContextError('createTenant is an owner operation: call it with the database, not inside withTenant');
  }
  try {
    return await db
      .insertInto('tenants')
      .values({ name: params.name.trim(), slug: params.slug, ...(params.plan === undefined ? {} : { plan: params.plan }) })
      .returning(TENANT_COLUMNS)
      .executeTakeFirstOrThrow();
  } catch (error) {
    if (sqlState(error) === '23505') throw new ValidationError('slug', `${params.slug} is taken`);
    throw error;
  }
}

/** The tenant of the current withTenant transaction. Roles: app_server and app_gateway and app_cms. */
export async function getCurrentTenant(db: TenantTx): Promise<Tenant> {
  assertRole(db, 'getCurrentTenant');
  const tenantId = tenantOf(db);
  return db.selectFrom('tenants').select(TENANT_COLUMNS).where('id', '=', tenantId).executeTakeFirstOrThrow();
}

function isTenantScoped(db: Executor): boolean {
  try {
    tenantOf(db);
    return true;
  } catch {
    return false;
  }
}
