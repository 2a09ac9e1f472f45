import { createHash, randomBytes } from 'node:crypto';
import { sql, type ExpressionBuilder, type Kysely, type Selectable } from 'kysely';
import type { Executor } from '../db/create-db.ts';
import type { TenantTx } from '../db/tenant-tx.ts';
import { NotFoundError, UserDisabledError, ValidationError, sqlState } from '../db/errors.ts';
import type { DB, Users } from '../db/schema.generated.ts';
import { decimalText } from './decimal.ts';
import { tenantOf } from '../db/tenant.ts';
import { assertInt, assertText, assertUuid, decimal, LONE_SURROGATE } from './validate.ts';
import { assertRole } from '../db/service-roles.ts';
import { statementTemplate } from '../db/statement-template.ts';

/** A user as the API returns it: never the API key or its hash. */
export type User = Pick<
  Selectable<Users>,
  'id' | 'email' | 'firstName' | 'lastName' | 'status' | 'roleId' | 'budget' | 'remaining' | 'createdAt' | 'updatedAt'
>;

/** Who an API key belongs to. */
export interface ApiKeyOwner {
  tenantId: string;
  userId: string;
  roleId: number;
}

/** The columns of a User, budget and remaining as canonical decimal text (see decimalText). */
export function userColumns(eb: ExpressionBuilder<DB, 'users'>) {
  return [
    'id', 'email', 'firstName', 'lastName', 'status', 'roleId',
    decimalText(eb.ref('budget')).as('budget'),
    decimalText(eb.ref('remaining')).as('remaining'),
    'createdAt', 'updatedAt',
  ] as const;
}
/** An email as users.email stores it (NFC, trimmed, lowercase), or a ValidationError('email'). */
export function normalizeEmail(value: unknown): string {
  // One Unicode normalization (NFC): `josé` typed with a combining accent is the same address.
  const email = typeof value === 'string' && !LONE_SURROGATE.test(value) ? value.normalize('NFC').trim().toLowerCase() : value;
  assertText('email', email, 320);
  if (!/^[^\s@]+@[^\s@]+$/.test(email)) throw new ValidationError('email', 'must look like name@domain');
  return email;
}

// Keys we generate are `sk_<tenant id as 32 hex>_` + 43 base64url characters (before migration
// 0019: `sk_` + 43); TEST_API_KEY any 32..256 visible ASCII characters. Anything else cannot be a
// key: no need to ask the database.
const API_KEY = /^[\x21-\x7e]{8,256}$/;

/** True when `value` could be an API key (8..256 visible ASCII characters); others are never looked up. */
export function isPlausibleApiKey(value: string): boolean {
  return API_KEY.test(value);
}

/** The sha256 hex of an API key: what users.api_key_hash stores. */
export function hashApiKey(apiKey: string): string {
  return createHash('sha256').update(apiKey, 'utf8').digest('hex');
}

const KEY_TENANT = /^sk_([0-9a-f]{32})_/;

/**
 * A new random API key of a user of `tenantId`: `sk_<tenant id, 32 hex>_<32 random bytes, base64url>`.
 * The tenant in the key lets authenticateApiKey look the key up in that tenant only (on Citus, one
 * shard instead of all); it is no secret (the key's owner is of that tenant).
 */
export function generateApiKey(tenantId: string): string {
  return `sk_${tenantId.replaceAll('-', '').toLowerCase()}_${randomBytes(32).toString('base64url')}`;
}

