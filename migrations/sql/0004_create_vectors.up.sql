-- Why: retrieval. Chunks of resources, conversations and tool output with their 1536-d embeddings,
-- an HNSW index for cosine similarity search, and a stored tsvector with a GIN index for the
-- full-text leg of hybrid search. Tenant-scoped like the tables of 0003.

create table vectors (
  tenant_id       uuid not null references tenants (id) on delete cascade,
  id              uuid not null default gen_random_uuid(),
  conversation_id uuid,
  resource_id     uuid,
  tool_id         integer references tools (id) on delete cascade,
  position        integer not null default 0 check (position >= 0),
  content         text not null,
  embedding       vector(1536) not null,
  content_tsv     tsvector not null generated always as (to_tsvector('english', content)) stored,
  created_at      timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, conversation_id) references conversations (tenant_id, id) on delete cascade,
  foreign key (tenant_id, resource_id) references resources (tenant_id, id) on delete cascade
);
-- Keep embeddings inline in the heap. A vector(1536) is 6,152 bytes, over the 2 kB TOAST
-- threshold, and the vector type's default storage (EXTERNAL) would move it to the TOAST table.
-- The planner does not cost TOAST reads: it would take a sequential scan + sort over a tenant's
-- rows for cheap and prefer it to the HNSW index (pgvector/pgvector#186), and every read of an
-- embedding would go through the TOAST table. PLAIN keeps it in the row (measured by the bench at
-- 10,000 vectors: similaritySearch p50 47.9 → 2.4 ms); content and content_tsv are still toasted.
alter table vectors alter column embedding set storage plain;

comment on table vectors is 'Embedded chunks (the seed''s `order` is `position`). Rows never change: no updated_at.';
comment on column vectors.content_tsv is 'to_tsvector(''english'', content), kept by PostgreSQL; the full-text leg of hybrid search.';

-- Serves: similaritySearch / hybridSearch vector leg (`order by embedding <=> $1`).
-- m = 16 is pgvector's default. ef_construction = 256, not the default 64: with 64 the graph built
-- over clustered embeddings leaves a few percent of the rows unreachable, and no hnsw.ef_search
-- finds them (bench, 125,000 clustered 1536-d vectors: recall@10 0.91-0.95 at every ef_search from
-- 40 to 800; with 256, 1.000 at ef_search 40). The build takes about 1.5x as long.
create index vectors_embedding_hnsw_idx on vectors
  using hnsw (embedding vector_cosine_ops) with (m = 16, ef_construction = 256);
-- Serves: hybridSearch full-text leg (`content_tsv @@ websearch_to_tsquery(...)`).
create index vectors_content_tsv_idx on vectors using gin (content_tsv);
-- Serves: the conversationId filter and the cascade from conversations.
create index vectors_tenant_conversation_idx on vectors (tenant_id, conversation_id)
  where conversation_id is not null;
-- Serves: a resource's chunks in order (resourceId filter), and the cascade from resources.
create index vectors_tenant_resource_position_idx on vectors (tenant_id, resource_id, position)
  where resource_id is not null;
-- Serves: the toolId filter within a tenant.
create index vectors_tenant_tool_idx on vectors (tenant_id, tool_id) where tool_id is not null;
