import type { PGlite, Transaction } from '@electric-sql/pglite';
import { ConnectionContext, ENTER_CONTEXT_SQL, OPEN_CONTEXT_SQL, PGLITE_CLEANUP_SQL, tenantContextFailure } from './tenant-context.ts';

/**
 * The tenant-context hooks of guard-pg-client.ts for embedded PGlite, which is one connection:
 * Kysely runs each transaction through `pglite.transaction(cb)` and its statements through the
 * `tx.query` it is handed. withTenant's first statement gets the signature; when a tenant
 * transaction's work is done, PGLITE_CLEANUP_SQL runs in it before PGlite commits (so that
 * nothing it left reaches the next caller, who may be waiting for PGlite's lock already). A
 * statement prepared with SQL PREPARE cannot shadow anything PGlite runs (it prepares none by
 * name); the cleanup deallocates it.
 */
export function guardPglite(pglite: PGlite): PGlite {
  const ctx = new ConnectionContext();
  const transaction = pglite.transaction.bind(pglite);
  pglite.transaction = <T>(callback: (tx: Transaction) => Promise<T>): Promise<T> => {
    let entered = false;
    let registeredHere = false;
    const run = transaction(async (tx) => {
      const query = tx.query.bind(tx) as (text: string, params?: unknown[], options?: unknown) => Promise<{ rows: Record<string, unknown>[] }>;
      (tx as { query: unknown }).query = async (text: string, params?: unknown[], options?: unknown) => {
        if (text !== ENTER_CONTEXT_SQL || !Array.isArray(params)) return query(text, params, options);
        const [tenantId, , , role] = params as [string, null, null, string];
        let result;
        try {
          if (!ctx.registered) {
            await query(OPEN_CONTEXT_SQL, ctx.openParameters());
            ctx.registered = true;
            registeredHere = true;
          }
          result = await query(ENTER_CONTEXT_SQL, ctx.enterParameters(tenantId, role), options);
        } catch (error) {
          throw tenantContextFailure(error, tenantId);
        }
        entered = true;
        return result;
      };
      const value = await callback(tx);
      if (entered) await tx.exec(PGLITE_CLEANUP_SQL);
      return value;
    });
    return run.catch(async (error: unknown) => {
      // Rolled back: the key registered in this transaction is gone with it. What a rollback does
      // not undo (advisory locks, SQL-prepared statements) the next tenant transaction resets.
      if (registeredHere) ctx.registered = false;
      throw error;
    });
  };
  return pglite;
}
