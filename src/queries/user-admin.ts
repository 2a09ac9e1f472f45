/**
 * The server's admin functions for the users of a tenant (seed 000: "User, Role — server
 * (auth/admin)"). Names and email are plain updates under app_server's grants; status, role,
 * budget and API key change only through the SECURITY DEFINER functions of migration 0014, which
 * act on the transaction's signed tenant alone. Another tenant's user behaves as one that does
 * not exist: NotFoundError('user').
 */
import { sql, type RawBuilder } from 'kysely';
import { NotFoundError, ValidationError, sqlState } from '../db/errors.ts';
import { assertRole } from '../db/service-roles.ts';
import { tenantOf } from '../db/tenant.ts';
import type { TenantTx } from '../db/tenant-tx.ts';
import { cursorTimestamp, decodeCursor, toPage, type CursorScope, type Page, keysetPast } from './cursor.ts';
import { generateApiKey, hashApiKey, normalizeEmail, userColumns, type User } from './users.ts';
import { assertInt, assertOptionalText, assertUuid, decimal, pageLimit } from './validate.ts';
import { BUDGET_PERIODS, type BudgetPeriod } from './budgets.ts';

/** What a user's status may be: `disabled` users cannot authenticate nor be charged. */
export const USER_STATUSES = ['active', 'disabled'] as const;
/** A user's status. */
export type UserStatus = (typeof USER_STATUSES)[number];

/** Parameters of listUsers: filters (all optional, combined with AND) and the page. */
export interface ListUsersParams {
  roleId?: number;
  status?: UserStatus;
  /** Users whose email starts with this (compared lowercase, as emails are stored). */
  emailPrefix?: string;
  /** 1..200, default 50. */
  limit?: number;
  cursor?: string | null;
}

/**
 * Changes a user's email (normalized as createUser does: trimmed, lowercase) and names (`null`
 * clears a name); fields left out stay. A taken email → ValidationError('email').
 *
 * @example
 * await withTenant(db, tenantId, (tx) => updateUser(tx, { userId, firstName: 'Ada', email: 'ada@new.example' }));
 *
 * Roles: app_server (README, "Production roles").
 */
export async function updateUser(
  db: TenantTx,
  params: { userId: string; email?: string; firstName?: string | null; lastName?: string | null },
): Promise<User> {
  assertRole(db, 'updateUser');
  const tenantId = tenantOf(db);
  assertUuid('userId', params.userId);
  const changes: { email?: string; firstName?: string | null; lastName?: string | null } = {};
  if (params.email !== undefined) changes.email = normalizeEmail(params.email);
  for (const field of ['firstName', 'lastName'] as const) {
    const value = params[field];
    if (value === undefined) continue;
    if (value !== null) assertOptionalText(field, value, 200);
    changes[field] = value === null || value.trim() === '' ? null : value.trim();
  }
  if (Object.keys(changes).length === 0) throw new ValidationError('params', 'give at least one of email, firstName, lastName');
  try {
    const user = await db
      .updateTable('users')
      .set(changes)
      .where('tenantId', '=', tenantId)
      .where('id', '=', params.userId)
      .returning(userColumns)
      .executeTakeFirst();
    if (user === undefined) throw new NotFoundError('user', params.userId);
    return user;
  } catch (error) {
    if (sqlState(error) === '23505') throw new ValidationError('email', `${changes.email} already has a user in this tenant`);
    throw error;
  }
}

/**
 * Activates or disables a user. A disabled user's API key no longer authenticates
 * (authenticateApiKey returns undefined) and recordUsage refuses to charge it
 * (UserDisabledError); a charge already waiting on the user's row when this commits may still
 * complete. Nothing else of the user changes; `active` again restores both.
 *
 * Roles: app_server (README, "Production roles").
 */
export async function setUserStatus(db: TenantTx, params: { userId: string; status: UserStatus }): Promise<User> {
  assertRole(db, 'setUserStatus');
  const tenantId = tenantOf(db);
  assertUuid('userId', params.userId);
  if (!(USER_STATUSES as readonly unknown[]).includes(params.status)) {
    throw new ValidationError('status', `must be 'active' or 'disabled', got ${JSON.stringify(params.status)}`);
  }
  return adminUpdate(db, tenantId, params.userId, sql`app.set_user_status(${params.userId}::uuid, ${params.status}::text)`);
}

/** Gives a user another role of the catalog; an unknown role → NotFoundError('role'). Roles: app_server (README, "Production roles"). */
export async function setUserRole(db: TenantTx, params: { userId: string; roleId: number }): Promise<User> {
  assertRole(db, 'setUserRole');
  const tenantId = tenantOf(db);
  assertUuid('userId', params.userId);
  assertInt('roleId', params.roleId, 1);
  if (params.roleId > 2_147_483_647) throw new NotFoundError('role', params.roleId);
  try {
    return await adminUpdate(db, tenantId, params.userId, sql`app.set_user_role(${params.userId}::uuid, ${params.roleId}::integer)`);
  } catch (error) {
    if (sqlState(error) === '23503') throw new NotFoundError('role', params.roleId);
    throw error;
  }
}

