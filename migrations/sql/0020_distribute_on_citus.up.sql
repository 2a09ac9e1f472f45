-- Why: to scale out, the schema is distributed by tenant_id on Citus (README, "Citus: scaling
-- out"). When the citus extension is not in this database (plain PostgreSQL, PGlite) this
-- migration does nothing and every guarantee below stays as the earlier migrations made it.
--
-- With Citus:
--   * Reference tables (a copy on every node): every public table without a NOT NULL tenant_id —
--     the catalog, tenants, agents (global agents have no tenant) and agent_tools.
--   * Distributed tables, colocated with users (one shard group per tenant hash, so a tenant's
--     joins stay on one node): every public table with a NOT NULL tenant_id.
--   * schema_migrations stays a local table of the coordinator (the migrator's ledger).
--   * Foreign keys are dropped while the tables are converted and added back, except those Citus
--     cannot have, which become soft references (the query functions keep them; nothing else does):
--       - from a reference table to a distributed one (agents (tenant_id, user_id) -> users): a
--         reference table's row is on every node, the user on one;
--       - ON DELETE SET NULL (col) / SET DEFAULT on a key that includes the distribution column
--         (conversations' summary message, resources' and usage's message): "SET NULL or SET
--         DEFAULT is not supported in ON DELETE operation when distribution key is included in the
--         foreign key constraint".
--   * Policies: Citus refuses subqueries in the policies of distributed tables, and the idiom
--     `(select app.current_tenant_id())` is one (an InitPlan). They call app.current_tenant_id()
--     directly: the same result (a STABLE function), evaluated where the shard is.
--   * The tenant context travels with the statement. Policies run on the workers, in backends of
--     their own, where the coordinator's app.tenant_contexts row (0010) is not; Citus propagates
--     SET LOCAL (citus.propagate_set_commands = 'local') but not set_config(). So
--     app.enter_tenant_context, after verifying the signed request exactly as before, also does
--     SET LOCAL app.tenant_token = '<tenant>.<gpid>.<mac>', where gpid is citus_backend_gpid() (the
--     coordinator session's global id, which Citus gives the worker backends that serve it) and mac
--     an HMAC of both under a key in app.tenant_token_keys (a reference table no app role can read).
--     app.current_tenant_id() returns the token's tenant only if the mac verifies and the gpid is
--     the current session's: SQL inside the transaction can read its own token and set any string,
--     but cannot make a valid token for another tenant, nor use another session's token in its own
--     session. The workers' backends of the service roles do not report their statements
--     (track_activities off for those roles): pg_stat_activity there would show every SET LOCAL
--     sent to them, the tokens of other tenants' transactions of the same coordinator session
--     included. SET LOCAL ends with the transaction.
--   * Citus connects to the workers as the current role: the service roles can log in (with the
--     authentication the cluster's pg_hba.conf requires of them; README). Citus's executor locks
--     the reference tables a write references with lock_shard_resources(), which checks that the
--     role could modify them; the service roles may not (the catalog is read-only to them), so they
--     get citus.skip_advisory_lock_permission_checks (a lock, not a right to change a row).
--   * Citus sends the default of every column a distributed INSERT leaves out, so a role with
--     column INSERT grants also needs INSERT on the columns with defaults (only users'
--     created_at/updated_at for app_server today).
--   * Triggers on distributed tables need citus.enable_unsafe_triggers (updated_at, the message
--     depth, the remaining guard): each reads and writes only the row's own shard.
-- What this migration changes is saved in app.citus_saved_definitions; the down migration
-- converts the tables back to local ones and replays what was saved.

do $migration$
declare
  t record;
  fk record;
  p record;
  qual text;
  checked text;
  changed boolean;
  nil_tenant constant text := '( SELECT app.current_tenant_id() AS current_tenant_id)';
begin
  if not exists (select from pg_extension where extname = 'citus') then
    return;
  end if;
  -- One connection per node for the DDL below (parallel DDL after touching a reference table in
  -- the same transaction is refused), and the triggers allowed.
  set local citus.multi_shard_modify_mode to 'sequential';
  set local citus.enable_unsafe_triggers to on;

  create table app.citus_saved_definitions (
    position   integer generated always as identity primary key,
    kind       text not null,
    definition text not null
  );
  comment on table app.citus_saved_definitions is
    'What 0020_distribute_on_citus changed (foreign keys, policies, functions), replayed by its down migration.';
  revoke all on app.citus_saved_definitions from public;

  -- Foreign keys between public tables: saved and dropped, added back after the conversion.
  create temporary table citus_foreign_keys on commit drop as
    select c.conrelid::regclass as rel, c.confrelid::regclass as ref, c.conname as name,
           pg_get_constraintdef(c.oid) as def,
           c.confdeltype in ('n', 'd') and c.confdelsetcols is not null as sets_columns
    from pg_constraint c
    where c.contype = 'f' and c.connamespace = 'public'::regnamespace;
  for fk in select * from citus_foreign_keys loop
    insert into app.citus_saved_definitions (kind, definition)
      values ('foreign key', format('alter table %s add constraint %I %s', fk.rel, fk.name, fk.def));
    execute format('alter table %s drop constraint %I', fk.rel, fk.name);
  end loop;

  -- Policies: `(select app.current_tenant_id())` -> app.current_tenant_id().
  for p in select * from pg_policies where schemaname = 'public' loop
    qual := replace(p.qual, nil_tenant, 'app.current_tenant_id()');
    checked := replace(p.with_check, nil_tenant, 'app.current_tenant_id()');
    changed := qual is distinct from p.qual or checked is distinct from p.with_check;
    if not changed then
      continue;
    end if;
    insert into app.citus_saved_definitions (kind, definition)
      values ('policy', format('alter policy %I on %I.%I', p.policyname, p.schemaname, p.tablename)
        || coalesce(' using (' || p.qual || ')', '') || coalesce(' with check (' || p.with_check || ')', ''));
    execute format('alter policy %I on %I.%I', p.policyname, p.schemaname, p.tablename)
      || coalesce(' using (' || qual || ')', '') || coalesce(' with check (' || checked || ')', '');
  end loop;

  -- Reference tables, then users, then the other distributed tables colocated with it.
  for t in
    select c.oid::regclass as rel from pg_class c
    where c.relnamespace = 'public'::regnamespace and c.relkind = 'r' and c.relname <> 'schema_migrations'
      and not exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'tenant_id' and a.attnotnull)
    order by c.relname
  loop
    perform create_reference_table(t.rel);
  end loop;
  perform create_distributed_table('public.users', 'tenant_id');
  for t in
    select c.oid::regclass as rel from pg_class c
    join pg_attribute a on a.attrelid = c.oid and a.attname = 'tenant_id' and a.attnotnull
    where c.relnamespace = 'public'::regnamespace and c.relkind = 'r' and c.relname not in ('users', 'schema_migrations')
    order by c.relname
  loop
    perform create_distributed_table(t.rel, 'tenant_id', colocate_with => 'public.users');
  end loop;

  for fk in select * from citus_foreign_keys loop
    if (select partmethod from pg_dist_partition where logicalrelid = fk.rel) = 'n'
       and (select partmethod from pg_dist_partition where logicalrelid = fk.ref) = 'h' then
      continue; -- reference -> distributed: a soft reference
    end if;
    if fk.sets_columns and (select partmethod from pg_dist_partition where logicalrelid = fk.rel) = 'h' then
      continue; -- ON DELETE SET NULL (col) with the distribution column: a soft reference
    end if;
    execute format('alter table %s add constraint %I %s', fk.rel, fk.name, fk.def);
  end loop;

  -- Citus sends every column's default with a distributed INSERT.
  for t in
    select c.oid::regclass as rel, r.rolname as role, string_agg(quote_ident(a.attname), ', ') as columns
    from pg_class c
    cross join (select rolname, oid from pg_roles where rolname in ('app_server', 'app_gateway', 'app_cms')) r
    join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
      and (a.atthasdef or a.attidentity <> '') and a.attgenerated = ''
    where c.relnamespace = 'public'::regnamespace and c.relkind = 'r'
      and not has_table_privilege(r.oid, c.oid, 'INSERT')
      and not has_column_privilege(r.oid, c.oid, a.attnum, 'INSERT')
      and exists (select from pg_attribute b where b.attrelid = c.oid and b.attnum > 0 and not b.attisdropped
                  and has_column_privilege(r.oid, c.oid, b.attnum, 'INSERT'))
    group by 1, 2
  loop
    insert into app.citus_saved_definitions (kind, definition)
      values ('grant', format('revoke insert (%s) on %s from %I', t.columns, t.rel, t.role));
    execute format('grant insert (%s) on %s to %I', t.columns, t.rel, t.role);
  end loop;
end
$migration$;

-- The tenant token (see the top): its key, the functions that issue and verify it, the roles.
do $tenant_token$
declare
  role_name text;
begin
  if not exists (select from pg_extension where extname = 'citus') then
    return;
  end if;
  insert into app.citus_saved_definitions (kind, definition)
    select 'function', pg_get_functiondef(f)
    from unnest(array['app.current_tenant_id()'::regprocedure, 'app.resolve_api_key(text)'::regprocedure]) f;

  create table app.tenant_token_keys (
    id  integer primary key default 1 check (id = 1),
    key bytea not null check (length(key) = 32)
  );
  comment on table app.tenant_token_keys is
    'The key of the tenant tokens (0020): a reference table, so that every node can verify them. Owner-only.';
  revoke all on app.tenant_token_keys from public;
  perform create_reference_table('app.tenant_token_keys');
  insert into app.tenant_token_keys (key)
    values (sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || clock_timestamp()::text, 'UTF8')));

  foreach role_name in array array['app_user', 'app_server', 'app_gateway', 'app_cms'] loop
    if not (select rolcanlogin from pg_roles where rolname = role_name) then
      execute format('alter role %I login', role_name);
    end if;
    if not exists (select from pg_db_role_setting s join pg_roles r on r.oid = s.setrole
                   where r.rolname = role_name and s.setdatabase = 0
                     and 'citus.skip_advisory_lock_permission_checks=on' = any (s.setconfig)) then
      execute format('alter role %I set citus.skip_advisory_lock_permission_checks = on', role_name);
    end if;
    if not exists (select from pg_db_role_setting s join pg_roles r on r.oid = s.setrole
                   where r.rolname = role_name and s.setdatabase = 0
                     and 'track_activities=off' = any (s.setconfig)) then
      execute format('alter role %I set track_activities = off', role_name);
    end if;
  end loop;

  -- Serves: every policy and the SECURITY DEFINER functions, on every node. The tenant of a valid
  -- token of this session (see the top), or NULL. On a node that holds the key table's placement
  -- it reads the placement itself: a query of the reference table from inside a shard's query is
  -- refused ("cannot execute a distributed query from a query on a shard").
  execute $def$
create or replace function app.current_tenant_id() returns uuid
  language plpgsql
  stable
  security definer
  parallel restricted
  set search_path = pg_catalog, pg_temp
as $body$
declare
  token text := current_setting('app.tenant_token', true);
  parts text[];
  keys_table text;
  token_key bytea;
begin
  if token is null or token = '' or to_regclass('app.tenant_token_keys') is null then
    return null;
  end if;
  parts := string_to_array(token, '.');
  if cardinality(parts) <> 3 or parts[2] is distinct from citus_backend_gpid()::text then
    return null;
  end if;
  select format('app.%I', 'tenant_token_keys_' || s.shardid) into keys_table
  from pg_dist_shard s where s.logicalrelid = 'app.tenant_token_keys'::regclass;
  if keys_table is null or to_regclass(keys_table) is null then
    keys_table := 'app.tenant_token_keys';
  end if;
  execute format('select key from %s', keys_table) into token_key;
  if encode(sha256(token_key || sha256(token_key || convert_to(parts[1] || ':' || parts[2], 'UTF8'))), 'hex') = parts[3] then
    return parts[1]::uuid;
  end if;
  return null;
end
$body$
  $def$;

  -- Serves: authenticateApiKey for keys that name no tenant: a search of every shard. Citus plans
  -- a multi-shard query with parameters in an SQL function only in PL/pgSQL ("could not create
  -- distributed plan … use of parameters in SQL functions").
  execute $def$
create or replace function app.resolve_api_key(key_hash text)
  returns table (tenant_id uuid, user_id uuid, role_id integer)
  language plpgsql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
as $body$
begin
  return query
    select u.tenant_id, u.id, u.role_id
    from public.users u
    where u.api_key_hash = resolve_api_key.key_hash
      and u.status = 'active';
end
$body$
  $def$;

  -- Serves: the first statement of every withTenant transaction: 0010's verification, unchanged,
  -- then the token for the workers. 0010's function moves to the owner-only schema app_citus (not
  -- renamed: its body names its parameters by the function's name) and the new
  -- app.enter_tenant_context calls it.
  create schema app_citus;
  comment on schema app_citus is 'Owner-only: 0010''s tenant-context verification, called by app.enter_tenant_context on Citus (0020).';
  revoke all on schema app_citus from public;
  alter function app.enter_tenant_context(uuid, bigint, text) set schema app_citus;
  revoke all on function app_citus.enter_tenant_context(uuid, bigint, text) from app_server, app_gateway, app_cms;
  execute $def$
create function app.enter_tenant_context(tenant uuid, counter bigint, signature text) returns void
  language plpgsql
  volatile
  security definer
  set search_path = pg_catalog, pg_temp
as $body$
declare
  gpid text := citus_backend_gpid()::text;
  token_key bytea;
begin
  perform app_citus.enter_tenant_context(tenant, counter, signature);
  -- SET LOCAL, which Citus sends to each worker connection of this transaction; EXECUTE, since
  -- SET takes no parameters.
  perform set_config('citus.propagate_set_commands', 'local', true);
  select k.key into token_key from app.tenant_token_keys k;
  execute format('set local app.tenant_token = %L', tenant::text || '.' || gpid || '.'
    || encode(sha256(token_key || sha256(token_key || convert_to(tenant::text || ':' || gpid, 'UTF8'))), 'hex'));
end
$body$
  $def$;
  revoke all on function app.enter_tenant_context(uuid, bigint, text) from public;
  grant execute on function app.enter_tenant_context(uuid, bigint, text) to app_server, app_gateway, app_cms;
end
$tenant_token$;


