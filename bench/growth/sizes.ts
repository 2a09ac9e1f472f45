/**
 * Table and index sizes at each size of the growing tenant: the tables its calls read (whole
 * tables: every tenant's rows), from pg_relation_size (heap), pg_indexes_size and
 * pg_total_relation_size (heap + indexes + TOAST), and the tenant's own row counts.
 *
 * Seen in the first runs: the HNSW index is exactly as large as the vectors heap (156 / 859 /
 * 2,422 MiB at 20k / 110k / 310k rows). Not a coincidence: a 1536-d vector is 6,152 bytes, more
 * than half of an 8 KB page, so both the heap (storage PLAIN, migration 0004) and each HNSW element
 * take one page per vector, whatever else the row or the element holds.
 */
import type { BareClient } from '../backend.ts';
import { HNSW_INDEX } from '../hnsw.ts';

export const SIZED_TABLES = ['conversations', 'messages', 'usage', 'usage_rollups', 'usage_day_rollups', 'resources', 'vectors'] as const;

/** One table's size, MiB, and rows (all tenants; `tenantRows`: the growing tenant's). */
export interface TableSize {
  table: string;
  rows: number;
  tenantRows: number;
  heapMiB: number;
  indexesMiB: number;
  totalMiB: number;
}

/** Sizes of SIZED_TABLES and of the HNSW index alone. Run after VACUUM ANALYZE (rows: exact counts). */
export async function tableSizes(bare: BareClient, tenantId: string): Promise<{ tables: TableSize[]; hnswMiB: number }> {
  const mib = (bytes: string | number) => Number(bytes) / 2 ** 20;
  const tables: TableSize[] = [];
  for (const table of SIZED_TABLES) {
    const [row] = await bare.query<{ rows: string; tenant_rows: string; heap: string; indexes: string; total: string }>(
      `select (select count(*) from ${table})::text as rows, (select count(*) from ${table} where tenant_id = $1)::text as tenant_rows,
              pg_relation_size($2)::text as heap, pg_indexes_size($2)::text as indexes, pg_total_relation_size($2)::text as total`,
      [tenantId, table],
    );
    tables.push({
      table,
      rows: Number(row!.rows),
      tenantRows: Number(row!.tenant_rows),
      heapMiB: mib(row!.heap),
      indexesMiB: mib(row!.indexes),
      totalMiB: mib(row!.total),
    });
  }
  const [hnsw] = await bare.query<{ bytes: string | null }>(`select pg_relation_size(to_regclass($1))::text as bytes`, [HNSW_INDEX]);
  return { tables, hnswMiB: mib(hnsw?.bytes ?? 0) };
}
