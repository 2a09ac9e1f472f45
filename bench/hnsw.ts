/**
 * The HNSW index of vectors around the bulk load: dropped before (inserting into a graph row by
 * row is the slow way), built after in one pass with a generous maintenance_work_mem (so that the
 * graph fits in memory) and the server's parallel maintenance workers, and then checked to be
 * exactly the index the migration defines.
 */
import type { BareClient } from './backend.ts';
import { say } from './progress.ts';

export const HNSW_INDEX = 'vectors_embedding_hnsw_idx';

/** The index definition as the migration made it (pg_get_indexdef); then drops it. */
export async function dropHnsw(bare: BareClient): Promise<string> {
  const definition = await indexDefinition(bare);
  if (definition === undefined) throw new Error(`${HNSW_INDEX} is not there: did the migrations change?`);
  await bare.query(`drop index ${HNSW_INDEX}`);
  return definition;
}

/** What building the index took. */
export interface HnswBuild {
  seconds: number;
  sizeMiB: number;
  maintenanceWorkMem: string;
  parallelWorkers: string;
  /** The rebuilt index's pg_get_indexdef equals the migration's. */
  matchesMigration: boolean;
}

/**
 * Builds the index with `definition` (from dropHnsw). `watcher`, a second connection (server only),
 * polls pg_stat_progress_create_index for progress lines. `index`: the name `definition` creates
 * (default HNSW_INDEX; `--halfvec` builds a second index on a copy of the table with it).
 */
export async function buildHnsw(
  bare: BareClient,
  definition: string,
  options: { maintenanceWorkMem: string; rows: number; watcher?: BareClient | undefined; index?: string },
): Promise<HnswBuild> {
  const { maintenanceWorkMem, watcher } = options;
  const index = options.index ?? HNSW_INDEX;
  await bare.query(`select set_config('maintenance_work_mem', $1, false)`, [maintenanceWorkMem]);
  const [workers] = await bare.query<{ w: string }>(`select current_setting('max_parallel_maintenance_workers') as w`);
  say(`  building ${index} (maintenance_work_mem ${maintenanceWorkMem}, up to ${workers?.w} parallel workers)…`);
  const started = performance.now();
  let polling = watcher !== undefined;
  const poll = (async () => {
    while (polling) {
      await new Promise((resolve) => setTimeout(resolve, 5000));
      if (!polling || watcher === undefined) break;
      const [p] = await watcher.query<{ phase: string; done: string; total: string }>(
        `select phase, tuples_done::text as done, tuples_total::text as total from pg_stat_progress_create_index limit 1`,
      ).catch(() => []);
      if (p !== undefined && polling) {
        const total = Number(p.total) > 0 ? Number(p.total) : options.rows;
        say(`    ${p.phase}: ${Number(p.done).toLocaleString('en-US')}/${total.toLocaleString('en-US')} tuples, ${((performance.now() - started) / 1000).toFixed(0)} s`);
      }
    }
  })();
  try {
    await bare.query(definition);
  } finally {
    polling = false;
  }
  // Taken before waiting for the poller, which sleeps 5 s between looks: the build's own time.
  const seconds = (performance.now() - started) / 1000;
  await poll;
  await bare.query(`reset maintenance_work_mem`);
  const rebuilt = await indexDefinition(bare, index);
  const [size] = await bare.query<{ bytes: string }>(`select pg_relation_size($1)::text as bytes`, [index]);
  say(`  built in ${seconds.toFixed(1)} s; definition ${rebuilt === definition ? 'equals' : 'DIFFERS FROM'} ${index === HNSW_INDEX ? "the migration's" : 'the one given'}`);
  return {
    seconds,
    sizeMiB: Number(size?.bytes ?? 0) / 2 ** 20,
    maintenanceWorkMem,
    parallelWorkers: workers?.w ?? '?',
    matchesMigration: rebuilt === definition,
  };
}

async function indexDefinition(bare: BareClient, index = HNSW_INDEX): Promise<string | undefined> {
  const [row] = await bare.query<{ def: string }>(
    `select pg_get_indexdef(c.oid) as def from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = 'public' and c.relname = $1`,
    [index],
  );
  return row?.def;
}
