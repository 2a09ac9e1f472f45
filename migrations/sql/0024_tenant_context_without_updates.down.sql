-- Back to 0010's per-connection row, rewritten by every tenant transaction (0023's
-- app.current_tenant_id() on PostgreSQL; on Citus 0020's functions, which 0024 left alone, and
-- 0010's verification under app_citus). Counters carry over from the sequences. Function bodies
-- exactly as 0010 and 0023 wrote them (the round-trip test compares definitions as text).
alter table app.tenant_contexts
  add column counter bigint not null default 0 check (counter >= 0),
  add column tenant_id uuid,
  add column xact_start timestamptz;
update app.tenant_contexts c set counter = pg_sequence_last_value(c.counter_seq);
alter table app.tenant_contexts drop column counter_seq;
comment on table app.tenant_contexts is
  'One row per connection that registered a tenant-context key: the key (as HMAC pads), the last counter, and the tenant of its current transaction. Owner-only.';

create or replace function app.open_tenant_context(key_inner bytea, key_outer bytea) returns void
  language plpgsql
  volatile
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  started timestamptz := coalesce(
    (select a.backend_start from pg_stat_activity a where a.pid = pg_backend_pid()), pg_postmaster_start_time());
begin
  if exists (select from app.tenant_contexts c where c.pid = pg_backend_pid() and c.backend_start = started) then
    raise exception 'this connection registered its tenant-context key already; a key cannot be replaced'
      using errcode = '42501';
  end if;
  delete from app.tenant_contexts c
  where c.pid = pg_backend_pid() or not exists (select from pg_stat_activity a where a.pid = c.pid);
  insert into app.tenant_contexts (pid, backend_start, key_inner, key_outer)
  values (pg_backend_pid(), started, open_tenant_context.key_inner, open_tenant_context.key_outer);
end
$$;

do $migration$
begin
  if exists (select from pg_extension where extname = 'citus') then
    create or replace function app_citus.enter_tenant_context(tenant uuid, counter bigint, signature text) returns void
  language plpgsql
  volatile
  security definer
  set search_path = pg_catalog, pg_temp
as $function$
declare
  ctx app.tenant_contexts;
begin
  reset all;
  perform pg_advisory_unlock_all();
  select * into ctx from app.tenant_contexts c where c.pid = pg_backend_pid();
  if not found then
    raise exception 'no tenant-context key is registered for this connection' using errcode = '42501';
  end if;
  if enter_tenant_context.counter <= ctx.counter then
    raise exception 'tenant context refused: counter % was used already on this connection', enter_tenant_context.counter
      using errcode = '42501';
  end if;
  if encode(sha256(ctx.key_outer || sha256(ctx.key_inner
       || convert_to(enter_tenant_context.tenant::text || ':' || enter_tenant_context.counter::text, 'UTF8'))), 'hex')
     is distinct from enter_tenant_context.signature then
    raise exception 'tenant context refused: bad signature' using errcode = '42501';
  end if;
  if not exists (select from public.tenants t where t.id = enter_tenant_context.tenant) then
    raise exception 'tenant % does not exist', enter_tenant_context.tenant using errcode = 'P0002';
  end if;
  update app.tenant_contexts c
  set counter = enter_tenant_context.counter, tenant_id = enter_tenant_context.tenant, xact_start = transaction_timestamp()
  where c.pid = pg_backend_pid();
end
$function$;
  else
    create or replace function app.enter_tenant_context(tenant uuid, counter bigint, signature text) returns void
  language plpgsql
  volatile
  security definer
  set search_path = pg_catalog, pg_temp
as $function$
declare
  ctx app.tenant_contexts;
begin
  reset all;
  perform pg_advisory_unlock_all();
  select * into ctx from app.tenant_contexts c where c.pid = pg_backend_pid();
  if not found then
    raise exception 'no tenant-context key is registered for this connection' using errcode = '42501';
  end if;
  if enter_tenant_context.counter <= ctx.counter then
    raise exception 'tenant context refused: counter % was used already on this connection', enter_tenant_context.counter
      using errcode = '42501';
  end if;
  if encode(sha256(ctx.key_outer || sha256(ctx.key_inner
       || convert_to(enter_tenant_context.tenant::text || ':' || enter_tenant_context.counter::text, 'UTF8'))), 'hex')
     is distinct from enter_tenant_context.signature then
    raise exception 'tenant context refused: bad signature' using errcode = '42501';
  end if;
  if not exists (select from public.tenants t where t.id = enter_tenant_context.tenant) then
    raise exception 'tenant % does not exist', enter_tenant_context.tenant using errcode = 'P0002';
  end if;
  update app.tenant_contexts c
  set counter = enter_tenant_context.counter, tenant_id = enter_tenant_context.tenant, xact_start = transaction_timestamp()
  where c.pid = pg_backend_pid();
end
$function$;
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
    drop table app.tenant_token_keys;
  end if;
end
$migration$;

drop function app.check_tenant_request(uuid, bigint, text);
drop function app.tenant_token_mac(bytea, text);
do $migration$
begin
  if exists (select from pg_extension where extname = 'citus') then
    -- The sequences are the coordinator's own (0024); the schema is on every node.
    perform set_config('citus.enable_ddl_propagation', 'off', true);
    execute (select coalesce(string_agg(format('drop sequence %I.%I', n.nspname, c.relname), '; '), 'select')
             from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'app_tenant_counters');
    perform set_config('citus.enable_ddl_propagation', 'on', true);
  end if;
end
$migration$;
drop schema app_tenant_counters cascade;