/**
 * Sets a user's budget (an exact decimal; `null` removes the limit). What was spent of the old
 * budget stays spent: remaining becomes `budget - (old budget - old remaining)`, at least 0 (the
 * whole budget for a user who had no limit); with `reset: true` remaining is the whole budget.
 * `period` makes it a budget per window: 'none' (lifetime, the default of a new user), 'day',
 * 'week' (ISO, from Monday) or 'month', in UTC; `windowOffsetMs` (0..86,399,999, default 0)
 * starts each window that long after 00:00 UTC (a billing day of another time zone). Giving
 * `period` or `windowOffsetMs` starts a new window at the full budget. A charge counts in the
 * window of its instant; the first charge of a new window starts it again at the full budget
 * (no scheduler: see recordUsage).
 *
 * @example
 * await withTenant(db, tenantId, (tx) => setBudget(tx, { userId, budget: '50.00' }));   // spent 5 of 25: remaining '45'
 * await withTenant(db, tenantId, (tx) => setBudget(tx, { userId, budget: '5', period: 'day' }));   // 5 per UTC day
 *
 * Roles: app_server (README, "Production roles").
 */
export async function setBudget(
  db: TenantTx,
  params: { userId: string; budget: string | number | null; reset?: boolean; period?: BudgetPeriod; windowOffsetMs?: number },
): Promise<User> {
  assertRole(db, 'setBudget');
  const tenantId = tenantOf(db);
  assertUuid('userId', params.userId);
  const budget = params.budget === null ? null : decimal('budget', params.budget);
  if (params.reset !== undefined && typeof params.reset !== 'boolean') throw new ValidationError('reset', 'must be a boolean');
  if (params.period !== undefined && !(BUDGET_PERIODS as readonly unknown[]).includes(params.period)) {
    throw new ValidationError('period', `must be 'none', 'day', 'week' or 'month', got ${JSON.stringify(params.period)}`);
  }
  if (params.windowOffsetMs !== undefined) {
    assertInt('windowOffsetMs', params.windowOffsetMs, 0);
    if (params.windowOffsetMs > 86_399_999) throw new ValidationError('windowOffsetMs', `must be less than a day (86,400,000), got ${params.windowOffsetMs}`);
  }
  const user = await adminUpdate(
    db,
    tenantId,
    params.userId,
    sql`app.set_user_budget(${params.userId}::uuid, ${budget}::numeric, ${params.reset === true}::boolean)`,
  );
  if (params.period === undefined && params.windowOffsetMs === undefined) return user;
  const period = params.period ?? (await currentPeriod(db, tenantId, params.userId));
  return adminUpdate(
    db,
    tenantId,
    params.userId,
    sql`app.set_user_budget_period(${params.userId}::uuid, ${period}::text, ${params.windowOffsetMs ?? 0}::integer)`,
  );
}

async function currentPeriod(db: TenantTx, tenantId: string, userId: string): Promise<BudgetPeriod> {
  const row = await db.selectFrom('users').select('budgetPeriod').where('tenantId', '=', tenantId).where('id', '=', userId).executeTakeFirstOrThrow();
  return row.budgetPeriod as BudgetPeriod;
}

/**
 * Adds `amount` (an exact decimal, more than 0) to a user's budget and to its remaining, in one
 * statement: top-ups and charges running at once are each applied exactly once. A user without a
 * budget (no limit) → ValidationError('userId'): give it one with setBudget.
 *
 * @example
 * const user = await withTenant(db, tenantId, (tx) => topUpBudget(tx, { userId, amount: '10' }));
 * user.remaining; // 10 more than before
 *
 * Roles: app_server (README, "Production roles").
 */
export async function topUpBudget(db: TenantTx, params: { userId: string; amount: string | number }): Promise<User> {
  assertRole(db, 'topUpBudget');
  const tenantId = tenantOf(db);
  assertUuid('userId', params.userId);
  const amount = decimal('amount', params.amount);
  if (/^0*(\.0*)?$/.test(amount)) throw new ValidationError('amount', `must be more than 0, got ${JSON.stringify(params.amount)}`);
  const id = await adminCall(db, sql`app.top_up_user_budget(${params.userId}::uuid, ${amount}::numeric)`);
  const user = await readUser(db, tenantId, params.userId);
  if (user === undefined) throw new NotFoundError('user', params.userId);
  if (id === null) throw new ValidationError('userId', `user ${params.userId} has no budget (no limit) to top up: give it one with setBudget`);
  return user;
}

