import type pg from 'pg';
import { ConnectionTamperedError } from './errors.ts';
import { CLEANUP_SQL, ConnectionContext, ENTER_CONTEXT_SQL, OPEN_CONTEXT_SQL, tenantContextFailure } from './tenant-context.ts';

type Query = (...args: unknown[]) => Promise<unknown>;
interface Result {
  rows: Record<string, unknown>[];
}

const contexts = new WeakMap<object, ConnectionContext>();

/**
 * Installs the package's hooks on a new pooled connection:
 *
 * - the tenant context: withTenant's first statement ({@link ENTER_CONTEXT_SQL}) gets this
 *   connection's counter and signature (the key is registered on first use), and is checked;
 * - the end of every tenant transaction: its COMMIT or ROLLBACK carries {@link CLEANUP_SQL} in the
 *   same round trip, and a connection whose prepared statements were dropped or replaced by SQL
 *   is marked poisoned, so that {@link releaseOf} discards it instead of pooling it again;
 * - optionally, named prepared statements (see prepared-statements.ts `nameStatements`).
 *
 * Kysely calls `client.query(text, values)` and awaits the promise: that is the one form hooked.
 */
export function guardClient(client: pg.PoolClient, nameStatements: ((query: Query) => Query) | undefined): void {
  const raw = client.query.bind(client) as Query;
  const named = nameStatements === undefined ? raw : nameStatements(raw);
  const ctx = new ConnectionContext();
  contexts.set(client, ctx);
  let registeredInTransaction = false;

  const enter = async (values: unknown[]): Promise<unknown> => {
    if (ctx.poisoned !== undefined) throw new ConnectionTamperedError(ctx.poisoned);
    const [tenantId, , , role] = values as [string, null, null, string];
    let result: Result;
    try {
      if (!ctx.registered) {
        await raw(OPEN_CONTEXT_SQL, ctx.openParameters());
        ctx.registered = true;
        registeredInTransaction = true;
      }
      result = (await raw(ENTER_CONTEXT_SQL, ctx.enterParameters(tenantId, role))) as Result;
    } catch (error) {
      ctx.inTenantTransaction = true; // the ROLLBACK that follows still cleans up
      throw tenantContextFailure(error, tenantId);
    }
    ctx.inTenantTransaction = true;
    return result;
  };

  const finish = async (text: string): Promise<unknown> => {
    ctx.inTenantTransaction = false;
    const registeredHere = registeredInTransaction;
    registeredInTransaction = false;
    let results: Array<Result & { command?: string }>;
    try {
      results = (await raw(`${text}; ${CLEANUP_SQL}`)) as Array<Result & { command?: string }>;
    } catch (error) {
      ctx.poisoned = `the end of a tenant transaction failed (${error instanceof Error ? error.message : String(error)})`;
      throw error;
    }
    // A key registered in a transaction that did not commit is gone with it: a ROLLBACK, or a
    // COMMIT of a transaction in which a statement failed (the server answers it with ROLLBACK).
    if (registeredHere && results[0]?.command !== 'COMMIT') ctx.registered = false;
    const report = results.at(-1)?.rows[0];
    // node-postgres keeps the names it prepared on this connection here (pg 8: Connection#parsedStatements).
    const parsed = (client as unknown as { connection: { parsedStatements: Record<string, string> } }).connection.parsedStatements;
    if (report === undefined || report.fromSql !== 0 || report.named !== Object.keys(parsed).length) {
      ctx.poisoned = 'prepared statements were dropped or replaced by SQL during a tenant transaction';
    }
    return results[0];
  };

  (client as unknown as { query: unknown }).query = (text: unknown, values?: unknown, callback?: unknown) => {
    if (callback === undefined && typeof text === 'string') {
      if (text === ENTER_CONTEXT_SQL && Array.isArray(values)) return enter(values);
      if (ctx.inTenantTransaction && (text === 'commit' || text === 'rollback')) return finish(text);
    }
    return callback === undefined ? named(text, values) : named(text, values, callback);
  };
}

/**
 * The release function to hand back to the pool for `client`: an error (so that pg-pool closes
 * the connection instead of pooling it) when the connection was poisoned.
 */
export function releaseOf(client: pg.PoolClient): (error?: Error | boolean) => void {
  const release = client.release.bind(client);
  return (error?: Error | boolean) => {
    const poisoned = contexts.get(client)?.poisoned;
    // Kysely releases with `release(false)` when it kept the connection usable (pg-pool: a truthy
    // argument destroys the connection).
    release(error || (poisoned === undefined ? undefined : new ConnectionTamperedError(poisoned)));
  };
}
