-- Why: every tenant transaction UPDATEd its connection's row of app.tenant_contexts (0010: the
-- last counter, the tenant, the transaction's start). While any transaction stays open on the
-- server (a pg_dump, a report, an idle session in a transaction; on PostgreSQL 15 even one in
-- another database) those row versions cannot be pruned, and app.enter_tenant_context and every
-- policy's app.current_tenant_id() walked all of them: measured with `node
-- bench/transaction-shapes.ts 4 --hold`, 174 pages instead of 1 after 6,000 transactions and a
-- signed lookup's server CPU 185 -> 245 us, growing for as long as the old transaction lasted. The
-- update also gave every tenant transaction, read-only ones included, a transaction id.
--
-- Now a tenant transaction writes no row version:
--   * The counter (replay protection) lives in an UNLOGGED SEQUENCE of the connection's own,
--     app_tenant_counters.backend_<pid>, made by app.open_tenant_context. setval() overwrites the
--     sequence's single tuple in place: no MVCC version, no WAL, no transaction id, and it is
--     never rolled back, so a counter is used once whatever becomes of its transaction.
--   * The tenant of the transaction is a transaction-local setting, app.tenant_token =
--     '<tenant>.<mac>', set by app.enter_tenant_context after it verified the signed request; mac
--     is a keyed SHA-256 of the tenant, the backend's pid and the transaction's start
--     (extract(epoch ...): not affected by TimeZone or DateStyle) under a server key in
--     app.tenant_token_keys (written once, by this migration; owner-only). app.current_tenant_id()
--     returns the token's tenant only if the mac verifies for this backend and this transaction.
--     SQL inside the transaction can read its own token and write any string there, but cannot make
--     a valid token for another tenant, nor reuse a token in another transaction or session; a
--     wrong string reads as no tenant (fail closed). This is the shape 0020 gives Citus, bound to
--     the transaction as well.
--   * app.tenant_contexts keeps what is written once per connection (its key pads) and the name of
--     its counter sequence; its counter, tenant_id and xact_start columns go.
--   * The verification itself (key, counter, signature, tenant) is app.check_tenant_request, one
--     owner-only function that both app.enter_tenant_context here and 0020's on Citus call.
-- On Citus, 0020's app.current_tenant_id() and app.enter_tenant_context (the gpid-bound token) are
-- left as they are; only the verification they call (app_citus.enter_tenant_context) stops writing
-- the row. The per-connection sequences are the coordinator's own: made with DDL propagation off.

create schema app_tenant_counters;
comment on schema app_tenant_counters is
  'Owner-only: one unlogged sequence per connection that registered a tenant-context key, its last counter (0024).';
revoke all on schema app_tenant_counters from public;

do $migration$
declare
  r record;
begin
  if exists (select from pg_extension where extname = 'citus') then
    perform set_config('citus.enable_ddl_propagation', 'off', true);
  end if;
  alter table app.tenant_contexts add column counter_seq regclass;
  -- Connections registered before this migration keep their key and their counter.
  for r in select c.pid, c.counter from app.tenant_contexts c loop
    execute format('create unlogged sequence app_tenant_counters.%I as bigint minvalue 0 start with 0', 'backend_' || r.pid);
    perform setval(format('app_tenant_counters.%I', 'backend_' || r.pid)::regclass, r.counter, true);
    update app.tenant_contexts c set counter_seq = format('app_tenant_counters.%I', 'backend_' || r.pid)::regclass
    where c.pid = r.pid;
  end loop;
  if exists (select from pg_extension where extname = 'citus') then
    perform set_config('citus.enable_ddl_propagation', 'on', true);
  end if;
end
$migration$;
alter table app.tenant_contexts alter column counter_seq set not null;
alter table app.tenant_contexts drop column counter, drop column tenant_id, drop column xact_start;
comment on table app.tenant_contexts is
  'One row per connection that registered a tenant-context key: the key (as HMAC pads) and the sequence that holds its last counter. Written once per connection. Owner-only.';

-- The server key of the tokens. On Citus 0020 made it (a reference table).
do $migration$
begin
  if to_regclass('app.tenant_token_keys') is not null then
    return;
  end if;
  create table app.tenant_token_keys (
    id  integer primary key default 1 check (id = 1),
    key bytea not null check (length(key) = 32)
  );
  comment on table app.tenant_token_keys is
    'The key of the tenant tokens (0024; on Citus 0020, a reference table). Owner-only.';
  revoke all on app.tenant_token_keys from public;
  insert into app.tenant_token_keys (key)
    values (sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || clock_timestamp()::text, 'UTF8')));
end
$migration$;

-- Serves: withTenant's first use of a connection. Registers the connection's key and makes its
-- counter sequence; refused when this backend registered one already. The rows and sequences of
-- backends that are gone are removed (a backend's pid is reused only after it ended).
create or replace function app.open_tenant_context(key_inner bytea, key_outer bytea) returns void
  language plpgsql
  volatile
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  started timestamptz := coalesce(
    (select a.backend_start from pg_stat_activity a where a.pid = pg_backend_pid()), pg_postmaster_start_time());
  citus boolean := exists (select from pg_extension where extname = 'citus');
  gone record;
  counter_seq regclass;
begin
  if exists (select from app.tenant_contexts c where c.pid = pg_backend_pid() and c.backend_start = started) then
    raise exception 'this connection registered its tenant-context key already; a key cannot be replaced'
      using errcode = '42501';
  end if;
  if citus then
    perform set_config('citus.enable_ddl_propagation', 'off', true);
  end if;
  for gone in
    delete from app.tenant_contexts c
    where c.pid = pg_backend_pid() or not exists (select from pg_stat_activity a where a.pid = c.pid)
    returning c.pid
  loop
    if to_regclass(format('app_tenant_counters.%I', 'backend_' || gone.pid)) is not null then
      execute format('drop sequence app_tenant_counters.%I', 'backend_' || gone.pid);
    end if;
  end loop;
  -- A sequence of this pid without its row (the row deleted by hand) is replaced.
  if to_regclass(format('app_tenant_counters.%I', 'backend_' || pg_backend_pid())) is not null then
    execute format('drop sequence app_tenant_counters.%I', 'backend_' || pg_backend_pid());
  end if;
  execute format('create unlogged sequence app_tenant_counters.%I as bigint minvalue 0 start with 0', 'backend_' || pg_backend_pid());
  counter_seq := format('app_tenant_counters.%I', 'backend_' || pg_backend_pid())::regclass;
  perform setval(counter_seq, 0, true);
  if citus then
    perform set_config('citus.enable_ddl_propagation', 'on', true);
  end if;
  insert into app.tenant_contexts (pid, backend_start, key_inner, key_outer, counter_seq)
  values (pg_backend_pid(), started, open_tenant_context.key_inner, open_tenant_context.key_outer, counter_seq);
end
$$;

-- The keyed hash of a token: the tenant, bound to this backend and this transaction. An SQL
-- function that PostgreSQL inlines into its callers' expressions, but only when its arguments are
-- plain values: with `(select key …)` as an argument it is not inlined (the key is used twice),
-- and PostgreSQL 15 then plans its query again at every call (~50 us; 0023). The callers read
-- the key into a variable first. Owner-only.
create function app.tenant_token_mac(token_key bytea, tenant text) returns text
  language sql
  stable
  parallel restricted
as $$
  select encode(sha256($1 || sha256($1 || convert_to(
    $2 || ':' || pg_backend_pid()::text || ':' || extract(epoch from transaction_timestamp())::text, 'UTF8'))), 'hex')
$$;
comment on function app.tenant_token_mac(bytea, text) is
  'The mac of a tenant token (0024): keyed SHA-256 of the tenant, the backend pid and the transaction start.';

-- Serves: app.enter_tenant_context (and app_citus.enter_tenant_context on Citus), as the owner.
-- Verifies the signed request against the connection's key, uses up its counter (setval, in
-- place: kept even if the transaction rolls back), checks that the tenant exists. Writes no row.
create function app.check_tenant_request(tenant uuid, counter bigint, signature text) returns void
  language plpgsql
  volatile
  set search_path = pg_catalog, pg_temp
as $$
declare
  ctx record;
begin
  select c.key_inner, c.key_outer, c.counter_seq into ctx from app.tenant_contexts c where c.pid = pg_backend_pid();
  if not found then
    raise exception 'no tenant-context key is registered for this connection' using errcode = '42501';
  end if;
  if check_tenant_request.counter <= pg_sequence_last_value(ctx.counter_seq) then
    raise exception 'tenant context refused: counter % was used already on this connection', check_tenant_request.counter
      using errcode = '42501';
  end if;
  if encode(sha256(ctx.key_outer || sha256(ctx.key_inner
       || convert_to(check_tenant_request.tenant::text || ':' || check_tenant_request.counter::text, 'UTF8'))), 'hex')
     is distinct from check_tenant_request.signature then
    raise exception 'tenant context refused: bad signature' using errcode = '42501';
  end if;
  perform setval(ctx.counter_seq, check_tenant_request.counter, true);
  if not exists (select from public.tenants t where t.id = check_tenant_request.tenant) then
    raise exception 'tenant % does not exist', check_tenant_request.tenant using errcode = 'P0002';
  end if;
end
$$;
comment on function app.check_tenant_request(uuid, bigint, text) is
  'The verification of a signed tenant request (0024): key, counter (used up in place), signature, tenant. Owner-only.';

revoke all on function app.tenant_token_mac(bytea, text) from public;
revoke all on function app.check_tenant_request(uuid, bigint, text) from public;

do $migration$
begin
  if exists (select from pg_extension where extname = 'citus') then
    -- 0010's verification, which 0020's app.enter_tenant_context calls, stops writing the row.
    create or replace function app_citus.enter_tenant_context(tenant uuid, counter bigint, signature text) returns void
      language plpgsql
      volatile
      security definer
      set search_path = pg_catalog, pg_temp
    as $function$
    begin
      reset all;
      perform pg_advisory_unlock_all();
      perform app.check_tenant_request(tenant, counter, signature);
    end
    $function$;
    return;
  end if;

  -- Serves: the first statement of every withTenant transaction: resets what earlier
  -- transactions left on the session, verifies the request, sets the transaction's token.
  create or replace function app.enter_tenant_context(tenant uuid, counter bigint, signature text) returns void
    language plpgsql
    volatile
    security definer
    set search_path = pg_catalog, pg_temp
  as $function$
  declare
    token_key bytea;
  begin
    reset all;
    perform pg_advisory_unlock_all();
    perform app.check_tenant_request(tenant, counter, signature);
    select k.key into token_key from app.tenant_token_keys k;
    perform set_config('app.tenant_token', tenant::text || '.' || app.tenant_token_mac(token_key, tenant::text), true);
  end
  $function$;

  -- Serves: every RLS policy and the SECURITY DEFINER functions: the tenant of this transaction's
  -- valid token, or NULL (no token, or one that is not this backend's and this transaction's).
  create or replace function app.current_tenant_id() returns uuid
    language plpgsql
    stable
    security definer
    parallel restricted
    set search_path = pg_catalog, pg_temp
  as $function$
  declare
    token constant text := current_setting('app.tenant_token', true);
    token_key bytea;
  begin
    -- '<uuid>.<64 hex digits>'
    if token is null or length(token) <> 101 then
      return null;
    end if;
    select k.key into token_key from app.tenant_token_keys k;
    if app.tenant_token_mac(token_key, left(token, 36)) = right(token, 64) then
      return left(token, 36)::uuid;
    end if;
    return null;
  end
  $function$;
end
$migration$;
