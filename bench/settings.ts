/**
 * How big the synthetic world is and how long each scenario measures, for a full run and for
 * --quick (CI's smoke run, under two minutes). Every figure lands in the results JSON.
 */

/** Sizes and durations of one run. */
export interface Settings {
  mode: 'full' | 'quick';
  seed: number;
  /** Tenants, of Zipf-distributed sizes (tenant 0 the largest). */
  tenants: number;
  users: number;
  conversations: number;
  /** Mean messages per conversation (geometric; branches included). */
  meanMessages: number;
  /** Vectors of the one big tenant; it owns 80% of the table, the "5%" tenant 5%, the rest share 15%. */
  bigTenantVectors: number;
  /** Rows per INSERT of the bulk load. */
  loadBatch: number;
  /** Embedding clusters (topics); unrelated to tenants. */
  clusters: number;
  /** Sequential calls per lookup variant. */
  lookupIterations: number;
  /** Sequential calls per search variant (latency). */
  searchIterations: number;
  /** Queries whose exact top 10 is computed (index off) for recall. */
  recallQueries: number;
  /** Seconds of the concurrent search run. */
  throughputSeconds: number;
  /** Chunks per addChunks call (one document). */
  chunksPerDocument: number;
  /** Chunks stored by addChunks without the HNSW index; and one INSERT per chunk. */
  ingestChunks: number;
  ingestBaselineChunks: number;
  /** Chunks stored by addChunks with the HNSW index present (slower: fewer). */
  ingestWithIndexChunks: number;
  /** Seconds of each recordUsage run. */
  usageSeconds: number;
  /** maintenance_work_mem for the HNSW build (the graph must fit, or the build slows down a lot). */
  maintenanceWorkMem: string;
}

/** The settings of a run; `vectors` overrides bigTenantVectors. */
export function settingsFor(options: { quick: boolean; embedded: boolean; vectors?: number | undefined; seed?: number | undefined }): Settings {
  const quick = options.quick;
  // PGlite is one single-threaded WASM process with a memory limit: a smaller full world by default.
  const defaultVectors = quick ? (options.embedded ? 4_000 : 10_000) : options.embedded ? 20_000 : 100_000;
  return {
    mode: quick ? 'quick' : 'full',
    seed: options.seed ?? 20_250_101,
    tenants: quick ? 20 : 60,
    users: quick ? 400 : 3_000,
    conversations: quick ? 2_000 : 20_000,
    meanMessages: 10,
    bigTenantVectors: options.vectors ?? defaultVectors,
    loadBatch: 500,
    clusters: 40,
    lookupIterations: quick ? 300 : 3_000,
    searchIterations: quick ? 100 : 600,
    recallQueries: quick ? 30 : 100,
    throughputSeconds: quick ? 3 : 10,
    chunksPerDocument: 100,
    ingestChunks: quick ? 2_000 : 10_000,
    ingestBaselineChunks: quick ? 500 : 2_000,
    ingestWithIndexChunks: quick ? 300 : 1_000,
    usageSeconds: quick ? 3 : 10,
    maintenanceWorkMem: options.embedded ? '512MB' : '2GB',
  };
}
