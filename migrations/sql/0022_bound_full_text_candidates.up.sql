-- Why: hybridSearch's full-text leg ranks every chunk of the tenant matching the query (a median
-- 886 per query on the bench's 100,000 chunks), and fetching each match's row from the heap and
-- ranking it costs more than the whole vector leg: issue 18 (hybridSearch ≤ 2× vector-only).
-- No core index returns matches in ts_rank order, so any cheaper text leg ranks fewer matches and
-- may change the fused result. app.search_text gets an optional bound, max_candidates: rank only
-- the first max_candidates matches the GIN bitmap gives (the table's physical order, not a rank),
-- then the best max_rows of those. NULL (the default, and hybridSearch's) ranks every match,
-- exactly as 0017 did. The bench measures the recall of the fused top-k at a bound against the
-- exact fusion (bench/README.md, README "Search").
--
-- Measured, and not taken (bench database, 100,000 chunks, 100 queries):
--   - a RUM index (Debian's postgresql-15-rum; `order by content_tsv <=> query limit 40`): 2.5 ms
--     p50 against 5.3 for the GIN path, but RUM ranks by its own cover density, and the fused
--     top-10 then agrees with today's on 53% of rows (re-ranking RUM's best 300 by ts_rank: 97%,
--     for 300 heap fetches more); the server only, an extension to install, and no pending list
--     for inserts;
--   - the matches nearest the query embedding as the candidates: 24–64% for 40–300 candidates.
--
-- Same owner, SECURITY DEFINER, search_path, grants and comment as 0017; one argument more (a
-- default), so calls with the old arguments resolve to it.

drop function app.search_text(tsquery, integer, uuid, uuid, integer, jsonb);
create function app.search_text(
  query tsquery, max_rows integer, resource uuid default null, conversation uuid default null, tool integer default null,
  metadata jsonb default null, max_candidates integer default null
)
  returns table (id uuid, rank bigint)
  language plpgsql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
as $$
begin
  if max_candidates is null then
    -- Every match ranked: 0017's statement.
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
  else
    -- The first max_candidates matches, then ranked. A materialized CTE is planned for all its
    -- rows (the GIN bitmap, as above) and read only as far as the limit asks: a plain subquery
    -- with a LIMIT would be planned for its first rows, which can be a sequential scan.
    return query execute
      'with matches as materialized (
         select v.id, v.content_tsv
         from public.vectors v
         where v.tenant_id = $1
           and v.content_tsv @@ $2
           and ($4 is null or v.resource_id = $4)
           and ($5 is null or v.conversation_id = $5)
           and ($6 is null or v.tool_id = $6)
           and ($7 is null or v.metadata @> $7)
       ),
       candidates as (select m.id, m.content_tsv from matches m limit $8)
       select c.id, row_number() over (order by ts_rank(c.content_tsv, $2) desc, c.id)
       from candidates c
       order by ts_rank(c.content_tsv, $2) desc, c.id
       limit $3'
      using app.current_tenant_id(), query, max_rows, resource, conversation, tool, metadata, max_candidates;
  end if;
end
$$;
comment on function app.search_text(tsquery, integer, uuid, uuid, integer, jsonb, integer) is
  'hybridSearch full-text leg: ids and ranks of the current tenant''s chunks matching query (GIN index), best first; with max_candidates, among the first that many matches only.';
revoke all on function app.search_text(tsquery, integer, uuid, uuid, integer, jsonb, integer) from public;
grant execute on function app.search_text(tsquery, integer, uuid, uuid, integer, jsonb, integer) to app_cms;
