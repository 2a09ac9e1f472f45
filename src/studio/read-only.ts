/**
 * The studio's only ways to reach the database: read-only transactions, as the owner or as a
 * tenant through the package's own withTenant. No route of the studio runs SQL any other way.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import type { AppRole } from '../db/config.ts';
import type { DB } from '../db/schema.generated.ts';
import { withTenant } from '../db/tenant.ts';
import type { TenantTx } from '../db/tenant-tx.ts';

/**
 * Runs `fn` in a transaction whose first statement is `set transaction read only`: any write in
 * it fails with SQLSTATE 25006. Kysely's `setAccessMode('read only')` is not used: its PGlite
 * dialect (0.29) ignores it and the transaction stays read-write (measured: transaction_read_only
 * = off), while the statement works the same on both backends.
 */
export async function readOnly<T>(db: Kysely<DB>, fn: (tx: Transaction<DB>) => Promise<T>): Promise<T> {
  return db.transaction().execute(async (tx) => {
    await sql`set transaction read only`.execute(tx);
    return fn(tx);
  });
}

/**
 * Runs `fn` through `withTenant(db, tenantId, …, { role })`, so that row-level security and the
 * role's grants show exactly what that service sees of the tenant, and makes the transaction
 * read-only as its first statement of `fn`. (Not before: entering the signed tenant context
 * uses up the connection's counter with setval(), which a read-only transaction may not call;
 * PostgreSQL lets a transaction turn read-only at any point, never back.) `fn` must not catch SQL errors: a failed statement aborts
 * the transaction, and withTenant must see the error to roll back.
 */
export async function readOnlyAsTenant<T>(
  db: Kysely<DB>,
  tenantId: string,
  role: AppRole,
  fn: (tx: TenantTx) => Promise<T>,
): Promise<T> {
  return withTenant(
    db,
    tenantId,
    async (tx) => {
      await sql`set transaction read only`.execute(tx);
      return fn(tx);
    },
    { role },
  );
}
