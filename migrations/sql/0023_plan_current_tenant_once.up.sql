-- Why: every row-level security policy reads the tenant with `(select app.current_tenant_id())`,
-- one InitPlan per table a statement touches (recordUsage's charge: six). The function was
-- `language sql` and, being SECURITY DEFINER with a pinned search_path, is never inlined; and
-- PostgreSQL 15 keeps a non-inlined SQL function's plan only for one evaluation of the calling
-- expression, so every call parsed, analyzed and planned its query again. A plpgsql function keeps
-- its plan for the session. Measured (200 InitPlans in one statement, EXPLAIN ANALYZE execution
-- time, on the project's 2-core machine while other work ran): 18–23 ms as SQL, 1.5–1.6 ms as
-- plpgsql, i.e. about 90 µs against 8 µs per table per statement. What it returns is unchanged.
-- Citus (0020) has a plpgsql version of its own (it verifies the signed token): left alone.
do $migration$
begin
  if exists (select from pg_extension where extname = 'citus') then
    return;
  end if;
  create or replace function app.current_tenant_id() returns uuid
    language plpgsql
    stable
    security definer
    parallel restricted
    set search_path = pg_catalog, pg_temp
  as $function$
  begin
    return (select c.tenant_id from app.tenant_contexts c
            where c.pid = pg_backend_pid() and c.xact_start = transaction_timestamp());
  end
  $function$;
end
$migration$;
