import { sql } from 'kysely';
import type { TenantTx } from '../db/tenant-tx.ts';
import { tenantOf } from '../db/tenant.ts';
import { assertText, assertUuid } from './validate.ts';
import { assertRole } from '../db/service-roles.ts';

/**
 * True when the user (active, in the current tenant) holds a policy for `action` on `resource`
 * through their role. One statement; an unknown or disabled user can do nothing.
 *
 * @example
 * if (!(await can(tx, { userId, resource: 'users', action: 'manage' }))) throw new Forbidden();
 *
 * Roles: app_server (README, "Production roles").
 */
export async function can(db: TenantTx, params: { userId: string; resource: string; action: string }): Promise<boolean> {
  assertRole(db, 'can');
  const tenantId = tenantOf(db);
  assertUuid('userId', params.userId);
  assertText('resource', params.resource, 200);
  assertText('action', params.action, 200);
  const row = await db
    .selectNoFrom((eb) =>
      eb
        .exists(
          eb
            .selectFrom('users as u')
            .innerJoin('rolePolicies as rp', 'rp.roleId', 'u.roleId')
            .innerJoin('policies as p', 'p.id', 'rp.policyId')
            .select(sql`1`.as('one'))
            .where('u.tenantId', '=', tenantId)
            .where('u.id', '=', params.userId)
            .where('u.status', '=', 'active')
            .where('p.resource', '=', params.resource)
            .where('p.action', '=', params.action),
        )
        .as('allowed'),
    )
    .executeTakeFirstOrThrow();
  return row.allowed === true;
}
