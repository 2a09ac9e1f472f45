import { sql, type RawBuilder } from 'kysely';
import type { TenantTx } from '../db/tenant-tx.ts';
import { NotFoundError, ValidationError, foreignKeyViolated, sqlState } from '../db/errors.ts';
import { tenantOf } from '../db/tenant.ts';
import { vectorValue, type VectorValue } from '../db/vector.ts';
import { tooLargeForPage } from './cursor.ts';
import { DEFAULT_PAGE_BYTES, MAX_CHUNK_CONTENT_BYTES, MAX_CONTENT_BYTES_CEILING, MAX_METADATA_BYTES, MAX_SEARCH_K, MAX_TEXT_CANDIDATES, TSVECTOR_MAX_BYTES } from './limits.ts';
import { assertInt, assertText, assertTextBytes, assertUuid, jsonObject, limitName, limitOption, pageBytes } from './validate.ts';
import { assertRole } from '../db/service-roles.ts';

/** Dimensions of vectors.embedding (`vector(1536)`). */
export const EMBEDDING_DIMENSIONS = 1536;
/** Reciprocal-rank-fusion constant of hybridSearch: score = Σ 1 / (RRF_K + rank). */
export const RRF_K = 60;
/**
 * hnsw.ef_search used by the searches (pgvector's default is 40): the size of the candidate
 * list per index scan step. Higher is better recall and slower; see bench/ for the trade-off.
 */
export const DEFAULT_EF_SEARCH = 100;

const MAX_CHUNKS_PER_STATEMENT = 500;

/**
 * Chunks of at most this many bytes cannot fail to_tsvector's TSVECTOR_MAX_BYTES, so a call whose
 * chunks are all this small needs no savepoint (a subtransaction; more than 64 of them in one
 * transaction slow every snapshot on the server). Measured, a chunk's tsvector takes at most
 * about 3× its bytes (distinct hyphenated words: the compound, its parts, 4 bytes of positions
 * and alignment each); an upper bound — every byte in at most 3 tokens (a URL, its host, its
 * path; a compound and its part), lowercase at most 1.5× longer, 5 bytes per token — is under
 * 10×. This threshold leaves 32×.
 */
const TSVECTOR_SAFE_CHUNK_BYTES = Math.floor(TSVECTOR_MAX_BYTES / 32);

/**
 * The largest squared norm accepted for an embedding: pgvector's cosine distance sums x² in
 * 4-byte floats (in any order: it is compiled with -fassociative-math), which overflow at 3.40282e38;
 * this bound leaves room for the rounding of 1,536 additions. Then the norms, and by
 * Cauchy–Schwarz the dot product, stay finite, and the distance is never NaN.
 */
const MAX_SQUARED_NORM = 3.4e38;

/** Where chunks come from; every search can be narrowed by the same fields. */
export interface ChunkSource {
  resourceId?: string;
  conversationId?: string;
  toolId?: number;
}

/**
 * What a search can be narrowed to: a source (resource, conversation, tool) and chunks whose
 * metadata contains `metadata` (jsonb `@>`: `{ page: 3 }` matches `{ page: 3, section: 'intro' }`).
 * The filters combine with AND.
 */
export interface ChunkFilter extends ChunkSource {
  metadata?: Record<string, unknown>;
}

/**
 * A chunk to store: its text, its embedding, its position in the source (default: its index), and
 * its own metadata (a JSON object of at most MAX_METADATA_BYTES, default `{}`).
 */
export interface NewChunk {
  content: string;
  embedding: number[];
  position?: number;
  metadata?: Record<string, unknown>;
}

/** A row of similaritySearch, most similar first. */
export interface SimilarChunk {
  id: string;
  content: string;
  /** 1 - cosine distance: 1 is the same direction, 0 orthogonal. */
  similarity: number;
  resourceId: string | null;
  conversationId: string | null;
  toolId: number | null;
  position: number;
  metadata: Record<string, unknown>;
}

