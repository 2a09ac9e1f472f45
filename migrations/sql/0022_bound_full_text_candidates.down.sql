-- Why: reverses 0022_bound_full_text_candidates (app.search_text as 0017 left it: every match ranked).

drop function app.search_text(tsquery, integer, uuid, uuid, integer, jsonb, integer);
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
