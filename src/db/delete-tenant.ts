import { sql, type Kysely } from 'kysely';
import { TenantTransferError } from './errors.ts';
import { assertOwnerPath, ownedTables, rowsOfTenant } from './owned-tables.ts';
import { assertUuid } from './tenant.ts';

const DEFAULT_BATCH = 1000;

/** Options of deleteTenant. */
export interface DeleteTenantOptions {
  tenantId: string;
  /** Rows per DELETE, each its own transaction (default 1000). */
  batchSize?: number;
  /** A line per committed batch (table, rows); it may throw to stop the run, which a later run then finishes. */
  log?: (line: string) => void;
}

/** What deleteTenant removed in this run. */
export interface TenantDeletion {
  tenantId: string;
  /** False when there was no such tenant (any more): nothing to do. */
  found: boolean;
  /** Rows deleted per table by this run's statements, children first (rows removed by a cascade are not counted). */
  tables: { table: string; rows: number }[];
}

/**
 * Removes every row of one tenant: every table with a tenant_id, its agents and their
 * agent_tools, and last its tenants row. Children first (the reverse of the foreign-key order),
 * in batches of `batchSize` rows by primary key, each batch a transaction of its own, so that no
 * lock is held for longer than one batch and other tenants' work goes on. Resumable: a run that
 * stops halfway (a crash, a lost connection) leaves a tenant with fewer rows, and the next run
 * finishes it; a run for a tenant that is gone does nothing (`found: false`). Rows other tenants
 * have that point at this tenant's agents follow their foreign keys (shares are deleted, other
 * references set to NULL). Stop the services' use of the tenant first: a row written meanwhile is
 * still removed (a later batch, or the cascade from the tenants row), but that service then works
 * on a tenant that is going away. The owner path, as exportTenant.
 *
 * @example
 * await exportTenant(db, { tenantId, dir: '/backups/acme' });   // keep a copy first
 * const deletion = await deleteTenant(db, { tenantId });
 */
export async function deleteTenant(db: Kysely<any>, options: DeleteTenantOptions): Promise<TenantDeletion> {
  assertUuid('tenantId', options.tenantId);
  const tenantId = options.tenantId.toLowerCase();
  const batchSize = options.batchSize ?? DEFAULT_BATCH;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new TenantTransferError(`batchSize must be an integer >= 1, got ${batchSize}`);
  await assertOwnerPath(db, 'deleteTenant');
  const raw = db.withoutPlugins();
  const exists = await sql<{ found: boolean }>`select exists (select from tenants where id = ${tenantId}::uuid) as found`.execute(raw);
  if (exists.rows[0]?.found !== true) return { tenantId, found: false, tables: [] };
  const tables = (await ownedTables(raw)).reverse();
  const deleted: { table: string; rows: number }[] = [];
  for (const table of tables) {
    const key = sql.join(table.key.map((k) => sql.ref(k.column)));
    let rows = 0;
    for (;;) {
      // One statement, so one transaction of its own: the locks it takes end with it.
      const result = await sql`
        delete from ${sql.table(table.name)}
        where (${key}) in (select ${key} from ${sql.table(table.name)} where ${rowsOfTenant(table.name, tenantId)} limit ${batchSize})`.execute(raw);
      const count = Number(result.numAffectedRows ?? 0n);
      rows += count;
      if (count > 0) options.log?.(`deleted ${count} row${count === 1 ? '' : 's'} of ${table.name}`);
      if (count === 0) break;
    }
    deleted.push({ table: table.name, rows });
  }
  return { tenantId, found: true, tables: deleted };
}