/** The tenant a generated key names, or undefined for keys that name none (older keys, TEST_API_KEY). */
export function tenantOfApiKey(apiKey: string): string | undefined {
  const hex = KEY_TENANT.exec(apiKey)?.[1];
  return hex === undefined ? undefined : `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * Creates a user in the current tenant with a new API key. The key is returned once, here; only
 * its hash is stored. `budget` (a decimal) also sets `remaining`; without it the user has no limit.
 *
 * @example
 * const { user, apiKey } = await withTenant(db, tenantId, (tx) =>
 *   createUser(tx, { email: 'ada@example.com', roleId: 3, budget: '25.00' }));
 *
 * Roles: app_server (README, "Production roles").
 */
export async function createUser(
  db: TenantTx,
  params: { email: string; firstName?: string; lastName?: string; roleId: number; budget?: string | number },
): Promise<{ user: User; apiKey: string }> {
  assertRole(db, 'createUser');
  const tenantId = tenantOf(db);
  const email = normalizeEmail(params.email);
  if (params.firstName !== undefined) assertText('firstName', params.firstName, 200);
  if (params.lastName !== undefined) assertText('lastName', params.lastName, 200);
  assertInt('roleId', params.roleId, 1);
  const budget = params.budget === undefined ? null : decimal('budget', params.budget);
  const apiKey = generateApiKey(tenantId);
  try {
    const user = await db
      .insertInto('users')
      .values({
        tenantId,
        email,
        firstName: params.firstName ?? null,
        lastName: params.lastName ?? null,
        roleId: params.roleId,
        apiKeyHash: hashApiKey(apiKey),
        budget,
        remaining: budget,
      })
      .returning(userColumns)
      .executeTakeFirstOrThrow();
    return { user, apiKey };
  } catch (error) {
    const code = sqlState(error);
    if (code === '23505') throw new ValidationError('email', `${email} already has a user in this tenant`);
    if (code === '23503') throw new NotFoundError('role', params.roleId);
    throw error;
  }
}

/** The user with this id in the current tenant, or undefined. Roles: app_server and app_gateway. */
export async function findUser(db: TenantTx, params: { userId: string }): Promise<User | undefined> {
  assertRole(db, 'findUser');
  const tenantId = tenantOf(db);
  assertUuid('userId', params.userId);
  const { rows } = await findUserStatement(db, { tenantId, userId: params.userId }, null).execute(db);
  return rows[0];
}

/** findUser's statement, compiled once (statementTemplate): getUser is the hottest lookup. */
const findUserStatement = statementTemplate((db: Kysely<DB>, v: { tenantId: string; userId: string }, _shape: null) =>
  db.selectFrom('users').select(userColumns).where('tenantId', '=', v.tenantId).where('id', '=', v.userId),
);

/** The user with this id in the current tenant; NotFoundError('user', id) otherwise. Roles: app_server and app_gateway. */
export async function getUser(db: TenantTx, params: { userId: string }): Promise<User> {
  assertRole(db, 'getUser');
  const user = await findUser(db, params);
  if (user === undefined) throw new NotFoundError('user', params.userId);
  return user;
}

/**
 * Who an API key belongs to (an active user), or undefined. Works before any tenant is known:
 * it calls the SECURITY DEFINER function app.resolve_api_key with the key's hash (and the tenant a
 * generated key names, so that only that tenant is searched), which returns only
 * (tenant_id, user_id, role_id). Then open withTenant(db, owner.tenantId, ...).
 *
 * Roles: app_server and app_gateway (README, "Production roles").
 */
export async function authenticateApiKey(db: Executor, apiKey: string): Promise<ApiKeyOwner | undefined> {
  assertRole(db, 'authenticateApiKey');
  if (typeof apiKey !== 'string') throw new ValidationError('apiKey', 'must be a string');
  if (!isPlausibleApiKey(apiKey)) return undefined;
  const tenant = tenantOfApiKey(apiKey);
  const { rows } =
    tenant === undefined
      ? await sql<ApiKeyOwner>`select tenant_id, user_id, role_id from app.resolve_api_key(${hashApiKey(apiKey)}) limit 2`.execute(db)
      : await sql<ApiKeyOwner>`
          select tenant_id, user_id, role_id from app.resolve_api_key(${hashApiKey(apiKey)}, ${tenant}::uuid) limit 2`.execute(db);
  // Hashes are unique per tenant only (a global unique index would not fit a table distributed by
  // tenant). Two owners of one key cannot happen with generated keys; if it ever does, trust neither.
  return rows.length === 1 ? rows[0] : undefined;
}

/**
 * Why recordUsage found no chargeable user: UserDisabledError when the user exists in this tenant
 * but is disabled, NotFoundError('user') otherwise. Read only on that refusal path.
 */
export async function uncharged(db: TenantTx, tenantId: string, userId: string): Promise<Error> {
  const row = await db.selectFrom('users').select('status').where('tenantId', '=', tenantId).where('id', '=', userId).executeTakeFirst();
  return row?.status === 'disabled' ? new UserDisabledError(userId) : new NotFoundError('user', userId);
}
