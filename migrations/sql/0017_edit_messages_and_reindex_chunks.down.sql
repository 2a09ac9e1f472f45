-- Why: reverses 0017_edit_messages_and_reindex_chunks (app.search_text as 0007 left it).

drop function app.search_text(tsquery, integer, uuid, uuid, integer, jsonb);
create function app.search_text(
  query tsquery, max_rows integer, resource uuid default null, conversation uuid default null, tool integer default null
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
     order by ts_rank(v.content_tsv, $2) desc, v.id
     limit $3'
    using app.current_tenant_id(), query, max_rows, resource, conversation, tool;
end
$$;
comment on function app.search_text(tsquery, integer, uuid, uuid, integer) is
  'hybridSearch full-text leg: ids and ranks of the current tenant''s chunks matching query (GIN index), best first.';
revoke all on function app.search_text(tsquery, integer, uuid, uuid, integer) from public;
grant execute on function app.search_text(tsquery, integer, uuid, uuid, integer) to app_cms;

drop index messages_roots_idx;
-- Serves: getThread's walk and children of a message; the cascade from a parent.
create index messages_parent_idx on messages (tenant_id, parent_id) where parent_id is not null;
drop index messages_children_idx;

drop index vectors_metadata_idx;
alter table vectors drop column metadata;
