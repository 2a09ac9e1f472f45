-- Why: reverses 0007_plan_full_text_leg_per_call (app.search_text as 0005 created it).

create or replace function app.search_text(
  query tsquery, max_rows integer, resource uuid default null, conversation uuid default null, tool integer default null
)
  returns table (id uuid, rank bigint)
  language sql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  select v.id, row_number() over (order by ts_rank_cd(v.content_tsv, query) desc, v.id)
  from public.vectors v
  where v.tenant_id = app.current_tenant_id()
    and v.content_tsv @@ query
    and (resource is null or v.resource_id = resource)
    and (conversation is null or v.conversation_id = conversation)
    and (tool is null or v.tool_id = tool)
  order by ts_rank_cd(v.content_tsv, query) desc, v.id
  limit max_rows
$$;
