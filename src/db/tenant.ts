import { sql, type Kysely } from 'kysely';
import { TenantContextError, ValidationError } from './errors.ts';
import type { DB } from './schema.generated.ts';
import type { TenantTx } from './tenant-tx.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True when `value` is a UUID in its canonical text form. */
export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

/** Throws a ValidationError naming `field` unless `value` is a UUID. */
export function assertUuid(field: string, value: unknown): asserts value is string {
  if (!isUuid(value)) throw new ValidationError(field, `must be a UUID, got ${describe(value)}`);
}

const checkedRoles = new WeakMap<Kysely<any>, Promise<void>>();
const tenantOfTx = new WeakMap<Kysely<any>, string>();

/**
 * The tenant of a transaction opened by {@link withTenant}. Tenant-scoped query functions call it
 * first, so that a call outside withTenant fails loudly instead of returning an empty result
 * that looks like "no data".
 */
export function tenantOf(db: Kysely<any>): string {
  const tenantId = tenantOfTx.get(db);
  if (tenantId === undefined) {
    throw new TenantContextError('this query is tenant-scoped: run it inside withTenant(db, tenantId, (tx) => ...) and pass tx');
  }
  return tenantId;
}

/**
 * Runs `fn` in one transaction as tenant `tenantId`: the transaction first switches to the
 * `app_user` role and sets `app.tenant_id` transaction-locally (a bound parameter), so row-level
 * security limits every statement in `fn` to that tenant. Both settings end with the transaction:
 * nothing leaks to the next user of a pooled connection. Refuses to run when `app_user` could
 * bypass row-level security.
 *
 * @example
 * const convos = await withTenant(db, tenantId, (tx) => listConversations(tx, { userId }));
 */
export async function withTenant<T>(db: Kysely<DB>, tenantId: string, fn: (tx: TenantTx) => Promise<T>): Promise<T> {
  assertUuid('tenantId', tenantId);
  if (db.isTransaction) {
    throw new TenantContextError('withTenant needs the database, not a transaction: it opens its own transaction');
  }
  await assertRoleEnforcesRls(db);
  return db.transaction().execute(async (tx) => {
    // One round trip: set_config('role', ..., true) is SET LOCAL ROLE.
    await sql`select set_config('role', 'app_user', true), set_config('app.tenant_id', ${tenantId}, true)`.execute(tx);
    tenantOfTx.set(tx, tenantId.toLowerCase());
    return fn(tx as TenantTx);
  });
}

/** Checked once per database: app_user must be bound by row-level security. */
function assertRoleEnforcesRls(db: Kysely<DB>): Promise<void> {
  let check = checkedRoles.get(db);
  if (check === undefined) {
    check = (async () => {
      const { rows } = await sql<{ rolsuper: boolean; rolbypassrls: boolean }>`
        select rolsuper, rolbypassrls from pg_roles where rolname = 'app_user'`.execute(db);
      const role = rows[0];
      if (role === undefined) {
        throw new TenantContextError('role app_user does not exist: run the migrations first (npm run migrate)');
      }
      if (role.rolsuper || role.rolbypassrls) {
        throw new TenantContextError('role app_user is SUPERUSER or BYPASSRLS: row-level security would not apply; refusing');
      }
    })();
    check.catch(() => checkedRoles.delete(db));
    checkedRoles.set(db, check);
  }
  return check;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  return value === null ? 'null' : typeof value;
}