/**
 * One page of the tenant's users, newest first (keyset on created_at desc, id desc), filtered by
 * role, status and email prefix. `limit` 1..200 (default 50); pass `nextCursor` back as `cursor`
 * with the same filters for the next page (null: no more).
 *
 * @example
 * const page = await withTenant(db, tenantId, (tx) => listUsers(tx, { status: 'active', emailPrefix: 'ada', limit: 20 }));
 *
 * Roles: app_server (README, "Production roles").
 */
export async function listUsers(db: TenantTx, params: ListUsersParams = {}): Promise<Page<User>> {
  assertRole(db, 'listUsers');
  const tenantId = tenantOf(db);
  if (typeof params !== 'object' || params === null) throw new ValidationError('params', 'must be an object');
  const limit = pageLimit(params.limit);
  if (params.roleId !== undefined) assertInt('roleId', params.roleId, 1);
  if (params.status !== undefined && !(USER_STATUSES as readonly unknown[]).includes(params.status)) {
    throw new ValidationError('status', `must be 'active' or 'disabled', got ${JSON.stringify(params.status)}`);
  }
  let prefix: string | undefined;
  if (params.emailPrefix !== undefined) {
    assertOptionalText('emailPrefix', params.emailPrefix, 320);
    prefix = params.emailPrefix.trim().toLowerCase();
    if (prefix === '') throw new ValidationError('emailPrefix', 'must not be empty');
  }
  const filters = { r: params.roleId ?? null, s: params.status ?? null, e: prefix ?? null };
  const scope: CursorScope = { list: 'users', tenantId, scope: JSON.stringify(filters) };
  const after = params.cursor == null ? undefined : decodeCursor(params.cursor, scope);
  const rows = await db
    .selectFrom('users')
    .select(userColumns)
    .select((eb) => cursorTimestamp(eb.ref('createdAt')).as('cursorAt'))
    .where('tenantId', '=', tenantId)
    .$if(params.roleId !== undefined, (qb) => qb.where('roleId', '=', params.roleId!))
    .$if(params.status !== undefined, (qb) => qb.where('status', '=', params.status!))
    .$if(prefix !== undefined, (qb) => qb.where((eb) => sql<boolean>`starts_with(${eb.ref('email')}, ${prefix!}::text)`))
    .$if(after !== undefined, (qb) =>
      qb.where((eb) => keysetPast(eb.ref('createdAt'), eb.ref('id'), after!)),
    )
    .orderBy('createdAt', 'desc')
    .orderBy('id', 'desc')
    .limit(limit + 1)
    .execute();
  return toPage(rows, limit, scope);
}

/**
 * Gives a user a new API key and returns it, once: only its sha256 is stored. The old key stops
 * authenticating when the transaction commits (until then other transactions still see it).
 *
 * @example
 * const { apiKey } = await withTenant(db, tenantId, (tx) => rotateApiKey(tx, { userId }));
 *
 * Roles: app_server (README, "Production roles").
 */
export async function rotateApiKey(db: TenantTx, params: { userId: string }): Promise<{ user: User; apiKey: string }> {
  assertRole(db, 'rotateApiKey');
  const tenantId = tenantOf(db);
  assertUuid('userId', params.userId);
  const apiKey = generateApiKey(tenantId);
  const user = await adminUpdate(db, tenantId, params.userId, sql`app.set_user_api_key_hash(${params.userId}::uuid, ${hashApiKey(apiKey)}::text)`);
  return { user, apiKey };
}

/** Removes a user's API key: no key authenticates it until rotateApiKey gives it a new one. Roles: app_server (README, "Production roles"). */
export async function revokeApiKey(db: TenantTx, params: { userId: string }): Promise<User> {
  assertRole(db, 'revokeApiKey');
  const tenantId = tenantOf(db);
  assertUuid('userId', params.userId);
  return adminUpdate(db, tenantId, params.userId, sql`app.set_user_api_key_hash(${params.userId}::uuid, null::text)`);
}

/** Runs one admin SQL function (it returns the changed user's id, or NULL) and reads the user after it. */
async function adminUpdate(db: TenantTx, tenantId: string, userId: string, call: RawBuilder<unknown>): Promise<User> {
  const id = await adminCall(db, call);
  const user = id === null ? undefined : await readUser(db, tenantId, userId);
  if (user === undefined) throw new NotFoundError('user', userId);
  return user;
}

async function adminCall(db: TenantTx, call: RawBuilder<unknown>): Promise<string | null> {
  const { rows } = await sql<{ id: string | null }>`select ${call} as id`.execute(db);
  return rows[0]?.id ?? null;
}

function readUser(db: TenantTx, tenantId: string, userId: string): Promise<User | undefined> {
  return db.selectFrom('users').select(userColumns).where('tenantId', '=', tenantId).where('id', '=', userId).executeTakeFirst();
}
