-- Why: the cms edits conversations as trees and re-indexes documents (issue 15, part B).
--   - Chunks get their own metadata (a JSON object, as in LangChain's and LlamaIndex's PGVector
--     stores: page, section, source…), and the searches filter on it by containment (`@>`).
--     The full-text leg of hybridSearch, app.search_text, takes that filter too: it is replaced
--     by the same function with one more argument (metadata jsonb default null), so calls with
--     the old arguments still resolve to it.
--   - listBranches pages through the children of a message, or the roots of a conversation (an
--     edit of a first message is another root), keyset on (created_at, id): two indexes for it.
--     messages_children_idx leads with (tenant_id, parent_id) and so replaces messages_parent_idx
--     (deleteMessageBranch's walk down the tree and the cascade from a parent use that prefix).

alter table vectors add column metadata jsonb not null default '{}';
alter table vectors add constraint vectors_metadata_object check (jsonb_typeof(metadata) = 'object');
comment on column vectors.metadata is
  'The chunk''s own metadata (a JSON object: page, section, source…); the searches'' `metadata` filter is containment (@>).';

-- Serves: similaritySearch / hybridSearch with a `metadata` filter (`metadata @> $1`) when the
-- filter is selective: the exact search over the matching rows (vectors.ts, exactNearest) and the
-- full-text leg (app.search_text).
create index vectors_metadata_idx on vectors using gin (metadata jsonb_path_ops);

-- Serves: listBranches (the children of a message, oldest first, keyset on (created_at, id)),
-- deleteMessageBranch's walk down the tree, and the cascade from a parent.
create index messages_children_idx on messages (tenant_id, parent_id, created_at, id)
  where parent_id is not null;
drop index messages_parent_idx;
-- Serves: listBranches of a conversation's roots (parent_id is null), keyset on (created_at, id).
create index messages_roots_idx on messages (tenant_id, conversation_id, created_at, id)
  where parent_id is null;

-- The full-text leg with the metadata filter (otherwise as 0007 made it).
drop function app.search_text(tsquery, integer, uuid, uuid, integer);
create function app.search_text(
  query tsquery, max_rows integer, resource uuid default null, conversation uuid default null, tool integer default null,
  metadata jsonb default null
)
  returns table (id uuid, rank bigint)
  language plpgsql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  return query execute
    'select v.id, row_number() over (order by ts_rank(v.content_tsv, $2) desc, v.id)
     from public.vectors v
     where v.tenant_id = $1
       and v.content_tsv @@ $2
       and ($4 is null or v.resource_id = $4)
       and ($5 is null or v.conversation_id = $5)
       and ($6 is null or v.tool_id = $6)
       and ($7 is null or v.metadata @> $7)
     order by ts_rank(v.content_tsv, $2) desc, v.id
     limit $3'
    using app.current_tenant_id(), query, max_rows, resource, conversation, tool, metadata;
end
$$;
comment on function app.search_text(tsquery, integer, uuid, uuid, integer, jsonb) is
  'hybridSearch full-text leg: ids and ranks of the current tenant''s chunks matching query (GIN index), best first.';
revoke all on function app.search_text(tsquery, integer, uuid, uuid, integer, jsonb) from public;
grant execute on function app.search_text(tsquery, integer, uuid, uuid, integer, jsonb) to app_cms;
