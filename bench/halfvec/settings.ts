/**
 * The sizes and effort of `npm run bench -- --halfvec` (issue 18): the ladder of chunks one tenant
 * grows through, the world beside it (bench/growth's small world), how many queries the recall
 * is taken over and how many interleaved rounds the latencies. `--quick` is a small ladder that
 * checks the mode in about a minute.
 */
import { growthSettings, type GrowthSettings } from '../growth/settings.ts';

/** Sizes and durations of a halfvec run. */
export interface HalfvecSettings {
  mode: 'full' | 'quick';
  /** Chunks of the measured tenant at each step (each step adds the difference). */
  steps: number[];
  /** Queries of recall@10 (each against the exact top 10 over the full-precision vectors), the same for both variants. */
  recallQueries: number;
  /** Interleaved rounds of the latency run (a round: both variants, one query) and warm-up rounds. */
  rounds: number;
  warmup: number;
  /** maintenance_work_mem of both HNSW builds (the session's; the server is not reconfigured). */
  maintenanceWorkMem: string;
  /** The growth mode's settings: its world and its tenant loader (bench/growth/load.ts) are reused. */
  growth: GrowthSettings;
}

/** The ladder of a full run (100k → 300k chunks) or of --quick (5k → 10k). */
export function halfvecSettings(options: { quick: boolean; seed?: number | undefined }): HalfvecSettings {
  const quick = options.quick;
  return {
    mode: quick ? 'quick' : 'full',
    steps: quick ? [5_000, 10_000] : [100_000, 300_000],
    recallQueries: quick ? 50 : 200,
    rounds: quick ? 150 : 1_000,
    warmup: quick ? 10 : 30,
    maintenanceWorkMem: quick ? '1GB' : '4GB',
    growth: growthSettings(options),
  };
}