/** A row of hybridSearch, best fused score first. */
export interface HybridChunk extends Omit<SimilarChunk, 'similarity'> {
  /** Reciprocal rank fusion: 1/(60 + vectorRank) + 1/(60 + textRank), a missing leg adding 0. */
  score: number;
  /** Rank (1 = best) in the vector leg, or null when only the full-text leg found it. */
  vectorRank: number | null;
  /** Rank (1 = best) in the full-text leg, or null when only the vector leg found it. */
  textRank: number | null;
}

/**
 * Stores chunks of a resource, conversation or tool output with their embeddings, in the current
 * tenant. Everything is validated before any SQL; the insert is one statement per 500 chunks and
 * all-or-nothing for the call (a savepoint covers several statements).
 *
 * Each chunk: `content` non-empty, at most `maxContentBytes` bytes of UTF-8 (default
 * MAX_CHUNK_CONTENT_BYTES, 256 KiB; at most MAX_CONTENT_BYTES_CEILING); `embedding` 1,536 finite
 * numbers that fit 4-byte floats, with a norm that is neither zero nor too large for pgvector's
 * 4-byte arithmetic (MAX_SQUARED_NORM) once rounded to floats: cosine distance to such a vector is
 * NaN; `metadata` a JSON object of at most MAX_METADATA_BYTES (64 KiB) as JSON (default `{}`),
 * which the searches return and filter on. A chunk whose full-text vector PostgreSQL cannot build (its distinct words take more than
 * TSVECTOR_MAX_BYTES in a tsvector, error 54000) → ValidationError naming the chunk, and nothing
 * of the call is written; the caller's transaction goes on (a savepoint covers calls with chunks
 * larger than TSVECTOR_SAFE_CHUNK_BYTES, which finds the chunk after a failure).
 *
 * @example
 * await withTenant(db, tenantId, (tx) => addChunks(tx, { resourceId, chunks: [{ content, embedding }] }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function addChunks(
  db: TenantTx,
  params: ChunkSource & { chunks: NewChunk[]; maxContentBytes?: number },
): Promise<{ inserted: number }> {
  assertRole(db, 'addChunks');
  const tenantId = tenantOf(db);
  assertSource(params);
  const { largest, metadataTexts } = validateChunks(params.chunks, params.maxContentBytes);
  if (params.chunks.length === 0) return { inserted: 0 };

  const batches: NewChunk[][] = [];
  for (let i = 0; i < params.chunks.length; i += MAX_CHUNKS_PER_STATEMENT) {
    batches.push(params.chunks.slice(i, i + MAX_CHUNKS_PER_STATEMENT));
  }
  const atomic = batches.length > 1 || largest > TSVECTOR_SAFE_CHUNK_BYTES;
  if (atomic) await sql`savepoint add_chunks`.execute(db);
  try {
    let inserted = 0;
    let offset = 0;
    for (const batch of batches) {
      // One row of parameters per chunk, the embedding a vector parameter of its own: binary to a
      // server, text to PGlite. Before, the embeddings went as text in an unnest() array (bench,
      // 100,000-row table without the HNSW index: 1,017 → 3,203 chunks/s; CPU 1.03 → 0.32 ms per chunk).
      // A plain multi-row VALUES, not INSERT … SELECT: Citus runs INSERT … SELECT through COPY,
      // which it refuses on a table with row-level security.
      const source = sql`${tenantId}::uuid, ${params.resourceId ?? null}::uuid, ${params.conversationId ?? null}::uuid, ${params.toolId ?? null}::integer`;
      const rows = batch.map(
        (c, i) =>
          sql`(${source}, ${c.position ?? offset + i}::integer, ${c.content}::text, ${vectorValue(c.embedding)}::vector, ${metadataTexts[offset + i]!}::jsonb)`,
      );
      const result = await sql`
        insert into vectors (tenant_id, resource_id, conversation_id, tool_id, position, content, embedding, metadata)
        values ${sql.join(rows)}`.execute(db);
      inserted += Number(result.numAffectedRows ?? 0n);
      offset += batch.length;
    }
    if (atomic) await sql`release savepoint add_chunks`.execute(db);
    return { inserted };
  } catch (error) {
    if (!atomic) throw mapSourceError(error, params);
    await sql`rollback to savepoint add_chunks`.execute(db).catch(() => {});
    const refused = sqlState(error) === '54000' ? await tsvectorRefusal(db, params.chunks) : undefined;
    await sql`release savepoint add_chunks`.execute(db).catch(() => {});
    throw refused ?? mapSourceError(error, params);
  }
}

/**
 * Checks chunks as addChunks stores them (see there), before any SQL: the ValidationError names the
 * chunk. Returns the largest chunk's bytes when some could pass TSVECTOR_SAFE_CHUNK_BYTES (else 0),
 * and each chunk's metadata as JSON text.
 */
