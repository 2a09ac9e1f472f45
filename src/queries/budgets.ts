/**
 * Spend control beyond the charge itself: what is left of a user's budget window and of the
 * tenant's monthly cap, and reservations (budget held for a call whose cost is not known yet).
 * The charge is recordUsage (usage.ts); the windows and holds are migration 0015's.
 */
import { sql } from 'kysely';
import type { TenantTx } from '../db/tenant-tx.ts';
import { BudgetExceededError, NotFoundError, ValidationError } from '../db/errors.ts';
import { assertRole } from '../db/service-roles.ts';
import { tenantOf } from '../db/tenant.ts';
import { decimalText } from './decimal.ts';
import { charge, validateRecordUsage, type RecordUsageParams, type UsageRow } from './usage.ts';
import { uncharged } from './users.ts';
import { assertInt, assertUuid, decimal } from './validate.ts';

/** The window a budget resets on: none (lifetime), or a UTC day, ISO week (from Monday) or calendar month. */
export type BudgetPeriod = 'none' | 'day' | 'week' | 'month';
export const BUDGET_PERIODS = ['none', 'day', 'week', 'month'] as const;

/** A user's budget in its current window; amounts are exact decimal text (see decimalText). */
export interface UserBudget {
  /** The budget per window (null: no limit). */
  budget: string | null;
  period: BudgetPeriod;
  /** The current window [windowStart, windowEnd); null for 'none' (lifetime). */
  windowStart: Date | null;
  windowEnd: Date | null;
  /** Charged in the window (the lifetime for 'none'); null without a budget. */
  spent: string | null;
  /** Held by the user's active reservations (not expired, not settled or released). */
  held: string;
  /** What a charge or reservation can still take: budget − spent − held, at least 0; null without a budget. */
  remaining: string | null;
}

/** The tenant's monthly spend cap (tenants.settings.maxMonthlySpend) in the current UTC month. */
export interface TenantSpend {
  /** The cap (null: none; spent is then still counted from the first capped charge on, else '0'). */
  cap: string | null;
  windowStart: Date;
  windowEnd: Date;
  spent: string;
  held: string;
  /** cap − spent − held, at least 0; null without a cap. */
  remaining: string | null;
}

/** A reservation as the API returns it; `status` 'expired' is a hold whose expiresAt has passed. */
export interface Reservation {
  id: string;
  userId: string;
  amount: string;
  expiresAt: Date;
  status: 'held' | 'expired' | 'settled' | 'released';
  /** The usage row that settled it. */
  usageId: string | null;
  createdAt: Date;
}

/** Default lifetime of a reservation, in seconds. */
export const DEFAULT_RESERVATION_SECONDS = 600;
/** Longest lifetime of a reservation, in seconds (a day). */
export const MAX_RESERVATION_SECONDS = 86_400;

/**
 * A user's budget, period, current window, spent, held and remaining (exact decimal text).
 * NotFoundError('user') when not in this tenant. Read at the transaction's instant: a window whose
 * end has passed reads as a new window, nothing spent, without any write.
 *
 * @example
 * const b = await withTenant(db, tenantId, (tx) => getUserBudget(tx, { userId }));
 * // { budget: '25', period: 'month', windowStart: 2026-12-01T00:00:00.000Z, windowEnd: 2027-01-01T00:00:00.000Z,
 * //   spent: '3.5', held: '0.2', remaining: '21.3' }
 *
 * Roles: app_server and app_gateway (README, "Production roles").
 */
export async function getUserBudget(db: TenantTx, params: { userId: string }): Promise<UserBudget> {
  assertRole(db, 'getUserBudget');
  const tenantId = tenantOf(db);
  assertUuid('userId', params.userId);
  const { rows } = await sql<UserBudget>`
    with u as (
      select budget, remaining, budget_period, budget_window_offset_ms,
             case when budget_period <> 'none'
               then greatest(budget_window_start, app.budget_window_start(budget_period, budget_window_offset_ms, now())) end as window_start,
             case when budget_period <> 'none' and (budget_window_start is null
                    or budget_window_start < app.budget_window_start(budget_period, budget_window_offset_ms, now()))
               then budget else remaining end as base,
             (select coalesce(sum(h.amount), 0) from budget_holds h
              where h.tenant_id = ${tenantId}::uuid and h.user_id = ${params.userId}::uuid
                and h.status = 'held' and h.expires_at > now()) as held
      from users where tenant_id = ${tenantId}::uuid and id = ${params.userId}::uuid
    )
    select trim_scale(budget) as budget, budget_period as period, window_start as "windowStart",
           app.budget_window_end(budget_period, budget_window_offset_ms, window_start) as "windowEnd",
           trim_scale(budget - base) as spent, trim_scale(held) as held,
           case when remaining is not null then trim_scale(greatest(base - held, 0)) end as remaining
    from u`.execute(db);
  const row = rows[0];
  if (row === undefined) throw new NotFoundError('user', params.userId);
  return row;
}

