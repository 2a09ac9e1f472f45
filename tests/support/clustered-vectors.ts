/**
 * Synthetic embeddings that look like real ones more than uniform noise does: `clusters` topics,
 * each a centroid plus a few directions of variation (a low intrinsic dimension, as real text
 * embeddings have), plus a little noise. Deterministic for a seed. Clusters are unrelated to
 * tenants: callers deal points out to tenants independently of their cluster.
 */
export interface ClusterSpec {
  dimensions?: number;
  clusters?: number;
  /** Directions of variation per cluster. */
  rank?: number;
  noise?: number;
  seed?: number;
}

/** mulberry32: a small, fast, seedable PRNG (uniform in [0, 1)). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A generator of clustered points; `point(cluster)` draws one, `next()` one of a random cluster. */
export function clusteredPoints(spec: ClusterSpec = {}) {
  const { dimensions = 1536, clusters = 40, rank = 4, noise = 0.05, seed = 42 } = spec;
  const random = prng(seed);
  const uniform = () => random() - 0.5;
  const basis = Array.from({ length: clusters }, () =>
    Array.from({ length: rank + 1 }, () => Float64Array.from({ length: dimensions }, uniform)),
  );
  const point = (cluster: number): number[] => {
    const [centroid, ...directions] = basis[cluster % clusters]!;
    const weights = directions.map(() => random() * 2 - 1);
    const out = new Array<number>(dimensions);
    for (let d = 0; d < dimensions; d += 1) {
      let x = centroid![d]! + noise * uniform();
      for (let j = 0; j < directions.length; j += 1) x += weights[j]! * directions[j]![d]!;
      out[d] = Math.fround(x); // what vector (float4) stores
    }
    return out;
  };
  return { point, next: () => point(Math.floor(random() * clusters)) };
}
