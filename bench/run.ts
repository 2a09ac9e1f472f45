/**
 * npm run bench [-- --quick] [--embedded] [--vectors N] [--only LIST] [--keep] [--seed N]
 * npm run bench -- --growth [--quick]
 * npm run bench -- --halfvec [--quick]
 *
 * Builds a synthetic multi-tenant world in a database of its own (on the server of DATABASE_URL,
 * default postgres://postgres@127.0.0.1:5432/postgres, created and dropped; or embedded PGlite in
 * memory with --embedded), runs the scenarios, prints a table with each one's baseline and ratio
 * and the issue's goals, and writes bench/results/<backend>.json (<backend>-quick.json for
 * --quick). An embedded run also compares itself with bench/results/server*.json when present.
 *
 *   --quick        CI smoke size (10,000 vectors on the server, fewer iterations): under two minutes
 *   --embedded     PGlite (memory://) instead of the server
 *   --vectors N    vectors of the big tenant (default 100,000; embedded 20,000; quick 10,000/4,000)
 *   --only LIST    comma list of: migrate, lookups, ingest, search, usage (default: all)
 *   --keep         do not drop the server database at the end (prints its URL), for profiling
 *   --after-migrate FILE   run this SQL script as the owner right after the migrations (before the
 *                  load): measures a proposed migration without touching migrations/
 *   --growth       a mode of its own (bench/growth/): one tenant grown 10k → 100k → 1M rows and
 *                  10k → 100k → 300k chunks, the calls measured at each size; the growth table and
 *                  goals, bench/results/growth-server.json and .svg. With --quick: 1k → 5k → 20k
 *                  rows, 2k → 5k → 10k chunks (growth-server-quick.*). Server only.
 *   --halfvec      a mode of its own (bench/halfvec/): one tenant grown to 100k → 300k chunks, the
 *                  same embeddings in vector(1536) and halfvec(1536) (a copy of the table), HNSW
 *                  size and build time, heap size, recall@10 and interleaved p50/p95 of the
 *                  search side by side, issue 18's verdicts; bench/results/halfvec-server.json.
 *                  With --quick: 5k → 10k chunks (halfvec-server-quick.json). Server only.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { describeDatabase, describeMachine, openEmbedded, openServer, redact, serverTarget, type Backend } from './backend.ts';
import { loadWorld } from './data.ts';
import { runGrowth } from './growth/run.ts';
import { runHalfvec } from './halfvec/run.ts';
import { buildHnsw, dropHnsw } from './hnsw.ts';
import { say } from './progress.ts';
import { formatReport, readServerReport, resultsPath, writeReport, type Report, type Result } from './report.ts';
import { ingestConcurrentScenario, ingestScenario } from './scenarios/ingest.ts';
import { lookupScenarios } from './scenarios/lookups.ts';
import { migrateScenario } from './scenarios/migrate.ts';
import { searchScenarios } from './scenarios/search.ts';
import { usageScenarios } from './scenarios/usage.ts';
import { settingsFor } from './settings.ts';

const GROUPS = ['migrate', 'lookups', 'ingest', 'search', 'usage'] as const;

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    embedded: { type: 'boolean', default: false },
    vectors: { type: 'string' },
    only: { type: 'string' },
    keep: { type: 'boolean', default: false },
    seed: { type: 'string' },
    'after-migrate': { type: 'string' },
    growth: { type: 'boolean', default: false },
    halfvec: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log('usage: npm run bench -- [--quick] [--embedded] [--vectors N] [--only migrate,lookups,ingest,search,usage] [--keep] [--seed N] [--after-migrate FILE]');
  console.log('       npm run bench -- --growth [--quick] [--seed N]');
  console.log('       npm run bench -- --halfvec [--quick] [--seed N]');
  process.exit(0);
}
if (values.growth && values.halfvec) {
  console.error('--growth and --halfvec are modes of their own: run one, then the other');
  process.exit(2);
}
// The modes of their own: none of the groups run. Their sizes (a million rows, 300,000 1536-d
// vectors, twice over for --halfvec) do not fit PGlite in memory (one WASM process).
const MODES = [
  { flag: 'growth', on: values.growth, what: 'a million rows and 300,000 1536-d vectors', run: runGrowth },
  { flag: 'halfvec', on: values.halfvec, what: '300,000 1536-d vectors in two tables', run: runHalfvec },
] as const;
for (const mode of MODES) {
  if (!mode.on) continue;
  if (values.embedded) {
    console.error(`--${mode.flag} runs on the server only: ${mode.what} do not fit PGlite in memory (unset --embedded; DATABASE_URL picks the server)`);
    process.exit(2);
  }
  for (const option of ['only', 'vectors', 'after-migrate'] as const) {
    if (values[option] !== undefined) {
      console.error(`--${mode.flag} takes no --${option}: its sizes are the ladder of bench/${mode.flag}/settings.ts`);
      process.exit(2);
    }
  }
  if (values.keep) {
    console.error(`--${mode.flag} takes no --keep: its database is always dropped at the end`);
    process.exit(2);
  }
  await mode.run({ quick: values.quick, seed: values.seed === undefined ? undefined : Number(values.seed), url: process.env.DATABASE_URL?.trim() || undefined });
  process.exit(0);
}
const only = new Set((values.only ?? GROUPS.join(',')).split(',').map((g) => g.trim()));
for (const g of only) if (!(GROUPS as readonly string[]).includes(g)) throw new Error(`--only: unknown group ${g}`);
const settings = settingsFor({
  quick: values.quick,
  embedded: values.embedded,
  vectors: values.vectors === undefined ? undefined : Number(values.vectors),
  seed: values.seed === undefined ? undefined : Number(values.seed),
});

const started = performance.now();
const startedAt = new Date().toISOString();
const url = process.env.DATABASE_URL?.trim() || undefined;
let backend: Backend;
if (values.embedded) {
  say('backend: embedded PGlite (memory://)');
  backend = await openEmbedded();
} else {
  say(serverTarget(url));
  backend = await openServer({ url, poolMax: 10 });
}
say(`${settings.mode} run: ${settings.bigTenantVectors.toLocaleString('en-US')} vectors in the big tenant; ${backend.where}`);

const results: Result[] = [];
const load: Record<string, unknown> = {};
let keep = false;
try {
  if (only.has('migrate')) results.push(await migrateScenario(backend));
  else await migrateScenario(backend);
  const afterMigrate = values['after-migrate'];
  if (afterMigrate !== undefined) {
    say(`applying ${afterMigrate} after the migrations (an experiment: not a migration of the package)`);
    await backend.bare.script(readFileSync(afterMigrate, 'utf8'));
    load.afterMigrate = afterMigrate;
  }
  const { versions, settings: databaseSettings } = await describeDatabase(backend.bare);

  const definition = await dropHnsw(backend.bare);
  const world = await loadWorld(backend.bare, settings, { binaryVectors: backend.kind === 'server' });
  await backend.bare.query('analyze');
  load.counts = world.counts;
  load.seconds = world.seconds;
  load.vectorsPerSecond = (world.counts.vectors ?? 0) / (world.seconds.vectors ?? 1);

  let ingestWithout: Result | undefined;
  if (only.has('ingest')) {
    ingestWithout = await ingestScenario(backend, world, { withIndex: false });
    results.push(ingestWithout);
    // A server has a backend per connection; PGlite is one connection, so calls at once would queue.
    if (backend.kind === 'server') results.push(await ingestConcurrentScenario(backend, world, { concurrency: 2, oneStream: ingestWithout }));
  }
  const watcher = backend.kind === 'server' ? (await backend.openBare(1))[0] : undefined;
  const build = await buildHnsw(backend.bare, definition, { maintenanceWorkMem: settings.maintenanceWorkMem, rows: world.counts.vectors ?? 0, watcher });
  load.hnsw = build;
  if (!build.matchesMigration) throw new Error('the rebuilt HNSW index differs from the migration’s');
  await backend.bare.query('vacuum analyze vectors');
  results.push({
    id: 'load.hnswBuild',
    group: 'load',
    label: `HNSW build, ${(world.counts.vectors ?? 0).toLocaleString('en-US')} vectors`,
    figures: { seconds: build.seconds, 'index MiB': build.sizeMiB, maintenance_work_mem: build.maintenanceWorkMem, 'parallel workers': build.parallelWorkers },
  });
  results.push({
    id: 'load.vectors',
    group: 'load',
    label: `bulk load of vectors (owner, ${settings.loadBatch}-row statements, ${backend.kind === 'server' ? 'binary' : 'text'} vectors)`,
    rate: { perSecond: load.vectorsPerSecond as number, unit: 'vectors', concurrency: 1 },
    figures: { seconds: world.seconds.vectors ?? 0, rows: world.counts.vectors ?? 0, 'rows per statement': settings.loadBatch },
  });

  if (only.has('lookups')) results.push(...(await lookupScenarios(backend, world)));
  if (only.has('search')) results.push(...(await searchScenarios(backend, world)));
  if (only.has('usage')) results.push(...(await usageScenarios(backend, world)));
  if (only.has('ingest')) results.push(await ingestScenario(backend, world, { withIndex: true, ...(ingestWithout ? { without: ingestWithout } : {}) }));

  const order = ['migrate', 'load', 'lookup', 'search', 'ingest', 'usage'];
  results.sort((a, b) => order.indexOf(a.id.split('.')[0]!) - order.indexOf(b.id.split('.')[0]!));
  const server = backend.kind === 'embedded' ? readServerReport(settings.mode) : undefined;
  const report: Report = {
    backend: backend.kind,
    mode: settings.mode,
    startedAt,
    seconds: (performance.now() - started) / 1000,
    where: backend.where,
    settings: { ...settings },
    versions,
    databaseSettings,
    machine: describeMachine(),
    load,
    results,
    ...(server === undefined
      ? {}
      : {
          comparison: {
            file: server.path,
            startedAt: server.report.startedAt,
            mode: server.report.mode,
            bigTenantVectors: server.report.settings.bigTenantVectors,
          },
        }),
  };
  const path = resultsPath(backend.kind, settings.mode, values.only !== undefined);
  writeReport(path, report);
  console.log('');
  console.log(`bench: ${backend.kind === 'server' ? 'PostgreSQL server' : 'embedded PGlite'}, ${settings.mode} run, ${report.seconds.toFixed(0)} s — ${(versions.postgres ?? '?').split(',')[0]}, pgvector ${versions.pgvector}; ${report.machine.cores} cores, ${report.machine.memoryGiB} GiB`);
  if (server !== undefined) {
    console.log(`compared with ${server.path} (${server.report.mode} run of ${server.report.startedAt}, ${String(server.report.settings.bigTenantVectors)} big-tenant vectors)`);
  } else if (backend.kind === 'embedded') {
    console.log('no bench/results/server*.json to compare with: run npm run bench first');
  }
  console.log('');
  console.log(formatReport(report, server?.report));
  console.log('');
  console.log(`results written to ${path}`);
  keep = values.keep;
} finally {
  if (keep && backend.url !== undefined) {
    say(`--keep: database left in place: ${redact(backend.url)}`);
    await backend.db.destroy();
    process.exit(process.exitCode ?? 0);
  }
  await backend.close();
}
