-- Why: reverses 0020_distribute_on_citus: the tables become local tables of the coordinator again
-- (their rows are moved back), and what 0020 changed is replayed from app.citus_saved_definitions.
-- Does nothing where 0020 did nothing. The service roles keep LOGIN and their Citus setting: roles
-- belong to the whole cluster, and other databases on it may still be distributed.
--
-- Soft references (the foreign keys Citus could not have) may point at rows that are gone: they
-- are set to NULL first, as the foreign key's ON DELETE would have, then the key is added back.
-- Citus's undistribute_table refuses tables with identity columns, and refuses DROP IDENTITY on a
-- distributed table: the identity is dropped on the coordinator's table only (DDL propagation off;
-- the shards are dropped by the move anyway) and added back with its sequence continuing after the
-- largest id.
do $migration$
declare
  saved record;
  fk record;
  t record;
  next_id bigint;
begin
  if to_regclass('app.citus_saved_definitions') is null then
    return;
  end if;
  set local citus.multi_shard_modify_mode to 'sequential';

  for saved in select definition from app.citus_saved_definitions where kind in ('function', 'grant') order by position loop
    execute saved.definition;
  end loop;
  drop function app.enter_tenant_context(uuid, bigint, text);
  alter function app_citus.enter_tenant_context(uuid, bigint, text) set schema app;
  grant execute on function app.enter_tenant_context(uuid, bigint, text) to app_server, app_gateway, app_cms;
  drop schema app_citus;
  perform undistribute_table('app.tenant_token_keys');
  drop table app.tenant_token_keys;

  for fk in
    select c.conrelid::regclass as rel, c.conname as name from pg_constraint c
    where c.contype = 'f' and c.connamespace = 'public'::regnamespace
      -- not the shards the coordinator holds (a reference table's copy): their keys go with the table's
      and c.conrelid in (select logicalrelid from pg_dist_partition)
  loop
    execute format('alter table %s drop constraint %I', fk.rel, fk.name);
  end loop;

  create temporary table citus_identities on commit drop as
    select a.attrelid::regclass::text as rel, a.attname as col, a.attidentity as kind
    from pg_attribute a join pg_dist_partition p on p.logicalrelid = a.attrelid
    where a.attidentity <> '';
  set local citus.enable_ddl_propagation to off;
  for t in select * from citus_identities loop
    execute format('alter table %s alter column %I drop identity', t.rel, t.col);
  end loop;
  set local citus.enable_ddl_propagation to on;
  for t in
    select p.logicalrelid::regclass as rel from pg_dist_partition p
    join pg_class c on c.oid = p.logicalrelid and c.relnamespace = 'public'::regnamespace
    order by p.partmethod, c.relname -- distributed ('h') before reference ('n')
  loop
    perform undistribute_table(t.rel);
  end loop;
  for t in select * from citus_identities loop
    execute format('select coalesce(max(%I), 0) + 1 from %s', t.col, t.rel) into next_id;
    execute format('alter table %s alter column %I add generated %s as identity (start with %s)',
      t.rel, t.col, case t.kind when 'a' then 'always' else 'by default' end, next_id);
  end loop;

  -- The soft references: what ON DELETE SET NULL (col) would have done to rows whose target is gone.
  update conversations c set summary_message_id = null
  where summary_message_id is not null
    and not exists (select from messages m where m.tenant_id = c.tenant_id and m.id = c.summary_message_id);
  update resources r set message_id = null
  where message_id is not null
    and not exists (select from messages m where m.tenant_id = r.tenant_id and m.id = r.message_id);
  update usage u set message_id = null
  where message_id is not null
    and not exists (select from messages m where m.tenant_id = u.tenant_id and m.id = u.message_id);
  update agents a set user_id = null
  where user_id is not null
    and not exists (select from users u where u.tenant_id = a.tenant_id and u.id = a.user_id);

  for saved in select definition from app.citus_saved_definitions where kind in ('foreign key', 'policy') order by position loop
    execute saved.definition;
  end loop;
  drop table app.citus_saved_definitions;
end
$migration$;
