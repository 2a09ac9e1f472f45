/**
 * Timing primitives of the benchmark: latency samples and their percentiles, a concurrency
 * runner that reports throughput, and interleaved A/B runs whose ratio is taken from samples
 * gathered side by side (so that noise from other work on the machine hits both alike).
 */
import { performance } from 'node:perf_hooks';

/** Latency summary of a sample set, in milliseconds. */
export interface Latency {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

/** The q-quantile (0..1) of ascending `sorted`, linearly interpolated between neighbours. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/** Percentiles of latency samples (ms). */
export function summarize(samples: readonly number[]): Latency {
  const sorted = [...samples].sort((a, b) => a - b);
  const sum = sorted.reduce((a, b) => a + b, 0);
  return {
    n: sorted.length,
    p50: quantile(sorted, 0.5),
    p95: quantile(sorted, 0.95),
    p99: quantile(sorted, 0.99),
    mean: sum / Math.max(1, sorted.length),
    min: sorted[0] ?? Number.NaN,
    max: sorted.at(-1) ?? Number.NaN,
  };
}

/** Milliseconds `fn` took. */
export async function timeIt(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

/** Runs `fn(i)` `warmup` times unmeasured, then `iterations` times one after another; the samples. */
export async function sequential(
  fn: (i: number) => Promise<unknown>,
  options: { iterations: number; warmup?: number },
): Promise<number[]> {
  for (let i = 0; i < (options.warmup ?? 0); i += 1) await fn(i);
  const samples: number[] = [];
  for (let i = 0; i < options.iterations; i += 1) samples.push(await timeIt(() => fn(i)));
  return samples;
}

/**
 * Interleaved runs of several variants of one operation: each round runs every variant once, in
 * an order that rotates from round to round. Stops after `iterations` rounds, or earlier once
 * `maxMs` have passed (at least `minIterations` rounds). Returns the samples of each variant.
 */
export async function interleaved<K extends string>(
  variants: Record<K, (i: number) => Promise<unknown>>,
  options: {
    iterations: number;
    warmup?: number;
    maxMs?: number;
    minIterations?: number;
    /** Filled with each variant's CPU time of this process over its measured calls, µs (process.cpuUsage). */
    clientCpuMicros?: Partial<Record<K, number>>;
  },
): Promise<Record<K, number[]>> {
  const keys = Object.keys(variants) as K[];
  const samples = Object.fromEntries(keys.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  for (let i = 0; i < (options.warmup ?? 0); i += 1) for (const k of keys) await variants[k](i);
  const deadline = performance.now() + (options.maxMs ?? Number.POSITIVE_INFINITY);
  for (let i = 0; i < options.iterations; i += 1) {
    if (i >= (options.minIterations ?? 0) && performance.now() > deadline) break;
    for (let j = 0; j < keys.length; j += 1) {
      const k = keys[(i + j) % keys.length]!;
      const cpu = process.cpuUsage();
      samples[k].push(await timeIt(() => variants[k](i)));
      if (options.clientCpuMicros !== undefined) {
        const used = process.cpuUsage(cpu);
        options.clientCpuMicros[k] = (options.clientCpuMicros[k] ?? 0) + used.user + used.system;
      }
    }
  }
  return samples;
}

/** What a concurrent run did. */
export interface Throughput {
  concurrency: number;
  operations: number;
  seconds: number;
  /** Operations per second over the whole run. */
  perSecond: number;
  latency: Latency;
  /** Every call's latency, ms. */
  samples: number[];
}

/**
 * `concurrency` workers call `fn(worker, i)` back to back until `durationMs` has passed (or
 * `maxOperations` calls were made); every call's latency is kept.
 */
export async function concurrent(
  fn: (worker: number, i: number) => Promise<unknown>,
  options: { concurrency: number; durationMs: number; maxOperations?: number },
): Promise<Throughput> {
  const samples: number[] = [];
  const started = performance.now();
  const deadline = started + options.durationMs;
  const max = options.maxOperations ?? Number.POSITIVE_INFINITY;
  let issued = 0;
  const worker = async (w: number) => {
    while (performance.now() < deadline && issued < max) {
      const i = issued;
      issued += 1;
      samples.push(await timeIt(() => fn(w, i)));
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, (_, w) => worker(w)));
  const seconds = (performance.now() - started) / 1000;
  return {
    concurrency: options.concurrency,
    operations: samples.length,
    seconds,
    perSecond: samples.length / seconds,
    latency: summarize(samples),
    samples,
  };
}

/** `value / baseline`, or NaN when either is missing. */
export function ratio(value: number | undefined, baseline: number | undefined): number {
  if (value === undefined || baseline === undefined || !Number.isFinite(value) || !Number.isFinite(baseline) || baseline === 0) {
    return Number.NaN;
  }
  return value / baseline;
}
