/**
 * addChunks ingestion of 1536-d chunks, one document (settings.chunksPerDocument chunks) per call
 * inside withTenant, against one INSERT per chunk through a bare connection in the same
 * transaction shape (role and tenant set, one transaction per document). Run twice: without the
 * HNSW index (during the load, before it is built) and with it present. The rows are deleted
 * after each run so that the search scenarios see the loaded world only.
 */
import { withTenant } from '../../src/db/tenant.ts';
import { toVectorSql } from '../../src/db/vector.ts';
import { addChunks, type NewChunk } from '../../src/queries/vectors.ts';
import type { Backend } from '../backend.ts';
import type { World } from '../data.ts';
import { cpuFigures, cpuMeter } from '../cpu.ts';
import { concurrent, ratio, summarize, timeIt } from '../measure.ts';
import { progress } from '../progress.ts';
import { between, uuid } from '../random.ts';
import type { Result } from '../report.ts';

interface Document {
  resourceId: string;
  chunks: NewChunk[];
}

/** Measures ingestion; `without`: the result of the run without the index, to compare the run with it. */
export async function ingestScenario(backend: Backend, world: World, options: { withIndex: boolean; without?: Result }): Promise<Result> {
  const s = world.settings;
  const tenantId = world.ingest.id;
  const total = options.withIndex ? s.ingestWithIndexChunks : s.ingestChunks;
  const baselineTotal = options.withIndex ? Math.max(100, Math.floor(s.ingestWithIndexChunks / 2)) : s.ingestBaselineChunks;
  const docs = await makeDocuments(backend, world, total);
  const baselineDocs = await makeDocuments(backend, world, baselineTotal);
  const label = options.withIndex ? 'HNSW index present' : 'no HNSW index';

  const bar = progress(`addChunks, ${label}`, total, 'chunks');
  const calls: number[] = [];
  let done = 0;
  const meter = await cpuMeter(backend);
  const started = performance.now();
  for (const doc of docs) {
    calls.push(await timeIt(() => withTenant(backend.db, tenantId, (tx) => addChunks(tx, { resourceId: doc.resourceId, chunks: doc.chunks }))));
    done += doc.chunks.length;
    bar.update(done);
  }
  const seconds = (performance.now() - started) / 1000;
  const spent = await meter();
  bar.finish();

  const baseBar = progress(`one INSERT per chunk, ${label}`, baselineTotal, 'chunks');
  const baseCalls: number[] = [];
  done = 0;
  const baseStarted = performance.now();
  for (const doc of baselineDocs) {
    baseCalls.push(
      await timeIt(() =>
        backend.bare.tenantTransaction(tenantId, async (q) => {
          for (const [position, chunk] of doc.chunks.entries()) {
            await q(
              `insert into vectors (tenant_id, resource_id, position, content, embedding) values ($1, $2, $3, $4, $5::vector)`,
              [tenantId, doc.resourceId, position, chunk.content, toVectorSql(chunk.embedding)],
            );
          }
        }),
      ),
    );
    done += doc.chunks.length;
    baseBar.update(done);
  }
  const baseSeconds = (performance.now() - baseStarted) / 1000;
  baseBar.finish();
  await backend.bare.query(`delete from vectors where tenant_id = $1`, [tenantId]);

  const rate = total / seconds;
  const baseRate = baselineTotal / baseSeconds;
  const withoutRate = options.without?.rate?.perSecond;
  return {
    id: options.withIndex ? 'ingest.withIndex' : 'ingest.noIndex',
    group: 'ingestion (addChunks, 1536-d)',
    label: `addChunks, ${label}`,
    latency: summarize(calls),
    rate: { perSecond: rate, unit: 'chunks', concurrency: 1 },
    baseline: { label: 'one INSERT per chunk', latency: summarize(baseCalls), rate: { perSecond: baseRate, unit: 'chunks', concurrency: 1 } },
    ratio: { value: ratio(rate, baseRate), of: 'rate' },
    figures: {
      'chunks per call': s.chunksPerDocument,
      chunks: total,
      ...cpuFigures(spent, total),
      ...(withoutRate === undefined ? {} : { 'rate ÷ rate without the index': rate / withoutRate }),
    },
    goals: options.withIndex
      ? []
      : [{ text: '≥ 5,000 chunks/s without the HNSW index (one call at a time)', met: rate >= 5000, actual: `${Math.round(rate).toLocaleString('en-US')}/s` }],
  };
}

