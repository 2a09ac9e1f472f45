/**
 * `npm run bench -- --growth [--quick]` (issue 18): one tenant grown through a ladder of sizes
 * (settings.ts) beside the bench world's other tenants, in a server database of its own (created,
 * and dropped at the end, also on failure or Ctrl-C). At each size: load the difference
 * (load.ts), rebuild the HNSW index over all vectors (hnsw.ts: one build per step is far faster
 * than inserting into the graph, see below), VACUUM ANALYZE, check the usage rollups, take the
 * table sizes (sizes.ts) and measure the calls (calls.ts). Prints the growth table and the goals,
 * writes bench/results/growth-server.json and .svg (report.ts).
 *
 * Why a rebuild per step rather than keeping the index and inserting: inserting into the HNSW
 * graph runs at ~160 chunks/s on this machine (`addChunks, HNSW index present` in the main
 * bench), so the 200,000 chunks of the last step would take ~20 minutes, against a few minutes
 * for a build of the whole table with maintenance_work_mem large enough for the graph.
 */
import { describeDatabase, describeMachine, openServerDroppedOnSignal } from '../backend.ts';
import { loadWorld } from '../data.ts';
import { buildHnsw, dropHnsw, HNSW_INDEX } from '../hnsw.ts';
import { say } from '../progress.ts';
import { migrateScenario } from '../scenarios/migrate.ts';
import { growthQueries, measureSize } from './calls.ts';
import { checkRollups, createGrowthTenant, growTo } from './load.ts';
import { formatGrowth, growthGoals, writeGrowth, type GrowthPoint, type GrowthReport } from './report.ts';
import { growthSettings } from './settings.ts';
import { tableSizes } from './sizes.ts';

/** Runs the growth mode end to end. */
export async function runGrowth(options: { quick: boolean; seed?: number | undefined; url?: string | undefined }): Promise<void> {
  const s = growthSettings(options);
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const { backend, close } = await openServerDroppedOnSignal({ url: options.url, poolMax: 4 }, say);
  const ladder = s.steps.map((st) => `${st.rows.toLocaleString('en-US')} rows / ${st.chunks.toLocaleString('en-US')} chunks`).join(' → ');
  say(`growth ${s.mode} run: ${ladder}; ${backend.where}`);
  try {
    await migrateScenario(backend);
    const { versions, settings: databaseSettings } = await describeDatabase(backend.bare);
    const definition = await dropHnsw(backend.bare);
    const world = await loadWorld(backend.bare, s.world, { binaryVectors: true });
    const g = await createGrowthTenant(backend.bare, world, s);
    const queries = growthQueries(world, Math.max(50, s.recallQueries));
    const [watcher] = await backend.openBare(1);
    const points: GrowthPoint[] = [];
    for (const step of s.steps) {
      say(`\n— growing tenant to ${step.rows.toLocaleString('en-US')} rows and ${step.chunks.toLocaleString('en-US')} chunks —`);
      // The index of the step before goes first: the new chunks are loaded without it (see above).
      await backend.bare.query(`drop index if exists ${HNSW_INDEX}`);
      const loaded = await growTo(backend.bare, world, g, step, s);
      const [vectors] = await backend.bare.query<{ n: number }>(`select count(*)::int as n from vectors`);
      const build = await buildHnsw(backend.bare, definition, { maintenanceWorkMem: s.maintenanceWorkMem, rows: vectors?.n ?? 0, watcher });
      if (!build.matchesMigration) throw new Error('the rebuilt HNSW index differs from the migration’s');
      let t = performance.now();
      await backend.bare.query(`vacuum (analyze) conversations, messages, usage, usage_rollups, usage_day_rollups, resources, vectors`);
      const vacuumSeconds = (performance.now() - t) / 1000;
      const rollupMismatches = await checkRollups(backend.bare, g.info.id);
      if (rollupMismatches !== 0) throw new Error(`usage_rollups, usage_day_rollups: ${rollupMismatches} buckets of the growing tenant differ from its usage rows`);
      const sizes = await tableSizes(backend.bare, g.info.id);
      const tenantRows = (table: string) => sizes.tables.find((x) => x.table === table)?.tenantRows ?? 0;
      t = performance.now();
      say(`  measuring at ${step.rows.toLocaleString('en-US')} rows / ${step.chunks.toLocaleString('en-US')} chunks…`);
      const measure = await measureSize(backend, g, queries, s);
      say(`  measured in ${((performance.now() - t) / 1000).toFixed(0)} s`);
      points.push({
        step,
        tenant: {
          conversations: tenantRows('conversations'), messages: tenantRows('messages'), usage: tenantRows('usage'),
          chunks: tenantRows('vectors'), usageRollups: tenantRows('usage_rollups'), usageDayRollups: tenantRows('usage_day_rollups'),
        },
        load: { ...loaded, hnswSeconds: build.seconds, vacuumSeconds },
        rollupMismatches,
        measure,
        sizes,
      });
    }
    const report: GrowthReport = {
      backend: 'server',
      mode: s.mode,
      startedAt,
      seconds: (performance.now() - started) / 1000,
      where: backend.where,
      settings: { ...s },
      versions,
      databaseSettings,
      machine: describeMachine(),
      points,
      goals: growthGoals(points),
    };
    const paths = writeGrowth(report);
    console.log('');
    console.log(
      `bench --growth: PostgreSQL server, ${s.mode} run, ${report.seconds.toFixed(0)} s — ${(versions.postgres ?? '?').split(',')[0]}, pgvector ${versions.pgvector}; ` +
        `${report.machine.cores} cores, ${report.machine.memoryGiB} GiB, load average at the end ${report.machine.loadAverage}`,
    );
    console.log('');
    console.log(formatGrowth(report));
    console.log('');
    console.log(`results written to ${paths.json} and ${paths.svg}`);
  } finally {
    await close();
  }
}
