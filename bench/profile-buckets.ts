/**
 * Where a process's CPU went, by layer: reads a V8 CPU profile (`node --cpu-prof …`) and sums the
 * sampled time of each layer of the query path — the socket (write/read system calls), node-postgres,
 * Kysely building and compiling queries, Kysely's executor, result plugins, the package's tenant
 * context and guard, query functions, HMAC, garbage collection — over the whole process, startup
 * (module loading, a child process waited for) left out. Made for profiles of bench/profile-loop.ts, which runs one variant
 * of one lookup in a loop (async code loses its callers' frames in a profile, so the variants
 * must run in processes of their own to be told apart):
 *
 *   node --cpu-prof --cpu-prof-interval 50 --cpu-prof-dir /tmp/prof bench/profile-loop.ts package getUser 4000
 *   node bench/profile-buckets.ts /tmp/prof/<file>.cpuprofile --calls 4500
 *
 * `--calls N` divides by the number of calls made (the loop's count plus its 500 warm-up calls),
 * printing µs per call; without it, milliseconds in all.
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Layers, tried from the sampled frame up its stack; the first that matches a frame takes the sample. */
const LAYERS: [string, RegExp][] = [
  ['tenant context + guard', /\/src\/db\/(tenant|tenant-context|guard-pg-client|prepared-statements)\.ts/],
  ['result plugins', /camel-case|\/src\/db\/vector\.ts|#transformResult/],
  ['kysely build + compile', /kysely\/dist\/(esm\/)?(operation-node|query-compiler|query-builder|expression|parser|util\/object-utils|raw-builder)/],
  ['kysely executor', /kysely\/dist/],
  ['query functions', /\/src\/queries\//],
  ['node-postgres', /node_modules\/(pg|pg-pool|pg-protocol|postgres-date|pg-types)\//],
  ['HMAC', /node:crypto|internal\/crypto/],
  ['socket', /node:net|internal\/streams|stream_base_commons|^(writev|writeBuffer|writeUtf8String)$/],
  ['garbage collector', /^\(garbage collector\)$/],
];

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith('--') && !/^\d+$/.test(a));
const calls = args.includes('--calls') ? Number(args[args.indexOf('--calls') + 1]) : undefined;
if (file === undefined) {
  console.error('usage: node bench/profile-buckets.ts FILE.cpuprofile [--calls N]');
  process.exit(2);
}

const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parentOf = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
const sampled = new Map<number, number>();
profile.samples.forEach((id, i) => sampled.set(id, (sampled.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));

const frameText = (n: ProfileNode) => (n.callFrame.url === '' ? n.callFrame.functionName : `${n.callFrame.functionName} ${n.callFrame.url}`);
const stackOf = (id: number): ProfileNode[] => {
  const stack: ProfileNode[] = [];
  for (let cur: number | undefined = id; cur !== undefined; cur = parentOf.get(cur)) stack.push(byId.get(cur)!);
  return stack;
};

const totals = new Map<string, number>();
let all = 0;
for (const [id, micros] of sampled) {
  const stack = stackOf(id);
  // Idle time is not CPU; the garbage collector is sampled as a root (the allocations of every layer).
  const leaf = stack[0]!.callFrame.functionName;
  if (leaf === '(idle)' || leaf === '(program)' || leaf === '(root)') continue;
  // Startup: loading modules, and a child process waited for (profile-loop.ts migrates with the CLI).
  if (stack.some((n) => /internal\/modules\/|child_process/.test(n.callFrame.url))) continue;
  // The microtask loop is the caller of every async continuation: it is a layer only when the sample
  // is in it, not in what it runs.
  let layer = /runMicrotasks|processTicksAndRejections/.test(leaf) ? 'promises (microtask loop)' : 'other';
  search: for (const n of layer === 'other' ? stack : []) {
    for (const [name, pattern] of LAYERS) {
      if (pattern.test(frameText(n)) || pattern.test(n.callFrame.functionName)) {
        layer = name;
        break search;
      }
    }
  }
  totals.set(layer, (totals.get(layer) ?? 0) + micros);
  all += micros;
}

const unit = calls === undefined ? 'ms' : 'µs/call';
const scale = (micros: number) => (calls === undefined ? micros / 1000 : micros / calls);
console.log(`${file}${calls === undefined ? '' : `, ${calls} calls`}`);
for (const [layer, micros] of [...totals].sort((a, b) => b[1] - a[1])) {
  console.log(`  ${layer.padEnd(24)} ${scale(micros).toFixed(1).padStart(8)} ${unit}`);
}
console.log(`  ${'all'.padEnd(24)} ${scale(all).toFixed(1).padStart(8)} ${unit}`);