/**
 * The current tenant's spend in the current UTC month against its cap (tenants.settings.maxMonthlySpend):
 * cap, window, spent, held, remaining (exact decimal text). Spent is counted by the charges that
 * had to fit a cap: '0' before the tenant's first capped charge.
 *
 * @example
 * const t = await withTenant(db, tenantId, (tx) => getTenantSpend(tx));
 * // { cap: '1000', windowStart: 2026-12-01T00:00:00.000Z, windowEnd: 2027-01-01T00:00:00.000Z, spent: '12.5', held: '0', remaining: '987.5' }
 *
 * Roles: app_server and app_gateway (README, "Production roles").
 */
export async function getTenantSpend(db: TenantTx): Promise<TenantSpend> {
  assertRole(db, 'getTenantSpend');
  const tenantId = tenantOf(db);
  const { rows } = await sql<TenantSpend>`
    with w as (select app.budget_window_start('month', 0, now()) as start),
    t as (
      select (settings ->> 'maxMonthlySpend')::numeric as cap,
             coalesce((select case when s.window_start >= w.start then s.spent else 0 end
                       from tenant_spend s where s.tenant_id = ${tenantId}::uuid), 0) as spent,
             (select coalesce(sum(h.amount), 0) from budget_holds h
              where h.tenant_id = ${tenantId}::uuid and h.status = 'held' and h.expires_at > now()) as held
      from tenants, w where id = ${tenantId}::uuid
    )
    select trim_scale(cap) as cap, w.start as "windowStart", app.budget_window_end('month', 0, w.start) as "windowEnd",
           trim_scale(spent) as spent, trim_scale(held) as held, case when cap is not null then trim_scale(greatest(cap - spent - held, 0)) end as remaining
    from t, w`.execute(db);
  return rows[0]!;
}

/**
 * Holds `amount` (an exact decimal, more than 0) of a user's budget for a call whose cost is not
 * known yet, for `ttlSeconds` (default 600, at most 86,400). Admitted only when it fits what is
 * left of the user's window and of the tenant's monthly cap, both less their active holds
 * (BudgetExceededError saying which limit otherwise, nothing held); reservations and charges of a
 * user are serialized on its row, so 100 racing reservations against a budget worth 10 admit
 * exactly 10. A hold counts against both budgets until settleUsage, releaseReservation, or its
 * expiry (computed at read: nothing needs to run). A user without a budget is only held against
 * the tenant's cap (if any). Unknown user → NotFoundError; disabled → UserDisabledError.
 *
 * @example
 * const hold = await withTenant(db, tenantId, (tx) => reserveBudget(tx, { userId, amount: '0.05', ttlSeconds: 120 }));
 *
 * Roles: app_gateway (README, "Production roles").
 */
export async function reserveBudget(
  db: TenantTx,
  params: { userId: string; amount: string | number; ttlSeconds?: number },
): Promise<Reservation> {
  assertRole(db, 'reserveBudget');
  const tenantId = tenantOf(db);
  if (typeof params !== 'object' || params === null) throw new ValidationError('params', 'must be an object');
  assertUuid('userId', params.userId);
  const amount = decimal('amount', params.amount);
  if (/^0*(\.0*)?$/.test(amount)) throw new ValidationError('amount', `must be more than 0, got ${JSON.stringify(params.amount)}`);
  const ttl = params.ttlSeconds ?? DEFAULT_RESERVATION_SECONDS;
  assertInt('ttlSeconds', ttl, 1);
  if (ttl > MAX_RESERVATION_SECONDS) throw new ValidationError('ttlSeconds', `must be at most ${MAX_RESERVATION_SECONDS}, got ${ttl}`);
  const { rows } = await sql<{ outcome: 'held' | 'user' | 'tenant' | 'missing'; holdId: string | null; available: string | null }>`
    select outcome, hold_id as "holdId", available
    from app.reserve_budget(${params.userId}::uuid, ${amount}::numeric, now() + ${ttl}::integer * interval '1 second')`.execute(db);
  const row = rows[0]!;
  if (row.outcome === 'missing') throw await uncharged(db, tenantId, params.userId);
  if (row.outcome !== 'held') throw new BudgetExceededError(params.userId, trim(amount), row.available ?? '0', row.outcome);
  return readReservation(db, tenantId, row.holdId!);
}

