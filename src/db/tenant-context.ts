import { createHmac, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { ConfigError, NotFoundError, sqlState, TenantContextError } from './errors.ts';

/**
 * The client half of the signed tenant context (migration 0010). Each physical connection gets a
 * random key when the package first runs a tenant transaction on it; the key stays in this
 * process's memory and, as HMAC pads, in an owner-only table that SQL run by an app role cannot
 * read. Every tenant transaction then starts with app.enter_tenant_context(tenant, counter,
 * HMAC(key, 'tenant:counter')), with a counter that only grows: SQL inside the transaction can
 * neither sign another tenant nor replay a signature it has seen.
 */
export class ConnectionContext {
  readonly #key = randomBytes(32);
  // One KeyObject for the connection's life: createHmac with a Buffer builds a new one per call.
  readonly #hmacKey: KeyObject = createSecretKey(this.#key);
  #counter = 0n;
  /** The key is registered with the backend (app.open_tenant_context ran on this connection). */
  registered = false;
  /** A tenant transaction is open on the connection (entered, not yet committed or rolled back). */
  inTenantTransaction = false;
  /** The connection showed signs of tampering: it must not be used again. */
  poisoned: string | undefined;

  /** Parameters of {@link OPEN_CONTEXT_SQL}: the HMAC-SHA256 pads of the key, as hex. */
  openParameters(): [string, string] {
    const block = Buffer.alloc(64);
    this.#key.copy(block);
    const inner = Buffer.alloc(64);
    const outer = Buffer.alloc(64);
    for (let i = 0; i < 64; i += 1) {
      inner[i] = block[i]! ^ 0x36;
      outer[i] = block[i]! ^ 0x5c;
    }
    return [inner.toString('hex'), outer.toString('hex')];
  }

  /** Parameters of {@link ENTER_CONTEXT_SQL} for `tenantId`, with the next counter. */
  enterParameters(tenantId: string, role: string): [string, string, string, string] {
    this.#counter += 1n;
    const tenant = tenantId.toLowerCase();
    const counter = this.#counter.toString();
    const signature = createHmac('sha256', this.#hmacKey).update(`${tenant}:${counter}`, 'utf8').digest('hex');
    return [tenant, counter, signature, role];
  }
}

/** Registers a connection's key (once per connection, bound parameters: never in pg_stat_activity). */
export const OPEN_CONTEXT_SQL = `select app.open_tenant_context(decode($1, 'hex'), decode($2, 'hex'))`;

/**
 * The first statement of every tenant transaction. withTenant sends it with `[tenantId, null,
 * null, role]`; the connection's hook fills in the counter and the signature (only the hook knows
 * which physical connection the transaction runs on). It is always sent unnamed (never a prepared
 * statement that SQL could replace). app.enter_tenant_context runs first (left to right): it
 * resets the session, then the role and search_path are set for this transaction only. With
 * `pg_temp` listed last, a temporary table can never shadow a table of the package.
 */
export const ENTER_CONTEXT_SQL =
  `select app.enter_tenant_context($1::uuid, $2::bigint, $3) as "entered", ` +
  `set_config('role', $4, true) as "role", set_config('search_path', 'public, pg_temp', true) as "searchPath"`;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const COUNTER = /^[1-9][0-9]{0,18}$/;
const SIGNATURE = /^[0-9a-f]{64}$/;
const ROLE = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * BEGIN and {@link ENTER_CONTEXT_SQL} in one round trip: the text a server connection sends to
 * open a tenant transaction (guard-pg-client.ts). A simple-protocol query cannot carry bound
 * parameters, so the values of {@link ConnectionContext.enterParameters} are written into the
 * text, each checked against its exact form first (a UUID, a positive counter, a hex signature, a
 * role name): nothing else can reach it. What is visible in pg_stat_activity while it runs — the
 * tenant, the counter, the signature — is of no use elsewhere: the signature is bound to this
 * connection's key and to a counter that has been used by then.
 */
export function beginAndEnterSql([tenant, counter, signature, role]: [string, string, string, string]): string {
  if (!UUID.test(tenant) || !COUNTER.test(counter) || !SIGNATURE.test(signature) || !ROLE.test(role)) {
    throw new TenantContextError('the tenant-context parameters are not in their exact form; refusing to send them');
  }
  return (
    `begin; select app.enter_tenant_context('${tenant}'::uuid, ${counter}::bigint, '${signature}') as "entered", ` +
    `set_config('role', '${role}', true) as "role", set_config('search_path', 'public, pg_temp', true) as "searchPath"`
  );
}

/**
 * Run after every tenant transaction on a server connection, in the same round trip as its
 * COMMIT or ROLLBACK (outside the transaction, so that it also undoes what SQL did after ending
 * the transaction itself): whatever the transaction left on the session — cursors, LISTEN,
 * settings, a role, temporary objects, advisory locks — is gone before the connection serves
 * anyone else. The last statement reports the prepared statements: named ones must be exactly
 * those the driver prepared, and none may come from SQL PREPARE.
 */
export const CLEANUP_SQL =
  'close all; unlisten *; reset all; reset role; discard temp; ' +
  'select pg_advisory_unlock_all() as "unlocked", ' +
  'p."fromSql", p."named" from (select count(*) filter (where from_sql)::int as "fromSql", ' +
  'count(*) filter (where not from_sql)::int as "named" from pg_prepared_statements) p';

/** PGlite runs one statement list in its transaction; the same cleanup, plus DEALLOCATE ALL (it prepares nothing itself). */
export const PGLITE_CLEANUP_SQL =
  'close all; unlisten *; reset all; reset role; discard temp; deallocate all; select pg_advisory_unlock_all()';

/** What a failure of the tenant-context statements means for the caller. */
export function tenantContextFailure(error: unknown, tenantId: string): unknown {
  const code = sqlState(error);
  if (code === 'P0002') return new NotFoundError('tenant', tenantId);
  if (code === '42501' && /permission denied for (schema app|function)/.test((error as Error).message)) {
    return new ConfigError(
      `the connection's role may not enter a tenant context (${(error as Error).message}): log in as a member of a ` +
        `service role and name it with DB_APP_ROLE (app_server, app_gateway, app_cms, or app_user for development); README, "Production roles"`,
    );
  }
  return error;
}
