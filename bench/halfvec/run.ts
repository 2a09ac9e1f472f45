/**
 * `npm run bench -- --halfvec [--quick]` (issue 18): does pgvector's halfvec(1536) keep recall and
 * latency while halving the HNSW index? In a server database of its own (created, and dropped at
 * the end, also on failure or Ctrl-C): the growth mode's small world and its tenant
 * (bench/growth/load.ts), whose chunks grow through the ladder of settings.ts (100k → 300k; each
 * step adds the difference through bench/data.ts's loadVectors), and vectors_half, the same rows
 * with `embedding halfvec(1536)` (table.ts says why a second table). At each size: both HNSW
 * indexes dropped before the load and rebuilt after with the same settings (table.ts), VACUUM
 * ANALYZE of both tables (autovacuum may be off on the server), sizes, the exact top 10 of every
 * query over the full-precision vectors, then recall@10 and interleaved latency of the same
 * search over each table (measure.ts). Prints the table and the verdicts, writes
 * bench/results/halfvec-server.json (report.ts).
 */
import { describeDatabase, describeMachine, openServerDroppedOnSignal } from '../backend.ts';
import { loadWorld } from '../data.ts';
import { growthQueries } from '../growth/calls.ts';
import { createGrowthTenant, growTo } from '../growth/load.ts';
import { dropHnsw } from '../hnsw.ts';
import { say } from '../progress.ts';
import { migrateScenario } from '../scenarios/migrate.ts';
import { exactTop, measureSearch } from './measure.ts';
import { formatHalfvec, halfvecVerdicts, writeHalfvec, type HalfvecPoint, type HalfvecReport } from './report.ts';
import { halfvecSettings } from './settings.ts';
import { buildBothIndexes, createHalfTable, dropBothIndexes, HALF_TABLE, heapSizes, syncHalfTable } from './table.ts';

/** Runs the halfvec mode end to end. */
export async function runHalfvec(options: { quick: boolean; seed?: number | undefined; url?: string | undefined }): Promise<void> {
  const s = halfvecSettings(options);
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const { backend, close } = await openServerDroppedOnSignal({ url: options.url, poolMax: 2 }, say);
  say(`halfvec ${s.mode} run: ${s.steps.map((c) => c.toLocaleString('en-US')).join(' → ')} chunks in one tenant; ${backend.where}`);
  try {
    await migrateScenario(backend);
    const { versions, settings: databaseSettings } = await describeDatabase(backend.bare);
    const definition = await dropHnsw(backend.bare);
    const world = await loadWorld(backend.bare, s.growth.world, { binaryVectors: true });
    const g = await createGrowthTenant(backend.bare, world, s.growth);
    const columns = await createHalfTable(backend.bare);
    const queries = growthQueries(world, s.recallQueries);
    const [watcher, measurer] = await backend.openBare(2);
    const points: HalfvecPoint[] = [];
    for (const [i, chunks] of s.steps.entries()) {
      say(`\n— growing the tenant to ${chunks.toLocaleString('en-US')} chunks —`);
      await dropBothIndexes(backend.bare);
      const loaded = await growTo(backend.bare, world, g, { rows: 0, chunks }, s.growth);
      const copy = await syncHalfTable(backend.bare, columns);
      let t = performance.now();
      await backend.bare.query(`vacuum (analyze) vectors, ${HALF_TABLE}`);
      const vacuumSeconds = (performance.now() - t) / 1000;
      const heap = await heapSizes(backend.bare);
      if (heap.vector.rows !== heap.halfvec.rows) throw new Error(`vectors has ${heap.vector.rows} rows, ${HALF_TABLE} ${heap.halfvec.rows}`);
      const halfFirst = i % 2 === 1;
      const build = await buildBothIndexes(backend.bare, definition, { maintenanceWorkMem: s.maintenanceWorkMem, rows: heap.vector.rows, watcher, halfFirst });
      t = performance.now();
      const truth = await exactTop(backend.bare, g.info.id, queries);
      const exactSeconds = (performance.now() - t) / 1000;
      const search = await measureSearch(measurer!, g.info.id, queries, truth, s, exactSeconds);
      say(
        `  recall@10 vector ${search.recall.vector.toFixed(3)}, halfvec ${search.recall.halfvec.toFixed(3)}; ` +
          `p50 ${search.latency.vector.p50.toFixed(2)} / ${search.latency.halfvec.p50.toFixed(2)} ms (${search.p50Ratio.toFixed(2)}×)`,
      );
      points.push({
        chunks,
        tableRows: heap.vector.rows,
        load: { chunksSeconds: loaded.chunks, copySeconds: copy.seconds, vacuumSeconds },
        build: { ...build, halfFirst },
        heap,
        search,
      });
    }
    const verdicts = halfvecVerdicts(points);
    const report: HalfvecReport = {
      backend: 'server',
      mode: s.mode,
      startedAt,
      seconds: (performance.now() - started) / 1000,
      where: backend.where,
      settings: { ...s, growth: undefined, world: { tenants: s.growth.world.tenants, bigTenantVectors: s.growth.world.bigTenantVectors, seed: s.growth.world.seed } },
      versions,
      databaseSettings,
      machine: describeMachine(),
      points,
      verdicts,
      adopt: verdicts.every((v) => v.met),
    };
    const path = writeHalfvec(report);
    console.log('');
    console.log(
      `bench --halfvec: PostgreSQL server, ${s.mode} run, ${report.seconds.toFixed(0)} s — ${(versions.postgres ?? '?').split(',')[0]}, pgvector ${versions.pgvector}; ` +
        `${report.machine.cores} cores, ${report.machine.memoryGiB} GiB, load average at the end ${report.machine.loadAverage}`,
    );
    console.log('');
    console.log(formatHalfvec(report));
    console.log('');
    console.log(`results written to ${path}`);
  } finally {
    await close();
  }
}
