/** listUsage: the spend log, one page at a time. */
import { ValidationError } from '../db/errors.ts';
import { assertRole } from '../db/service-roles.ts';
import { tenantOf } from '../db/tenant.ts';
import type { TenantTx } from '../db/tenant-tx.ts';
import { cursorTimestamp, decodeCursor, keysetPast, toPage, type CursorScope, type Page } from './cursor.ts';
import { usageColumns, type UsageRow } from './usage.ts';
import { assertDate, assertInt, assertUuid, pageLimit } from './validate.ts';

/** Filters of listUsage; all optional. `from <= createdAt < to`. */
export interface ListUsageParams {
  userId?: string;
  modelId?: number;
  agentId?: string;
  from?: Date;
  to?: Date;
  /** 1..200 (default 50). */
  limit?: number;
  /** The previous page's nextCursor, with the same filters. */
  cursor?: string | null;
}

/**
 * One page of the current tenant's usage rows (the spend log), newest first (keyset on
 * created_at desc, id desc), filtered by user, model, agent and time range (`from` inclusive,
 * `to` exclusive). Costs are exact decimal text. Pass `nextCursor` back as `cursor` with the same
 * filters for the next page (null: no more); a cursor of other filters → ValidationError('cursor').
 *
 * @example
 * const page = await withTenant(db, tenantId, (tx) => listUsage(tx, { userId, from: new Date('2026-12-01'), limit: 100 }));
 * page.items[0].cost; // '0.012207'
 *
 * Roles: app_server (README, "Production roles").
 */
export async function listUsage(db: TenantTx, params: ListUsageParams = {}): Promise<Page<UsageRow>> {
  assertRole(db, 'listUsage');
  const tenantId = tenantOf(db);
  if (typeof params !== 'object' || params === null) throw new ValidationError('params', 'must be an object');
  const limit = pageLimit(params.limit);
  if (params.userId !== undefined) assertUuid('userId', params.userId);
  if (params.agentId !== undefined) assertUuid('agentId', params.agentId);
  if (params.modelId !== undefined) assertInt('modelId', params.modelId, 1);
  if (params.from !== undefined) assertDate('from', params.from);
  if (params.to !== undefined) assertDate('to', params.to);
  const filters = {
    u: params.userId?.toLowerCase() ?? null,
    m: params.modelId ?? null,
    a: params.agentId?.toLowerCase() ?? null,
    f: params.from?.toISOString() ?? null,
    t: params.to?.toISOString() ?? null,
  };
  const scope: CursorScope = { list: 'usage', tenantId, scope: JSON.stringify(filters) };
  const after = params.cursor == null ? undefined : decodeCursor(params.cursor, scope);
  const rows = await db
    .selectFrom('usage')
    .select((eb) => [...usageColumns(eb), cursorTimestamp(eb.ref('createdAt')).as('cursorAt')])
    .where('tenantId', '=', tenantId)
    .$if(params.userId !== undefined, (qb) => qb.where('userId', '=', params.userId!))
    .$if(params.modelId !== undefined, (qb) => qb.where('modelId', '=', params.modelId!))
    .$if(params.agentId !== undefined, (qb) => qb.where('agentId', '=', params.agentId!))
    .$if(params.from !== undefined, (qb) => qb.where('createdAt', '>=', params.from!))
    .$if(params.to !== undefined, (qb) => qb.where('createdAt', '<', params.to!))
    .$if(after !== undefined, (qb) => qb.where((eb) => keysetPast(eb.ref('createdAt'), eb.ref('id'), after!)))
    .orderBy('createdAt', 'desc')
    .orderBy('id', 'desc')
    .limit(limit + 1)
    .execute();
  return toPage(rows, limit, scope);
}