/**
 * addChunks without the HNSW index, `concurrency` documents at once (each call its own withTenant
 * transaction on its own pooled connection), as an ingestion worker pool would run it. One call
 * stream is bound by one server backend's CPU per chunk; this shows what the machine's cores give.
 */
export async function ingestConcurrentScenario(backend: Backend, world: World, options: { concurrency: number; oneStream: Result }): Promise<Result> {
  const s = world.settings;
  const tenantId = world.ingest.id;
  const docs = await makeDocuments(backend, world, s.ingestChunks);
  const bar = progress(`addChunks, no HNSW index, ${options.concurrency} calls at once`, s.ingestChunks, 'chunks');
  let done = 0;
  const meter = await cpuMeter(backend);
  const run = await concurrent(
    async (_, i) => {
      const doc = docs[i]!;
      await withTenant(backend.db, tenantId, (tx) => addChunks(tx, { resourceId: doc.resourceId, chunks: doc.chunks }));
      done += doc.chunks.length;
      bar.update(done);
    },
    { concurrency: options.concurrency, durationMs: 10 * 60_000, maxOperations: docs.length },
  );
  const spent = await meter();
  bar.finish();
  await backend.bare.query(`delete from vectors where tenant_id = $1`, [tenantId]);
  const rate = done / run.seconds;
  const oneStream = options.oneStream.rate?.perSecond;
  return {
    id: 'ingest.noIndexConcurrent',
    group: 'ingestion (addChunks, 1536-d)',
    label: `addChunks, no HNSW index, ${options.concurrency} calls at once`,
    latency: run.latency,
    rate: { perSecond: rate, unit: 'chunks', concurrency: options.concurrency },
    ...(oneStream === undefined ? {} : { baseline: { label: 'one call at a time', latency: options.oneStream.latency!, rate: { perSecond: oneStream, unit: 'chunks', concurrency: 1 } } }),
    ratio: { value: ratio(rate, oneStream), of: 'rate' },
    figures: { 'chunks per call': s.chunksPerDocument, chunks: done, ...cpuFigures(spent, done) },
    goals: [{ text: `≥ 5,000 chunks/s without the HNSW index (${options.concurrency} calls at once)`, met: rate >= 5000, actual: `${Math.round(rate).toLocaleString('en-US')}/s` }],
  };
}

/** Documents of the ingestion tenant (their resources inserted as the owner), `total` chunks in all. */
async function makeDocuments(backend: Backend, world: World, total: number): Promise<Document[]> {
  const s = world.settings;
  const r = world.random;
  const docs: Document[] = [];
  for (let left = total; left > 0; left -= s.chunksPerDocument) {
    const cluster = Math.floor(r() * s.clusters);
    const chunks = Array.from({ length: Math.min(left, s.chunksPerDocument) }, () => ({
      content: world.texts.chunk(r, cluster, between(r, 40, 120)),
      embedding: world.points.point(r() < 0.8 ? cluster : Math.floor(r() * s.clusters)),
    }));
    docs.push({ resourceId: uuid(r), chunks });
  }
  await backend.bare.query(
    `insert into resources (tenant_id, id, name, type) select $1, id, 'upload', 'document' from unnest($2::uuid[]) as d(id)`,
    [world.ingest.id, docs.map((d) => d.resourceId)],
  );
  return docs;
}
