-- Back to 0010's SQL function (Citus: 0020's own version was left alone by the up migration).
do $migration$
begin
  if exists (select from pg_extension where extname = 'citus') then
    return;
  end if;
  create or replace function app.current_tenant_id() returns uuid
    language sql
    stable
    security definer
    parallel restricted
    set search_path = pg_catalog, pg_temp
  -- The body exactly as 0010 wrote it (the round-trip test compares definitions as text).
  as $function$
  select c.tenant_id from app.tenant_contexts c
  where c.pid = pg_backend_pid() and c.xact_start = transaction_timestamp()
$function$;
end
$migration$;