/** What settleUsage charges: the reservation, and the call's real model and token counts (as recordUsage). */
export type SettleUsageParams = Omit<RecordUsageParams, 'userId'> & { reservationId: string };

/**
 * Turns a reservation into the real charge: records the call's usage row (its cost computed from
 * the model's prices, as recordUsage) for the reservation's user and ends the hold, in the
 * caller's transaction. A cost below the hold releases the difference; a cost above it is charged
 * in full even when the budgets no longer cover it (the call happened): the user's remaining
 * then stops at 0 and the tenant's spent passes its cap. That is the overspend bound: a window's
 * charges exceed its budget (and a month's the tenant cap) by at most the sum, over its settles,
 * of (cost − hold) where the cost was larger. An expired hold can still be settled (same bound).
 * A reservation settled or released before → ValidationError('reservationId'); unknown →
 * NotFoundError('reservation').
 *
 * @example
 * const usage = await withTenant(db, tenantId, (tx) =>
 *   settleUsage(tx, { reservationId: hold.id, modelId, type: 'chat', inputTokens: 1234, outputTokens: 567 }));
 *
 * Roles: app_gateway (README, "Production roles").
 */
export async function settleUsage(db: TenantTx, params: SettleUsageParams): Promise<UsageRow> {
  assertRole(db, 'settleUsage');
  const tenantId = tenantOf(db);
  if (typeof params !== 'object' || params === null) throw new ValidationError('params', 'must be an object');
  const { reservationId, ...rest } = params;
  assertUuid('reservationId', reservationId);
  const hold = await readReservation(db, tenantId, reservationId);
  if (hold.status === 'settled' || hold.status === 'released') {
    throw new ValidationError('reservationId', `reservation ${reservationId} was ${hold.status} already`);
  }
  const usage = await charge(db, tenantId, validateRecordUsage({ ...rest, userId: hold.userId }), true);
  const { rows } = await sql<{ wasHeld: boolean }>`
    select was_held as "wasHeld" from app.finish_hold(${reservationId}::uuid, 'settled', ${usage.id}::uuid)`.execute(db);
  if (rows[0]?.wasHeld !== true) {
    // A concurrent settle or release won: the caller's transaction must not commit this charge.
    throw new ValidationError('reservationId', `reservation ${reservationId} was settled or released concurrently`);
  }
  return usage;
}

/**
 * Frees a reservation without a charge: its amount no longer counts against the budgets. Returns
 * the reservation ('released'); one settled or released before is returned as it is, unchanged.
 * Unknown → NotFoundError('reservation').
 *
 * @example
 * await withTenant(db, tenantId, (tx) => releaseReservation(tx, { reservationId: hold.id }));
 *
 * Roles: app_gateway (README, "Production roles").
 */
export async function releaseReservation(db: TenantTx, params: { reservationId: string }): Promise<Reservation> {
  assertRole(db, 'releaseReservation');
  const tenantId = tenantOf(db);
  if (typeof params !== 'object' || params === null) throw new ValidationError('params', 'must be an object');
  assertUuid('reservationId', params.reservationId);
  const { rows } = await sql<{ wasHeld: boolean }>`
    select was_held as "wasHeld" from app.finish_hold(${params.reservationId}::uuid, 'released', null)`.execute(db);
  if (rows[0] === undefined) throw new NotFoundError('reservation', params.reservationId);
  return readReservation(db, tenantId, params.reservationId);
}

async function readReservation(db: TenantTx, tenantId: string, id: string): Promise<Reservation> {
  const row = await db
    .selectFrom('budgetHolds')
    .select((eb) => [
      'id',
      'userId',
      decimalText(eb.ref('amount')).as('amount'),
      'expiresAt',
      sql<Reservation['status']>`case when status = 'held' and expires_at <= now() then 'expired' else status end`.as('status'),
      'usageId',
      'createdAt',
    ])
    .where('tenantId', '=', tenantId)
    .where('id', '=', id)
    .executeTakeFirst();
  if (row === undefined) throw new NotFoundError('reservation', id);
  return row;
}

/** '0.0500' → '0.05': the canonical decimal text of a validated decimal. */
function trim(text: string): string {
  const [whole, fraction = ''] = text.split('.') as [string, string?];
  const f = fraction.replace(/0+$/, '');
  const w = whole.replace(/^0+(?=\d)/, '');
  return f === '' ? w : `${w}.${f}`;
}
