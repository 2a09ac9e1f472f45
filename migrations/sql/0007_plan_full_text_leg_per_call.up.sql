-- Why: hybridSearch's full-text leg was its slow half. A SQL function's statement is planned with
-- its arguments unknown (a generic plan), so app.search_text filtered by the tenant row by row after
-- the GIN scan and could not tell a big tenant from a small one; and ts_rank_cd (cover density,
-- ~3.6 µs per match) ranked every match. Measured on the bench database (100,000 chunks of one
-- tenant, a query with 2,623 matches; 20 calls in one statement): 14.1 ms per call before, 5.9 ms
-- after. Now:
--   - plpgsql with EXECUTE ... USING: planned per call with this call's tenant, query and filters
--     (the tenant is the transaction's, app.current_tenant_id(); NULL without one: no rows);
--   - ts_rank (term frequency, ~1 µs per match) instead of ts_rank_cd. Both rank a chunk that
--     holds more of the query's words, more often, higher; ts_rank ignores how close together
--     they are. The leg's ranks only feed reciprocal rank fusion with the vector leg.
-- Same signature, owner, SECURITY DEFINER, search_path and grants as 0005 (create or replace).

create or replace function app.search_text(
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