function validateChunks(chunks: unknown, maxContentBytes: number | undefined): { largest: number; metadataTexts: string[] } {
  const maxBytes = limitOption('maxContentBytes', maxContentBytes, MAX_CHUNK_CONTENT_BYTES, MAX_CONTENT_BYTES_CEILING);
  const limit = limitName(maxBytes, MAX_CHUNK_CONTENT_BYTES, 'MAX_CHUNK_CONTENT_BYTES', 'maxContentBytes');
  if (!Array.isArray(chunks)) throw new ValidationError('chunks', 'must be an array');
  let largest = 0;
  const metadataTexts: string[] = [];
  chunks.forEach((chunk, index) => {
    if (typeof chunk !== 'object' || chunk === null) throw new ValidationError(`chunks[${index}]`, 'must be an object');
    assertTextBytes(`chunks[${index}].content`, chunk.content, maxBytes, limit);
    if (chunk.content.trim().length === 0) throw new ValidationError(`chunks[${index}].content`, 'must be a non-empty string');
    assertEmbedding(`chunks[${index}].embedding`, chunk.embedding);
    if (chunk.position !== undefined) assertInt(`chunks[${index}].position`, chunk.position, 0);
    metadataTexts.push(chunkMetadata(`chunks[${index}].metadata`, chunk.metadata));
    // A string of n UTF-16 units holds at most 3n bytes: count only when that could pass the threshold.
    if (chunk.content.length * 3 > TSVECTOR_SAFE_CHUNK_BYTES) largest = Math.max(largest, Buffer.byteLength(chunk.content, 'utf8'));
  });
  return { largest, metadataTexts };
}

/**
 * After an insert failed with 54000 (rolled back to the savepoint add_chunks): the chunk whose
 * tsvector PostgreSQL cannot build, as a ValidationError, found by building the tsvectors of the
 * chunks that could fail, largest first, until one fails (then back to the savepoint again).
 */
