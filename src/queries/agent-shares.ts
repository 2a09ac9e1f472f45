/**
 * Who an agent is shared with (user_agents): listing the shares of an agent and removing one.
 * shareAgent, which adds or changes a share, is in agents.ts.
 */
import { sql } from 'kysely';
import { NotFoundError } from '../db/errors.ts';
import { assertRole } from '../db/service-roles.ts';
import { tenantOf } from '../db/tenant.ts';
import type { TenantTx } from '../db/tenant-tx.ts';
import { visibleAgent, type UserAgent } from './agents.ts';
import { cursorTimestamp, decodeCursor, keysetPast, toPage, type CursorScope, type Page } from './cursor.ts';
import { assertUuid, pageLimit } from './validate.ts';

/**
 * Stops sharing agent `agentId` with user `userId`; true when it was shared. The user's
 * conversations with the agent stay (what they may start next is listAgentsForUser's answer).
 * A share of another tenant is never seen: false, as for none.
 *
 * @example
 * const removed = await withTenant(db, tenantId, (tx) => unshareAgent(tx, { agentId, userId }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function unshareAgent(db: TenantTx, params: { agentId: string; userId: string }): Promise<boolean> {
  assertRole(db, 'unshareAgent');
  const tenantId = tenantOf(db);
  assertUuid('agentId', params.agentId);
  assertUuid('userId', params.userId);
  const result = await db
    .deleteFrom('userAgents')
    .where('tenantId', '=', tenantId)
    .where('userId', '=', params.userId)
    .where('agentId', '=', params.agentId)
    .executeTakeFirst();
  return result.numDeletedRows > 0n;
}

/**
 * One page of the users agent `agentId` is shared with (their user_agents rows, with the role),
 * oldest share first: keyset on (created_at, id), `limit` 1..200 (default 50); pass `nextCursor`
 * back as `cursor`, with the same agent, for the next page (null: no more). The agent must be
 * global or the tenant's (retired ones included) → else NotFoundError('agent'); only this
 * tenant's shares are listed, also of a global agent. One statement.
 *
 * @example
 * const { items, nextCursor } = await withTenant(db, tenantId, (tx) => listAgentShares(tx, { agentId, limit: 20 }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function listAgentShares(
  db: TenantTx,
  params: { agentId: string; limit?: number; cursor?: string | null },
): Promise<Page<UserAgent>> {
  assertRole(db, 'listAgentShares');
  const tenantId = tenantOf(db);
  assertUuid('agentId', params.agentId);
  const limit = pageLimit(params.limit);
  const scope: CursorScope = { list: 'agent_shares', tenantId, scope: params.agentId.toLowerCase() };
  const after = params.cursor == null ? undefined : decodeCursor(params.cursor, scope);
  // From the agent, left-joined to the page: no row means no such agent for this tenant; one
  // row with a null share means an agent shared with nobody (after the cursor).
  const rows = await db
    .selectFrom('agents as a')
    .leftJoinLateral(
      (eb) =>
        eb
          .selectFrom('userAgents as ua')
          .select(['ua.id', 'ua.userId', 'ua.agentId', 'ua.role', 'ua.createdAt', 'ua.updatedAt'])
          .select((eb) => cursorTimestamp(eb.ref('ua.createdAt')).as('cursorAt'))
          .where('ua.tenantId', '=', tenantId)
          .whereRef('ua.agentId', '=', 'a.id')
          .$if(after !== undefined, (qb) => qb.where(keysetPast(sql.ref('ua.createdAt'), sql.ref('ua.id'), after!, 'after')))
          .orderBy('ua.createdAt')
          .orderBy('ua.id')
          .limit(limit + 1)
          .as('s'),
      (join) => join.onTrue(),
    )
    .select(['s.id', 's.userId', 's.agentId', 's.role', 's.createdAt', 's.updatedAt', 's.cursorAt'])
    .where('a.id', '=', params.agentId)
    .where((eb) => visibleAgent(eb, tenantId, 'tenant'))
    .orderBy('s.createdAt')
    .orderBy('s.id')
    .execute();
  if (rows.length === 0) throw new NotFoundError('agent', params.agentId);
  const shares = rows.filter((row) => row.id !== null) as (UserAgent & { cursorAt: string })[];
  return toPage(shares, limit, scope);
}
