import type pg from 'pg';
import { ConnectionTamperedError } from './errors.ts';
import { isTemplateText } from './statement-template.ts';
import { beginAndEnterSql, CLEANUP_SQL, ConnectionContext, ENTER_CONTEXT_SQL, OPEN_CONTEXT_SQL, tenantContextFailure } from './tenant-context.ts';

type Query = (...args: unknown[]) => Promise<unknown>;
interface Result {
  rows: Record<string, unknown>[];
}

/** What node-postgres resolves `query('begin')` with; Kysely reads none of it. */
const BEGIN_RESULT = { command: 'BEGIN', rowCount: null, oid: null, rows: [], fields: [] };

const contexts = new WeakMap<object, ConnectionContext>();

/**
 * Installs the package's hooks on a new pooled connection:
 *
 * - the tenant context: withTenant's first statement ({@link ENTER_CONTEXT_SQL}) gets this
 *   connection's counter and signature (the key is registered on first use), and is checked;
 * - one round trip less per transaction: a `begin` is held back until the next statement, and
 *   sent with it when that is withTenant's first statement ({@link beginAndEnterSql}) on a
 *   connection whose key is registered; before any other statement (or the registration) it is
 *   sent alone, as before; `begin` directly followed by `commit` or `rollback` sends nothing;
 * - the end of every tenant transaction: its COMMIT or ROLLBACK carries {@link CLEANUP_SQL} in the
 *   same round trip, and a connection whose prepared statements were dropped or replaced by SQL
 *   is marked poisoned, so that {@link releaseOf} discards it instead of pooling it again. When
 *   nothing but the package's own statements (statement templates, see isTemplateText) ran on the
 *   connection since its last cleanup, nothing can have changed what the cleanup undoes or
 *   checks, and the COMMIT or ROLLBACK is sent alone (the cleanup and its check of the prepared
 *   statements cost the server ~0.1 ms per transaction, more than a point lookup itself; bench);
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
  // A statement other than the package's own ran since the last cleanup (or none ran yet): the
  // next tenant transaction ends with the cleanup.
  let dirty = true;
  // Kysely's `begin`, not sent yet (see below).
  let beginHeld = false;

  const enter = async (values: unknown[], beginHeldBack: boolean): Promise<unknown> => {
    let begin = beginHeldBack;
    if (ctx.poisoned !== undefined) throw new ConnectionTamperedError(ctx.poisoned);
    const [tenantId, , , role] = values as [string, null, null, string];
    if (ctx.inTenantTransaction) {
      // Only withTenant sends this statement, first in its own transaction: a second one in the
      // same transaction is not the package's doing.
      ctx.poisoned = 'a tenant context was entered twice in one transaction';
      throw new ConnectionTamperedError(ctx.poisoned);
    }
    let result: Result;
    try {
      if (!ctx.registered) {
        // The first tenant transaction of a connection registers its key inside the transaction,
        // so the row commits with it. Registered alone (committed at once), a concurrent
        // registration elsewhere could take it for a row of a backend that is gone: its look at
        // pg_stat_activity is a snapshot from before this connection existed (seen in CI, with
        // many connections opening at once: "no tenant-context key is registered").
        if (begin) {
          await raw('begin');
          begin = false;
        }
        await raw(OPEN_CONTEXT_SQL, ctx.openParameters());
        ctx.registered = true;
        registeredInTransaction = true;
      }
      if (begin) {
        const results = (await raw(beginAndEnterSql(ctx.enterParameters(tenantId, role)))) as Result[];
        result = results[1]!;
      } else {
        result = (await raw(ENTER_CONTEXT_SQL, ctx.enterParameters(tenantId, role))) as Result;
      }
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
    if (!dirty) {
      let result: Result & { command?: string };
      try {
        result = (await raw(text)) as Result & { command?: string };
      } catch (error) {
        ctx.poisoned = `the end of a tenant transaction failed (${error instanceof Error ? error.message : String(error)})`;
        throw error;
      }
      if (registeredHere && result.command !== 'COMMIT') ctx.registered = false;
      return result;
    }
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
    } else {
      dirty = false;
    }
    return results[0];
  };

  (client as unknown as { query: unknown }).query = (text: unknown, values?: unknown, callback?: unknown) => {
    if (callback === undefined && typeof text === 'string') {
      if (!dirty && !isTemplateText(text) && text !== ENTER_CONTEXT_SQL && text !== 'begin' && text !== 'commit' && text !== 'rollback') dirty = true;
      if (text === 'begin' && !beginHeld && (values === undefined || (Array.isArray(values) && values.length === 0))) {
        beginHeld = true;
        return Promise.resolve(BEGIN_RESULT);
      }
      if (beginHeld) {
        beginHeld = false;
        if (text === ENTER_CONTEXT_SQL && Array.isArray(values)) return enter(values, true);
        if (text === 'commit' || text === 'rollback') return Promise.resolve({ ...BEGIN_RESULT, command: text.toUpperCase() });
        return raw('begin').then(() => named(text, values));
      }
      if (text === ENTER_CONTEXT_SQL && Array.isArray(values)) return enter(values, false);
      if (ctx.inTenantTransaction && (text === 'commit' || text === 'rollback')) return finish(text);
    } else if (beginHeld) {
      dirty = true;
      beginHeld = false;
      return raw('begin').then(() => (callback === undefined ? named(text, values) : named(text, values, callback)));
    } else {
      dirty = true;
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
