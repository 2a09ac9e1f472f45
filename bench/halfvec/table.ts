/**
 * The half-precision copy of `vectors` that `--halfvec` measures against the real table.
 *
 * Why a second table, not an expression index on `vectors` nor a second column: what adopting
 * halfvec would change is the column's type, so the heap shrinks with the index (a vector(1536) is
 * 6,152 bytes, one row per 8 KB page; a halfvec(1536) 3,080, two rows per page). An expression
 * index `((embedding::halfvec(1536)))` would halve the index but leave every heap fetch and
 * the distance of every returned row (the cast of a 6 KB vector) as they are now; a second column
 * would make a 9 KB row, over a page (with storage PLAIN: refused; otherwise toasted). So
 * vectors_half is `vectors` column for column (defaults, the generated tsvector, storage, CHECKs;
 * no foreign keys, no indexes but its primary key and the HNSW index), with `embedding
 * halfvec(1536)`, filled from `vectors` with `embedding::halfvec(1536)` (pgvector rounds each
 * float4 to the nearest float2), row for row with the same ids.
 *
 * Seen while writing it (PostgreSQL 15, pgvector 0.8.0): `ALTER COLUMN embedding TYPE
 * halfvec(1536)` resets the column's storage to the type's default, EXTERNAL, though `LIKE …
 * INCLUDING STORAGE` had copied migration 0004's PLAIN; at 3,080 bytes (over the 2 kB TOAST
 * threshold) the embedding would then go to TOAST. So storage PLAIN is set again after the type
 * change — a migration adopting halfvec has to do the same.
 *
 * The heap does not halve with the index (first full run: 0.74× at 100k and 300k rows, the index
 * 0.50×): a row here is the 3,080-byte embedding plus the content and its tsvector, kept in the
 * row (storage MAIN, migration 0006), and only rows under ~4 KB fit two to an 8 KB page.
 */
import type { BareClient } from '../backend.ts';
import { buildHnsw, HNSW_INDEX, type HnswBuild } from '../hnsw.ts';
import { say } from '../progress.ts';

export const HALF_TABLE = 'vectors_half';
export const HALF_INDEX = 'vectors_half_embedding_hnsw_idx';

/**
 * The halfvec index's definition: the migration's (`definition`, from dropHnsw) with the table,
 * the name and the operator class replaced, so that m and ef_construction stay the migration's.
 */
export function halfDefinition(definition: string): string {
  const half = definition
    .replace(HNSW_INDEX, HALF_INDEX)
    .replace(/ ON (public\.)?vectors USING /, ` ON $1${HALF_TABLE} USING `)
    .replace('vector_cosine_ops', 'halfvec_cosine_ops');
  if (!half.includes(HALF_INDEX) || !half.includes(HALF_TABLE) || !half.includes('halfvec_cosine_ops')) {
    throw new Error(`cannot derive the halfvec index from the migration's: ${definition}`);
  }
  return half;
}

/** Creates vectors_half, empty (see above). Returns the columns copied from vectors (all but the generated one). */
export async function createHalfTable(bare: BareClient): Promise<string[]> {
  await bare.script(`
    create table ${HALF_TABLE} (like vectors including defaults including generated including storage including constraints);
    alter table ${HALF_TABLE} alter column embedding type halfvec(1536);
    alter table ${HALF_TABLE} alter column embedding set storage plain;
    alter table ${HALF_TABLE} add primary key (tenant_id, id);
  `);
  const storage = await bare.query<{ table: string; storage: string }>(
    `select attrelid::regclass::text as table, attstorage as storage from pg_attribute
     where attrelid in ('vectors'::regclass, '${HALF_TABLE}'::regclass) and attname = 'embedding'`,
  );
  if (storage.length !== 2 || storage.some((s) => s.storage !== 'p')) {
    throw new Error(`embedding storage is not PLAIN in both tables: ${JSON.stringify(storage)}`);
  }
  const columns = await bare.query<{ name: string }>(
    `select column_name as name from information_schema.columns
     where table_schema = 'public' and table_name = 'vectors' and is_generated = 'NEVER' order by ordinal_position`,
  );
  return columns.map((c) => c.name);
}

/** Copies the rows of vectors not yet in vectors_half (the step's difference), embeddings cast to halfvec(1536). */
export async function syncHalfTable(bare: BareClient, columns: string[]): Promise<{ rows: number; seconds: number }> {
  const list = columns.join(', ');
  const select = columns.map((c) => (c === 'embedding' ? 'v.embedding::halfvec(1536)' : `v.${c}`)).join(', ');
  const started = performance.now();
  const [row] = await bare.query<{ n: number }>(
    `with ins as (
       insert into ${HALF_TABLE} (${list})
       select ${select} from vectors v
       where not exists (select from ${HALF_TABLE} h where h.tenant_id = v.tenant_id and h.id = v.id)
       returning 1
     ) select count(*)::int as n from ins`,
  );
  const seconds = (performance.now() - started) / 1000;
  say(`  copied ${(row?.n ?? 0).toLocaleString('en-US')} rows to ${HALF_TABLE} (embedding::halfvec(1536)) in ${seconds.toFixed(1)} s`);
  return { rows: row?.n ?? 0, seconds };
}

/** Drops both HNSW indexes (before a step's load: the graph is rebuilt after, see bench/growth/run.ts). */
export async function dropBothIndexes(bare: BareClient): Promise<void> {
  await bare.query(`drop index if exists ${HNSW_INDEX}`);
  await bare.query(`drop index if exists ${HALF_INDEX}`);
}

/**
 * Builds both indexes, one after the other, with the same maintenance_work_mem and the server's
 * parallel maintenance workers; `halfFirst` alternates the order between steps so that neither
 * build always runs on the warmer cache or the quieter minute.
 */
export async function buildBothIndexes(
  bare: BareClient,
  definition: string,
  options: { maintenanceWorkMem: string; rows: number; watcher: BareClient | undefined; halfFirst: boolean },
): Promise<{ vector: HnswBuild; halfvec: HnswBuild }> {
  const build = (half: boolean) =>
    buildHnsw(bare, half ? halfDefinition(definition) : definition, {
      maintenanceWorkMem: options.maintenanceWorkMem,
      rows: options.rows,
      watcher: options.watcher,
      ...(half ? { index: HALF_INDEX } : {}),
    });
  let vector: HnswBuild;
  let halfvec: HnswBuild;
  if (options.halfFirst) {
    halfvec = await build(true);
    vector = await build(false);
  } else {
    vector = await build(false);
    halfvec = await build(true);
  }
  if (!vector.matchesMigration) throw new Error('the rebuilt HNSW index differs from the migration’s');
  if (!halfvec.matchesMigration) throw new Error(`${HALF_INDEX}'s definition is not the one asked for`);
  return { vector, halfvec };
}

/** Heap (main fork) and heap + TOAST sizes of both tables, bytes. */
export async function heapSizes(bare: BareClient): Promise<Record<'vector' | 'halfvec', { heap: number; heapAndToast: number; rows: number }>> {
  const size = async (table: string) => {
    const [row] = await bare.query<{ heap: string; total: string; indexes: string; rows: string }>(
      `select pg_relation_size($1)::text as heap, pg_total_relation_size($1)::text as total, pg_indexes_size($1)::text as indexes,
              (select count(*) from ${table})::text as rows`,
      [table],
    );
    return { heap: Number(row!.heap), heapAndToast: Number(row!.total) - Number(row!.indexes), rows: Number(row!.rows) };
  };
  return { vector: await size('vectors'), halfvec: await size(HALF_TABLE) };
}
