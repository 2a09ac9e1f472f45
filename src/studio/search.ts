/**
 * The search playground's data, inside a tenant transaction: the tenant's chunks to pick from,
 * and for a picked chunk the package's own similaritySearch (its nearest neighbours) and
 * hybridSearch (a text query fused with the chunk's embedding as the vector leg: the studio has
 * no embedding model, so a chunk stands for the question's embedding).
 */
import { sql, type Kysely } from 'kysely';
import { fromVectorSql } from '../db/vector.ts';
import type { TenantTx } from '../db/tenant-tx.ts';
import { hybridSearch, similaritySearch, type HybridChunk, type SimilarChunk } from '../queries/vectors.ts';

/** Chunks offered in the picker, newest first. */
export const MAX_CHUNKS_LISTED = 50;
/** Results of each search. */
export const SEARCH_K = 10;

/** A chunk in the picker. */
export interface ChunkSummary {
  id: string;
  excerpt: string;
  position: number;
  resourceId: string | null;
  conversationId: string | null;
}

/** What the playground shows for a picked chunk. */
export interface SearchResults {
  chunk: ChunkSummary;
  neighbours: (SimilarChunk & { distance: number })[];
  /** Null when no text query was given. */
  hybrid: HybridChunk[] | null;
}

/** The newest chunks of the tenant, or those whose text matches `contains` (case-insensitive). */
export async function listChunks(db: Kysely<any>, tenantId: string, contains = ''): Promise<ChunkSummary[]> {
  const pattern = `%${contains.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
  const { rows } = await sql<{ id: string; excerpt: string; position: number; resource_id: string | null; conversation_id: string | null }>`
    select v.id, left(v.content, 160) as excerpt, v.position, v.resource_id, v.conversation_id
    from vectors v
    where v.tenant_id = ${tenantId}::uuid ${contains === '' ? sql`` : sql`and v.content ilike ${pattern}`}
    order by v.created_at desc, v.id desc
    limit ${MAX_CHUNKS_LISTED}`.execute(db.withoutPlugins());
  return rows.map((r) => ({ id: r.id, excerpt: r.excerpt, position: r.position, resourceId: r.resource_id, conversationId: r.conversation_id }));
}

/** Neighbours of chunk `chunkId` and, with a `query`, the hybrid result; undefined when the tenant has no such chunk. */
export async function searchFromChunk(tx: TenantTx, tenantId: string, chunkId: string, query: string): Promise<SearchResults | undefined> {
  const { rows } = await sql<{ id: string; excerpt: string; position: number; resource_id: string | null; conversation_id: string | null; embedding: string }>`
    select v.id, left(v.content, 160) as excerpt, v.position, v.resource_id, v.conversation_id, v.embedding::text as embedding
    from vectors v where v.tenant_id = ${tenantId}::uuid and v.id = ${chunkId}::uuid`.execute(tx.withoutPlugins());
  const row = rows[0];
  if (row === undefined) return undefined;
  const embedding = fromVectorSql(row.embedding);
  const neighbours = await similaritySearch(tx, { embedding, k: SEARCH_K });
  const hybrid = query.trim() === '' ? null : await hybridSearch(tx, { query, embedding, k: SEARCH_K });
  return {
    chunk: { id: row.id, excerpt: row.excerpt, position: row.position, resourceId: row.resource_id, conversationId: row.conversation_id },
    neighbours: neighbours.map((n) => ({ ...n, distance: 1 - n.similarity })),
    hybrid,
  };
}
