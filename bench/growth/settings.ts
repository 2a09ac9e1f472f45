/**
 * The size ladder of `npm run bench -- --growth` (issue 18): the sizes one tenant grows through,
 * the world beside it, and how long each size is measured. `--quick` is a small ladder that
 * anyone can run in a couple of minutes to check that the mode works.
 */
import { settingsFor, type Settings } from '../settings.ts';

/** One step of the ladder: what the growing tenant holds once the step is loaded. */
export interface GrowthStep {
  /** Messages and usage rows of the tenant (conversations: about a tenth, see load.ts). */
  rows: number;
  /** Chunks (vectors) of the tenant. */
  chunks: number;
}

/** Sizes and durations of a growth run. */
export interface GrowthSettings {
  mode: 'full' | 'quick';
  steps: GrowthStep[];
  /** Users of the growing tenant (fixed: the tenant grows by activity, not by head count). */
  users: number;
  /** Tenant-wide agents of the growing tenant (conversations and usage name them). */
  agents: number;
  /** Mean messages per conversation (geometric, at most 200). */
  meanMessages: number;
  /** One conversation in this many is a long one (150 messages), so getThread has depth 100 at every size. */
  deepEvery: number;
  /** Interleaved rounds of the calls at each size, and warm-up rounds. */
  rounds: number;
  warmup: number;
  /** Queries whose exact top 10 is computed (index scans off) for recall@10, at each size. */
  recallQueries: number;
  /** maintenance_work_mem of the HNSW builds (the session's; the server is not reconfigured). */
  maintenanceWorkMem: string;
  /** The world of the other tenants (bench/data.ts), loaded once before the ladder. */
  world: Settings;
}

/** The ladder of a full run (10k → 100k → 1M rows; 10k → 100k → 300k chunks) or of --quick. */
export function growthSettings(options: { quick: boolean; seed?: number | undefined }): GrowthSettings {
  const quick = options.quick;
  const base = settingsFor({ quick: true, embedded: false, seed: options.seed });
  return {
    mode: quick ? 'quick' : 'full',
    steps: quick
      ? [{ rows: 1_000, chunks: 2_000 }, { rows: 5_000, chunks: 5_000 }, { rows: 20_000, chunks: 10_000 }]
      : [{ rows: 10_000, chunks: 10_000 }, { rows: 100_000, chunks: 100_000 }, { rows: 1_000_000, chunks: 300_000 }],
    users: quick ? 20 : 100,
    agents: 2,
    meanMessages: 10,
    deepEvery: quick ? 50 : 500,
    rounds: quick ? 60 : 300,
    warmup: quick ? 5 : 20,
    recallQueries: quick ? 20 : 50,
    maintenanceWorkMem: quick ? '1GB' : '4GB',
    // The other tenants: a few of Zipf sizes with smaller data (the bench world, small).
    world: {
      ...base,
      mode: quick ? 'quick' : 'full',
      tenants: quick ? 8 : 20,
      users: quick ? 100 : 400,
      conversations: quick ? 300 : 2_000,
      bigTenantVectors: quick ? 800 : 8_000,
    },
  };
}
