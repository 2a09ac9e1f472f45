/**
 * Seeded randomness for the synthetic data: the PRNG of tests/support/clustered-vectors.ts, and
 * what the data needs on top of it (UUIDs, Zipf ranks, weighted picks, shuffles). The same seed
 * gives the same data, run after run.
 */
import { prng } from '../tests/support/clustered-vectors.ts';

export { clusteredPoints, prng } from '../tests/support/clustered-vectors.ts';

/** A uniform [0, 1) generator. */
export type Random = () => number;

/** A seeded generator derived from `seed` and a label, so that independent streams stay independent. */
export function stream(seed: number, label: string): Random {
  let h = seed >>> 0;
  for (let i = 0; i < label.length; i += 1) h = Math.imul(h ^ label.charCodeAt(i), 0x9e3779b1) >>> 0;
  return prng(h);
}

/** A version-4-shaped UUID from 128 seeded bits. */
export function uuid(random: Random): string {
  let hex = '';
  for (let i = 0; i < 4; i += 1) hex += Math.floor(random() * 2 ** 32).toString(16).padStart(8, '0');
  const variant = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** An integer in [min, max]. */
export function between(random: Random, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

/** One element of a non-empty array. */
export function pick<T>(random: Random, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]!;
}

/** Shuffles in place (Fisher–Yates) and returns the array. */
export function shuffle<T>(random: Random, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/** Weights 1/rank^s for ranks 1..n: Zipf's law. */
export function zipfWeights(n: number, s: number): number[] {
  return Array.from({ length: n }, (_, i) => 1 / (i + 1) ** s);
}

/** Draws indexes with probability proportional to `weights` (binary search over the cumulative sums). */
export function weightedSampler(weights: readonly number[]): (random: Random) => number {
  const cumulative = new Float64Array(weights.length);
  let total = 0;
  weights.forEach((w, i) => {
    total += w;
    cumulative[i] = total;
  });
  return (random) => {
    const x = random() * total;
    let lo = 0;
    let hi = cumulative.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid]! > x) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  };
}

/** Splits `total` into integer parts proportional to `weights`, each at least `min`. */
export function apportion(total: number, weights: readonly number[], min = 0): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  const parts = weights.map((w) => Math.max(min, Math.floor((total * w) / sum)));
  let left = total - parts.reduce((a, b) => a + b, 0);
  for (let i = 0; left > 0; i = (i + 1) % parts.length, left -= 1) parts[i]! += 1;
  return parts;
}
