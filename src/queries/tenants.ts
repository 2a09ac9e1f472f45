import { sql, type Selectable } from 'kysely';
import type { Executor } from '../db/create-db.ts';
import type { TenantTx } from '../db/tenant-tx.ts';
import { TenantContextError, ValidationError, sqlState } from '../db/errors.ts';
import type { Json, Tenants } from '../db/schema.generated.ts';
import { tenantOf } from '../db/tenant.ts';
import { assertText } from './validate.ts';
import { assertRole } from '../db/service-roles.ts';
import { settingsPatch, type TenantSettingsPatch } from './tenant-settings.ts';

/** A tenant as the API returns it. */
export type Tenant = Pick<Selectable<Tenants>, 'id' | 'name' | 'slug' | 'plan' | 'settings' | 'createdAt' | 'updatedAt'>;

const TENANT_COLUMNS = ['id', 'name', 'slug', 'plan', 'settings', 'createdAt', 'updatedAt'] as const;
const PLAN = /^[a-z0-9][a-z0-9_-]{0,49}$/;
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

/**
 * Changes the current tenant's name, plan and settings (any of them). `settings` is a patch: a
 * key given replaces that setting, `null` removes it, keys left out stay. The known settings are
 * `maxMonthlySpend` (the monthly spend cap, an exact decimal: stored as decimal text),
 * `allowedDomains` and `features` (lists of strings); any other key → ValidationError naming
 * `settings.<key>`. The plan (billing's) goes through the admin function app.set_tenant_plan; a
 * plan is 1-50 of a-z 0-9 _ - (`free`, `business`). All in the caller's transaction.
 *
 * @example
 * await withTenant(db, tenantId, (tx) => updateTenant(tx, { plan: 'business', settings: { maxMonthlySpend: '1000' } }));
 *
 * Roles: app_server (README, "Production roles").
 */
export async function updateTenant(
  db: TenantTx,
  params: { name?: string; plan?: string; settings?: TenantSettingsPatch },
): Promise<Tenant> {
  assertRole(db, 'updateTenant');
  const tenantId = tenantOf(db);
  if (typeof params !== 'object' || params === null) throw new ValidationError('params', 'must be an object');
  if (params.name !== undefined) assertText('name', params.name, 200);
  if (params.plan !== undefined && (typeof params.plan !== 'string' || !PLAN.test(params.plan))) {
    throw new ValidationError('plan', `must be 1-50 of a-z 0-9 _ - starting with a letter or digit, got ${JSON.stringify(params.plan)}`);
  }
  const patch = params.settings === undefined ? undefined : settingsPatch(params.settings);
  if (params.name === undefined && params.plan === undefined && patch === undefined) {
    throw new ValidationError('params', 'give at least one of name, plan, settings');
  }
  if (params.plan !== undefined) {
    await sql`select app.set_tenant_plan(${params.plan}::text)`.execute(db);
  }
  if (params.name !== undefined || patch !== undefined) {
    const update = db
      .updateTable('tenants')
      .set((eb) => ({
        ...(params.name === undefined ? {} : { name: params.name!.trim() }),
        ...(patch === undefined
          ? {}
          : { settings: sql<Json>`(${eb.ref('settings')} - ${patch.remove}::text[]) || ${patch.set}::jsonb` }),
      }))
      .where('id', '=', tenantId);
    try {
      await update.execute();
    } catch (error) {
      // tenants_settings_known: settings stored before migration 0014 whose known keys are invalid.
      if (sqlState(error) === '23514') throw new ValidationError('settings', `the stored settings are invalid: ${(error as Error).message}`);
      throw error;
    }
  }
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