async function tsvectorRefusal(db: TenantTx, chunks: NewChunk[]): Promise<ValidationError | undefined> {
  const suspects = chunks
    .map((chunk, index) => ({ index, bytes: Buffer.byteLength(chunk.content, 'utf8') }))
    .filter((chunk) => chunk.bytes > TSVECTOR_SAFE_CHUNK_BYTES)
    .sort((x, y) => y.bytes - x.bytes);
  for (const { index } of suspects) {
    try {
      // The generated column's own expression (migration 0004).
      await sql`select length(to_tsvector('english', ${chunks[index]!.content}::text))`.execute(db);
    } catch (error) {
      await sql`rollback to savepoint add_chunks`.execute(db).catch(() => {});
      if (sqlState(error) !== '54000') return undefined;
      const needed = /\((\d+) bytes/.exec(error instanceof Error ? error.message : '')?.[1];
      return new ValidationError(
        `chunks[${index}].content`,
        `holds more distinct words than PostgreSQL's full-text index takes: its tsvector would be ` +
          `${needed === undefined ? 'more than' : `${needed} bytes, more than`} ${TSVECTOR_MAX_BYTES} (TSVECTOR_MAX_BYTES); split it into smaller chunks`,
      );
    }
  }
  return undefined;
}

/**
 * The k chunks of the current tenant nearest to `embedding` by cosine distance (HNSW index),
 * optionally narrowed by ChunkFilter (resource, conversation, tool, metadata containment) and cut
 * at `threshold` similarity. Returns k rows whenever k matching rows are visible, however
 * selective the filters and however small the tenant's share of the index: pgvector's iterative
 * index scan keeps scanning past rows that RLS or the filters drop, and when it still ends short
 * (it stops after hnsw.max_scan_tuples, 20,000 by default) the same statement falls back to an
 * exact search over the matching rows (see nearestChunks).
 * `embedding` as for addChunks (a zero or overflowing norm → ValidationError); rows whose distance
 * is NaN (a zero vector written by raw SQL) are left out in SQL, so a similarity is never NaN.
 * The chunks' content and metadata are at most `maxPageBytes` (default DEFAULT_PAGE_BYTES, 32 MiB) in all;
 * more → ValidationError('maxPageBytes') with the size, no content sent (ask for a smaller k).
 *
 * @example
 * const hits = await withTenant(db, tenantId, (tx) => similaritySearch(tx, { embedding, k: 5, threshold: 0.75, metadata: { lang: 'en' } }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function similaritySearch(
  db: TenantTx,
  params: ChunkFilter & { embedding: number[]; k?: number; threshold?: number; maxPageBytes?: number },
): Promise<SimilarChunk[]> {
  assertRole(db, 'similaritySearch');
  const tenantId = tenantOf(db);
  assertEmbedding('embedding', params.embedding);
  const filter = searchFilter(params);
  const k = topK(params.k);
  const maxBytes = pageBytes(params.maxPageBytes);
  if (params.threshold !== undefined && (typeof params.threshold !== 'number' || !(params.threshold >= -1 && params.threshold <= 1))) {
    throw new ValidationError('threshold', 'must be a number between -1 and 1');
  }
  await useIterativeIndexScan(db);
  const query = vectorValue(params.embedding);
  const { rows } = await sql<Omit<SimilarChunk, 'similarity'> & { distance: number; totalBytes: string | number }>`
    with ${nearestChunks(tenantId, query, filter, k, sql`content, resource_id, conversation_id, tool_id, position, metadata`)},
    hits as (
      select * from nearest
      ${params.threshold === undefined ? sql`` : sql`where 1 - distance >= ${params.threshold}`}
    ),
    sized as (
      select *, sum(octet_length(content) + octet_length(metadata::text)) over () as total_bytes from hits
    )
    select id, case when total_bytes <= ${maxBytes} then content end as content,
           resource_id, conversation_id, tool_id, position,
           case when total_bytes <= ${maxBytes} then metadata end as metadata, distance, total_bytes
    from sized
    order by distance, id`.execute(db);
  assertResultFits(rows, maxBytes);
  return rows.map(({ distance, totalBytes: _totalBytes, ...row }) => ({ ...row, similarity: 1 - Number(distance) }));
}

/**
 * The CTEs `nearest_index`, `nearest_exact` and `nearest`: the `limit` chunks of the tenant
 * matching `filter` nearest to `query` (columns id, `columns`, distance), in one statement.
 * nearest_index is the HNSW scan (relaxed_order: the caller sorts). relaxed iterative scans stop
 * after hnsw.max_scan_tuples, so a selective filter over a big index can end short of `limit`
 * rows that exist; then (and only then: the count is a one-time filter, an InitPlan) nearest_exact
 * orders the matching rows by the distance written so that no index can serve the order
 * (`+ 0`): the planner reaches them through the filter's own index (a resource's or tool's chunks,
 * the metadata GIN index) or the tenant's rows, and sorts. nearest is the exact answer when it was
 * computed, the index's otherwise. Rows addChunks would refuse (written by raw SQL) are filtered
 * inside both scans (see validEmbedding), so each goes on to `limit` real rows.
 */
function nearestChunks(tenantId: string, query: VectorValue, filter: RawBuilder<unknown>, limit: number, columns: RawBuilder<unknown>): RawBuilder<unknown> {
  return sql`nearest_index as materialized (
      select id, ${columns}, embedding <=> ${query}::vector as distance
      from vectors
      where tenant_id = ${tenantId} ${filter} and ${validEmbedding(query)}
      order by distance
      limit ${limit}
    ),
    nearest_exact as materialized (
      select id, ${columns}, embedding <=> ${query}::vector as distance
      from vectors
      where tenant_id = ${tenantId} ${filter} and ${validEmbedding(query)}
        and (select count(*) from nearest_index) < ${limit}
      order by (embedding <=> ${query}::vector) + 0, id
      limit ${limit}
    ),
    nearest as (
      select * from nearest_exact
      union all
      select * from nearest_index where not exists (select from nearest_exact)
    )`;
}

/**
 * The k best chunks of the current tenant for a question, fusing a vector leg (cosine distance)
 * and a full-text leg (`websearch_to_tsquery('english', query)` over the stored tsvector, ranked
 * by ts_rank) by reciprocal rank fusion (k = 60), in one statement. Each leg over-fetches (4k
 * rows, at least 40) among the chunks matching the filters (ChunkFilter, as for similaritySearch,
 * with the same exact fallback for the vector leg); a chunk found by one leg only still ranks, and
 * vectorRank/textRank say where it came from. `embedding` and the byte budget (`maxPageBytes`) as
 * for similaritySearch; rows whose vector distance is NaN are left out of the vector leg.
 *
 * The full-text leg ranks every chunk matching the query (exact fusion; its cost grows with the
 * matches: bench/README.md). `textCandidates` (an integer ≥ 4k, at least 40, at most
 * MAX_TEXT_CANDIDATES) ranks only the first that many matches in the table's physical order — no
 * rank is known before ranking — which bounds the leg's cost and changes the result when there
 * are more matches than that: a better-ranked match outside the candidates is missed. The bench
 * measures the fused top-k's recall against the exact fusion (README, "Search").
 *
 * @example
 * const hits = await withTenant(db, tenantId, (tx) => hybridSearch(tx, { query: 'row level security', embedding, k: 5 }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function hybridSearch(
  db: TenantTx,
  params: ChunkFilter & { query: string; embedding: number[]; k?: number; maxPageBytes?: number; textCandidates?: number },
): Promise<HybridChunk[]> {
  assertRole(db, 'hybridSearch');
  const tenantId = tenantOf(db);
  assertText('query', params.query, 10_000);
  assertEmbedding('embedding', params.embedding);
  const filter = searchFilter(params);
  const k = topK(params.k);
  const maxBytes = pageBytes(params.maxPageBytes);
  const legSize = Math.max(4 * k, 40);
  const textCandidates = textCandidateBound(params.textCandidates, legSize);
  await useIterativeIndexScan(db);
  const vector = vectorValue(params.embedding);
  const metadata = params.metadata === undefined ? null : metadataFilter(params.metadata);
  const { rows } = await sql<Omit<HybridChunk, 'score'> & { score: string | number; totalBytes: string | number }>`
    with ${nearestChunks(tenantId, vector, filter, legSize, sql`tenant_id`)},
    vector_ranked as (
      select id, row_number() over (order by distance, id) as rank from nearest
    ),
    text_leg as (
      -- app.search_text: SECURITY DEFINER, so that the GIN index serves it under row-level security.
      select t.id, t.rank
      from app.search_text(websearch_to_tsquery('english', ${params.query}), ${legSize},
                           ${params.resourceId ?? null}::uuid, ${params.conversationId ?? null}::uuid, ${params.toolId ?? null}::integer,
                           ${metadata}::jsonb, ${textCandidates}::integer) as t
    ),
    fused as (
      -- One row per id found by either leg. A union, not a full join: the join below then keys on
      -- a plain column and becomes a primary-key lookup per id.
      select id, min(vector_rank) as vector_rank, min(text_rank) as text_rank
      from (
        select id, rank as vector_rank, null::bigint as text_rank from vector_ranked
        union all
        select id, null, rank from text_leg
      ) legs
      group by id
    ),
    best as (
      select v.id, v.content, v.resource_id, v.conversation_id, v.tool_id, v.position, v.metadata,
             coalesce(1.0 / (${RRF_K} + f.vector_rank), 0) + coalesce(1.0 / (${RRF_K} + f.text_rank), 0) as score,
             f.vector_rank::int as vector_rank, f.text_rank::int as text_rank
      from fused f
      join vectors v on v.tenant_id = ${tenantId} and v.id = f.id
      order by score desc, v.id
      limit ${k}
    ),
    sized as (
      select *, sum(octet_length(content) + octet_length(metadata::text)) over () as total_bytes from best
    )
    select id, case when total_bytes <= ${maxBytes} then content end as content,
           resource_id, conversation_id, tool_id, position,
           case when total_bytes <= ${maxBytes} then metadata end as metadata,
           score, vector_rank, text_rank, total_bytes
    from sized
    order by score desc, id`.execute(db);
  assertResultFits(rows, maxBytes);
  return rows.map(({ totalBytes: _totalBytes, ...row }) => ({ ...row, score: Number(row.score) }));
}


/**
 * Re-indexes a resource: deletes every chunk of it and stores `chunks` (as addChunks, same
 * validation and limits) in the caller's transaction, so a search running at the same time sees
 * the old chunks or the new ones — never a mix, never none — and once the transaction commits,
 * only the new. The resource row is locked first (FOR UPDATE): concurrent re-indexes of one
 * resource, and addChunks to it, wait for each other instead of leaving two sets of chunks. A
 * missing or foreign resource → NotFoundError('resource', id). A failure (a chunk refused by
 * PostgreSQL) leaves the old chunks in place (a savepoint covers the call) and throws.
 *
 * @example
 * await withTenant(db, tenantId, (tx) => replaceResourceChunks(tx, { resourceId, chunks: [{ content, embedding, metadata: { page: 1 } }] }));
 * // { deleted: 12, inserted: 1 }
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function replaceResourceChunks(
  db: TenantTx,
  params: { resourceId: string; chunks: NewChunk[]; maxContentBytes?: number },
): Promise<{ deleted: number; inserted: number }> {
  assertRole(db, 'replaceResourceChunks');
  const tenantId = tenantOf(db);
  assertUuid('resourceId', params.resourceId);
  // Every chunk is checked before anything is deleted (addChunks checks them again, cheaply).
  validateChunks(params.chunks, params.maxContentBytes);
  await sql`savepoint replace_resource_chunks`.execute(db);
  try {
    const locked = await sql<{ id: string }>`
      select id from resources where tenant_id = ${tenantId} and id = ${params.resourceId} for update`.execute(db);
    if (locked.rows.length === 0) throw new NotFoundError('resource', params.resourceId);
    const removed = await sql`delete from vectors where tenant_id = ${tenantId} and resource_id = ${params.resourceId}`.execute(db);
    const { inserted } = await addChunks(db, { resourceId: params.resourceId, chunks: params.chunks, maxContentBytes: params.maxContentBytes });
    await sql`release savepoint replace_resource_chunks`.execute(db);
    return { deleted: Number(removed.numAffectedRows ?? 0n), inserted };
  } catch (error) {
    await sql`rollback to savepoint replace_resource_chunks`.execute(db).catch(() => {});
    await sql`release savepoint replace_resource_chunks`.execute(db).catch(() => {});
    throw error;
  }
}

/**
 * Deletes the current tenant's chunks of a resource and/or a conversation (both given: the chunks
 * of that resource in that conversation); at least one of them, else ValidationError. Returns how
 * many were deleted (0 for a missing or foreign id). To delete a resource with its chunks, use
 * deleteResource; a conversation's chunks also go when it is purged.
 *
 * @example
 * await withTenant(db, tenantId, (tx) => deleteChunks(tx, { conversationId })); // { deleted: 3 }
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function deleteChunks(db: TenantTx, params: { resourceId?: string; conversationId?: string }): Promise<{ deleted: number }> {
  assertRole(db, 'deleteChunks');
  const tenantId = tenantOf(db);
  if (typeof params !== 'object' || params === null || (params.resourceId === undefined && params.conversationId === undefined)) {
    throw new ValidationError('params', 'must name a resourceId and/or a conversationId');
  }
  if (params.resourceId !== undefined) assertUuid('resourceId', params.resourceId);
  if (params.conversationId !== undefined) assertUuid('conversationId', params.conversationId);
  const result = await db
    .deleteFrom('vectors')
    .where('tenantId', '=', tenantId)
    .$if(params.resourceId !== undefined, (qb) => qb.where('resourceId', '=', params.resourceId!))
    .$if(params.conversationId !== undefined, (qb) => qb.where('conversationId', '=', params.conversationId!))
    .executeTakeFirst();
  return { deleted: Number(result.numDeletedRows) };
}

/** ValidationError('maxPageBytes') when the rows' content (total_bytes, the same on every row) passes the budget. */
function assertResultFits(rows: { totalBytes: string | number }[], maxBytes: number): void {
  const total = rows.length === 0 ? 0 : Number(rows[0]!.totalBytes);
  if (total <= maxBytes) return;
  const limitText = limitName(maxBytes, DEFAULT_PAGE_BYTES, 'DEFAULT_PAGE_BYTES', 'maxPageBytes');
  throw tooLargeForPage({ maxBytes, limitName: limitText }, `the ${rows.length} chunks found hold`, total);
}

/**
 * Transaction-local settings for a filtered HNSW search (one round trip): pgvector's iterative
 * scan and ef_search, and custom plans for prepared statements. A generic plan (which PostgreSQL
 * may keep for a prepared statement after five executions) is costed for an average tenant, a few
 * rows, and is an exact scan; used for the biggest tenant it was 8× slower (bench: p50 16.3 vs 1.9 ms).
 *
 * No JIT and no parallel workers: the statement's plan includes the exact fallback
 * (nearestChunks' nearest_exact), costed as a sort of the whole tenant, which passes jit_above_cost
 * and gets a Gather of two workers, though it runs only when the index scan ends short. The JIT
 * compiles every expression of the plan at executor start-up, run or not (~30 ms), and the workers
 * are launched before the fallback's one-time filter, which they evaluate (~10 ms); at 100,000
 * rows that made a 2 ms search 70–110 ms (bench, search scenario, server: similaritySearch p50
 * 111 ms before, see bench/README.md).
 */
async function useIterativeIndexScan(db: TenantTx): Promise<void> {
  await sql`select set_config('hnsw.iterative_scan', 'relaxed_order', true),
                   set_config('hnsw.ef_search', ${String(DEFAULT_EF_SEARCH)}, true),
                   set_config('plan_cache_mode', 'force_custom_plan', true),
                   set_config('jit', 'off', true),
                   set_config('max_parallel_workers_per_gather', '0', true)`.execute(db);
}

/**
 * Rows whose distance to `query` is a number, and whose own norm is neither 0 nor overflowing
 * as pgvector computes it in 4-byte floats (the rows addChunks refuses, which raw SQL can write):
 * the distance of a row to itself is NaN exactly then (0/0 or ∞/∞). Such a row would otherwise
 * come back for any query: NaN for a zero vector, which PostgreSQL sorts above every number and
 * takes as >= any threshold (NaN = NaN is true there), or distance 0 for a vector whose squares
 * underflow (x/0 = ∞, clamped to similarity 1). The query is validated the same way, so the
 * first condition is a second wall: a similarity is never NaN.
 */
function validEmbedding(query: VectorValue): RawBuilder<unknown> {
  return sql`(embedding <=> ${query}::vector) <> 'NaN'::float8 and (embedding <=> embedding) <> 'NaN'::float8`;
}

/** The SQL of a search's filters (`and …` conditions on vectors), validated first. */
function searchFilter(params: ChunkFilter): RawBuilder<unknown> {
  assertSource(params);
  const parts: RawBuilder<unknown>[] = [];
  if (params.resourceId !== undefined) parts.push(sql`and resource_id = ${params.resourceId}`);
  if (params.conversationId !== undefined) parts.push(sql`and conversation_id = ${params.conversationId}`);
  if (params.toolId !== undefined) parts.push(sql`and tool_id = ${params.toolId}`);
  if (params.metadata !== undefined) parts.push(sql`and metadata @> ${metadataFilter(params.metadata)}::jsonb`);
  return sql.join(parts, sql` `);
}

/** The `metadata` filter as JSON text: a JSON object of at most MAX_METADATA_BYTES. */
function metadataFilter(metadata: unknown): string {
  return jsonObject('metadata', metadata, { maxBytes: MAX_METADATA_BYTES, limitName: 'MAX_METADATA_BYTES' });
}

/** A chunk's metadata as JSON text (`{}` when left out): a JSON object of at most MAX_METADATA_BYTES. */
function chunkMetadata(field: string, metadata: unknown): string {
  if (metadata === undefined) return '{}';
  return jsonObject(field, metadata, { maxBytes: MAX_METADATA_BYTES, limitName: 'MAX_METADATA_BYTES' });
}

function assertSource(params: ChunkSource): void {
  if (params.resourceId !== undefined) assertUuid('resourceId', params.resourceId);
  if (params.conversationId !== undefined) assertUuid('conversationId', params.conversationId);
  if (params.toolId !== undefined) assertInt('toolId', params.toolId, 1);
}

function assertEmbedding(field: string, embedding: unknown): asserts embedding is number[] {
  if (!Array.isArray(embedding)) throw new ValidationError(field, `must be an array of ${EMBEDDING_DIMENSIONS} numbers`);
  if (embedding.length !== EMBEDDING_DIMENSIONS) {
    throw new ValidationError(field, `must have ${EMBEDDING_DIMENSIONS} dimensions, got ${embedding.length}`);
  }
  // One plain loop: this runs for every chunk of an ingestion (1,536 values each).
  let squaredNorm = 0;
  let nonZero = false;
  for (let i = 0; i < embedding.length; i += 1) {
    const x: unknown = embedding[i];
    if (typeof x !== 'number' || !Number.isFinite(x)) throw new ValidationError(field, `[${i}] must be a finite number, got ${String(x)}`);
    // pgvector stores float4: a larger value would become Infinity, which pgvector refuses.
    const f = Math.fround(x);
    if (!Number.isFinite(f)) throw new ValidationError(field, `[${i}] must fit a 4-byte float (|x| < 3.4e38), got ${x}`);
    // pgvector squares in float4: a square below ~1.4e-45 is 0 there.
    if (Math.fround(f * f) !== 0) nonZero = true;
    squaredNorm += f * f;
  }
  if (!nonZero) {
    throw new ValidationError(field, 'must not have zero norm: every value is 0, or so small that its square is 0 as a 4-byte float (|x| < about 2.6e-23), and cosine distance to it is NaN');
  }
  if (squaredNorm > MAX_SQUARED_NORM) {
    throw new ValidationError(field, `has a squared norm of ${squaredNorm}, past what pgvector's 4-byte floats hold (${MAX_SQUARED_NORM}), and cosine distance to it is NaN: normalize it`);
  }
}

/**
 * hybridSearch's `textCandidates`: undefined → null (every match ranked); else an integer from the
 * leg's size (fewer candidates could not fill the leg) to MAX_TEXT_CANDIDATES.
 */
function textCandidateBound(value: unknown, legSize: number): number | null {
  if (value === undefined) return null;
  assertInt('textCandidates', value, legSize);
  if (value > MAX_TEXT_CANDIDATES) throw new ValidationError('textCandidates', `must be at most ${MAX_TEXT_CANDIDATES}, got ${value}`);
  return value;
}

function topK(k: unknown): number {
  if (k === undefined) return 10;
  assertInt('k', k, 1);
  if (k > MAX_SEARCH_K) throw new ValidationError('k', `must be at most ${MAX_SEARCH_K}, got ${k}`);
  return k;
}

/** A foreign-key failure of addChunks means the source does not exist in this tenant. */
function mapSourceError(error: unknown, params: ChunkSource): unknown {
  const constraint = foreignKeyViolated(error);
  if (constraint === undefined) return error;
  if (constraint.includes('resource') && params.resourceId !== undefined) return new NotFoundError('resource', params.resourceId);
  if (constraint.includes('conversation') && params.conversationId !== undefined) return new NotFoundError('conversation', params.conversationId);
  if (constraint.includes('tool') && params.toolId !== undefined) return new NotFoundError('tool', params.toolId);
  return error;
}
