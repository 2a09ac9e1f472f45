/** Budget alerts: listBudgetAlerts and resolveBudgetAlert (the alerts are recorded by the charge, see recordUsage). */
import { sql } from 'kysely';
import { NotFoundError, ValidationError } from '../db/errors.ts';
import { assertRole } from '../db/service-roles.ts';
import { tenantOf } from '../db/tenant.ts';
import type { TenantTx } from '../db/tenant-tx.ts';
import { cursorTimestamp, decodeCursor, keysetPast, toPage, type CursorScope, type Page } from './cursor.ts';
import { decimalText } from './decimal.ts';
import { assertUuid, pageLimit } from './validate.ts';

/** A threshold of a budget crossed by a charge; amounts exact decimal text. */
export interface BudgetAlert {
  id: string;
  /** 'user': a user's budget window (userId set); 'tenant': the tenant's monthly cap (userId null). */
  scope: 'user' | 'tenant';
  userId: string | null;
  /** The window crossed in; null for a lifetime budget. */
  windowStart: Date | null;
  /** Percent of the budget. */
  threshold: number;
  /** 'warning' below 100 %, 'critical' from 100 %. */
  severity: 'warning' | 'critical';
  /** The budget (or cap) when it was crossed, and what had been spent then, this charge included. */
  budget: string;
  spent: string;
  /** The charge that crossed it. */
  usageId: string;
  resolvedAt: Date | null;
  createdAt: Date;
}

/** Filters of listBudgetAlerts. */
export interface ListBudgetAlertsParams {
  /** 'open' (not resolved) or 'resolved'; both when left out. */
  status?: 'open' | 'resolved';
  userId?: string;
  scope?: 'user' | 'tenant';
  limit?: number;
  cursor?: string | null;
}

/**
 * One page of the current tenant's budget alerts, newest first (keyset on created_at desc, id
 * desc), filtered by status (open or resolved), user and scope. A charge records an alert when it
 * takes a user's window or the tenant's month past a threshold of its budget
 * (tenants.settings.budgetAlertThresholds, default [80, 100] percent): once per window and
 * threshold, in the charge's own statement, and notifies channel `budget_alerts` with
 * `{ tenantId, alertId }` at commit (a service may LISTEN instead of polling).
 *
 * @example
 * const open = await withTenant(db, tenantId, (tx) => listBudgetAlerts(tx, { status: 'open' }));
 *
 * Roles: app_server (README, "Production roles").
 */
export async function listBudgetAlerts(db: TenantTx, params: ListBudgetAlertsParams = {}): Promise<Page<BudgetAlert>> {
  assertRole(db, 'listBudgetAlerts');
  const tenantId = tenantOf(db);
  if (typeof params !== 'object' || params === null) throw new ValidationError('params', 'must be an object');
  const limit = pageLimit(params.limit);
  if (params.status !== undefined && params.status !== 'open' && params.status !== 'resolved') {
    throw new ValidationError('status', `must be 'open' or 'resolved', got ${JSON.stringify(params.status)}`);
  }
  if (params.scope !== undefined && params.scope !== 'user' && params.scope !== 'tenant') {
    throw new ValidationError('scope', `must be 'user' or 'tenant', got ${JSON.stringify(params.scope)}`);
  }
  if (params.userId !== undefined) assertUuid('userId', params.userId);
  const filters = { s: params.status ?? null, u: params.userId?.toLowerCase() ?? null, c: params.scope ?? null };
  const scope: CursorScope = { list: 'budget-alerts', tenantId, scope: JSON.stringify(filters) };
  const after = params.cursor == null ? undefined : decodeCursor(params.cursor, scope);
  const rows = await alertQuery(db, tenantId)
    .select((eb) => cursorTimestamp(eb.ref('createdAt')).as('cursorAt'))
    .$if(params.status === 'open', (qb) => qb.where('resolvedAt', 'is', null))
    .$if(params.status === 'resolved', (qb) => qb.where('resolvedAt', 'is not', null))
    .$if(params.userId !== undefined, (qb) => qb.where('userId', '=', params.userId!))
    .$if(params.scope !== undefined, (qb) => qb.where('scope', '=', params.scope!))
    .$if(after !== undefined, (qb) => qb.where((eb) => keysetPast(eb.ref('createdAt'), eb.ref('id'), after!)))
    .orderBy('createdAt', 'desc')
    .orderBy('id', 'desc')
    .limit(limit + 1)
    .execute();
  return toPage(rows, limit, scope);
}

/**
 * Marks an alert resolved (now) and returns it; one resolved before keeps its time. Another
 * tenant's alert, or none → NotFoundError('budget alert').
 *
 * @example
 * await withTenant(db, tenantId, (tx) => resolveBudgetAlert(tx, { alertId }));
 *
 * Roles: app_server (README, "Production roles").
 */
export async function resolveBudgetAlert(db: TenantTx, params: { alertId: string }): Promise<BudgetAlert> {
  assertRole(db, 'resolveBudgetAlert');
  const tenantId = tenantOf(db);
  if (typeof params !== 'object' || params === null) throw new ValidationError('params', 'must be an object');
  assertUuid('alertId', params.alertId);
  await db
    .updateTable('budgetAlerts')
    .set({ resolvedAt: sql<Date>`now()` })
    .where('tenantId', '=', tenantId)
    .where('id', '=', params.alertId)
    .where('resolvedAt', 'is', null)
    .execute();
  const alert = await alertQuery(db, tenantId).where('id', '=', params.alertId).executeTakeFirst();
  if (alert === undefined) throw new NotFoundError('budget alert', params.alertId);
  return alert;
}

function alertQuery(db: TenantTx, tenantId: string) {
  return db
    .selectFrom('budgetAlerts')
    .select((eb) => [
      'id',
      sql<BudgetAlert['scope']>`${eb.ref('scope')}`.as('scope'),
      'userId',
      sql<Date | null>`nullif(${eb.ref('windowStart')}, '-infinity')`.as('windowStart'),
      'threshold',
      sql<BudgetAlert['severity']>`${eb.ref('severity')}`.as('severity'),
      decimalText(eb.ref('budget')).as('budget'),
      decimalText(eb.ref('spent')).as('spent'),
      'usageId',
      'resolvedAt',
      'createdAt',
    ])
    .where('tenantId', '=', tenantId);
}
