import { CompiledQuery, sql, type Kysely } from 'kysely';
import { appRole, type AppRole } from './config.ts';
import { appRoleOf } from './create-db.ts';
import { ConnectionTamperedError, TenantContextError, ValidationError } from './errors.ts';
import type { DB } from './schema.generated.ts';
import { ENTER_CONTEXT_SQL } from './tenant-context.ts';
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

const checkedRoles = new WeakMap<Kysely<any>, Map<AppRole, Promise<void>>>();
/** The tenant and role of each transaction withTenant opened (one entry per transaction). */
const contextOfTx = new WeakMap<Kysely<any>, { tenant: string; role: AppRole }>();
/** Attempts of withTenant when the connection it got is found tampered with (and discarded). */
const MAX_ATTEMPTS = 3;

/**
 * The tenant of a transaction opened by {@link withTenant}. Tenant-scoped query functions call it
 * first, so that a call outside withTenant fails loudly instead of returning an empty result
 * that looks like "no data".
 */
export function tenantOf(db: Kysely<any>): string {
  const tenantId = contextOfTx.get(db)?.tenant;
  if (tenantId === undefined) {
    throw new TenantContextError('this query is tenant-scoped: run it inside withTenant(db, tenantId, (tx) => ...) and pass tx');
  }
  return tenantId;
}

/** The service role a transaction opened by {@link withTenant} runs as, if it is one. */
export function roleOf(db: Kysely<any>): AppRole | undefined {
  return contextOfTx.get(db)?.role;
}

/** Options of {@link withTenant}. */
export interface WithTenantOptions {
  /** The service role for this transaction; default: the database's appRole (DB_APP_ROLE), else `app_user`. */
  role?: AppRole;
}

/**
 * Runs `fn` in one transaction as tenant `tenantId`, as the service's role (`options.role`, else
 * DB_APP_ROLE, else `app_user`): row-level security limits every statement in `fn` to that
 * tenant. The tenant is signed, not merely set: the transaction's first statement has the
 * database verify an HMAC of the tenant made with this connection's key, which SQL cannot read
 * (migration 0010), so no statement in `fn` — raw SQL included — can switch to another tenant.
 * Whatever `fn` leaves on the pooled connection (settings, temporary objects, locks, a role,
 * replaced prepared statements) is reset or gets the connection discarded before anyone else
 * uses it. A tenant that does not exist → NotFoundError('tenant'), before `fn` runs. Refuses to
 * run when the role could bypass row-level security.
 *
 * @example
 * const convos = await withTenant(db, tenantId, (tx) => listConversations(tx, { userId }));
 * const charge = await withTenant(db, tenantId, (tx) => recordUsage(tx, call), { role: 'app_gateway' });
 */
export async function withTenant<T>(
  db: Kysely<DB>,
  tenantId: string,
  fn: (tx: TenantTx) => Promise<T>,
  options: WithTenantOptions = {},
): Promise<T> {
  assertUuid('tenantId', tenantId);
  if (db.isTransaction) {
    throw new TenantContextError('withTenant needs the database, not a transaction: it opens its own transaction');
  }
  const role = options.role === undefined ? (appRoleOf(db) ?? 'app_user') : appRole(options.role, 'withTenant role');
  await assertRoleEnforcesRls(db, role);
  const tenant = tenantId.toLowerCase();
  for (let attempt = 1; ; attempt += 1) {
    let entered = false;
    try {
      return await db.transaction().execute(async (tx) => {
        // The connection's hook (guard-pg-client.ts, guard-pglite.ts) adds the counter and the signature.
        await tx.executeQuery(CompiledQuery.raw(ENTER_CONTEXT_SQL, [tenant, null, null, role]));
        entered = true;
        contextOfTx.set(tx, { tenant, role });
        return fn(tx as TenantTx);
      });
    } catch (error) {
      if (error instanceof ConnectionTamperedError && !entered && attempt < MAX_ATTEMPTS) continue;
      throw error;
    }
  }
}

/** Checked once per database and role: the role must exist and be bound by row-level security. */
function assertRoleEnforcesRls(db: Kysely<DB>, role: AppRole): Promise<void> {
  let byRole = checkedRoles.get(db);
  if (byRole === undefined) {
    byRole = new Map();
    checkedRoles.set(db, byRole);
  }
  let check = byRole.get(role);
  if (check === undefined) {
    check = (async () => {
      const { rows } = await sql<{ rolsuper: boolean; rolbypassrls: boolean }>`
        select rolsuper, rolbypassrls from pg_roles where rolname = ${role}`.execute(db);
      const found = rows[0];
      if (found === undefined) {
        throw new TenantContextError(`role ${role} does not exist: run the migrations first (npx database migrate)`);
      }
      if (found.rolsuper || found.rolbypassrls) {
        throw new TenantContextError(`role ${role} is SUPERUSER or BYPASSRLS: row-level security would not apply; refusing`);
      }
    })();
    check.catch(() => byRole.delete(role));
    byRole.set(role, check);
  }
  return check;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  return value === null ? 'null' : typeof value;
}
