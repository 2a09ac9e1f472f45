-- Why: the tenant of a transaction must be unforgeable by SQL run inside it. Until now every
-- policy read the setting app.tenant_id, which withTenant wrote with set_config(..., true): any
-- SQL in the transaction (an injection in a service) could write another tenant's id there and
-- read and change that tenant's rows. Now:
--   - When the package first uses a connection for a tenant transaction it registers a random
--     per-connection key (app.open_tenant_context, with HMAC pads computed by the client; bound
--     parameters, so the key never appears in pg_stat_activity). A connection registers once:
--     a second registration in the same backend is refused, so SQL cannot swap in a key it knows.
--   - Each tenant transaction starts with app.enter_tenant_context(tenant, counter, signature):
--     the signature is HMAC-SHA256(key, '<tenant>:<counter>') and the counter must be higher than
--     every counter used before on the connection, so a signature seen elsewhere (pg_stat_activity
--     shows other sessions' statements) cannot be replayed. It records the tenant for this
--     transaction only (transaction_timestamp(), which SQL cannot change) and first resets every
--     session-level setting an earlier transaction may have left (RESET ALL) and any session
--     advisory lock.
--   - app.current_tenant_id(), which every policy calls, returns that tenant while the
--     transaction that entered it lasts, and NULL otherwise: no setting can change what it says.
-- The key and the recorded tenant live in app.tenant_contexts, which no app role can read or
-- write; only these SECURITY DEFINER functions do. It is UNLOGGED (no WAL: a row per live
-- connection, rewritten at every tenant transaction) and emptied by a crash, when every
-- connection is gone anyway. It cannot be written on a hot standby: tenant transactions need
-- the primary.
-- Citus (not handled here): workers evaluate the policies in backends of their own, where
-- pg_backend_pid() and this table say nothing about the coordinator's session. There the verified
-- context has to travel with the statement (SET LOCAL, which Citus propagates to the workers) and
-- be checked against a key the workers can read; the signature and the counter carry over, the
-- per-backend storage does not.

create unlogged table app.tenant_contexts (
  pid           integer primary key,
  backend_start timestamptz not null,
  -- HMAC-SHA256 pads of the connection's key: (key ⊕ 0x36…) and (key ⊕ 0x5c…), 64 bytes each.
  key_inner     bytea not null check (length(key_inner) = 64),
  key_outer     bytea not null check (length(key_outer) = 64),
  counter       bigint not null default 0 check (counter >= 0),
  tenant_id     uuid,
  xact_start    timestamptz
);
comment on table app.tenant_contexts is
  'One row per connection that registered a tenant-context key: the key (as HMAC pads), the last counter, and the tenant of its current transaction. Owner-only.';
revoke all on app.tenant_contexts from public;

-- Serves: withTenant's first use of a connection. Registers the connection's key; refused when
-- this backend registered one already. Rows of backends that are gone are removed.
create function app.open_tenant_context(key_inner bytea, key_outer bytea) returns void
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
comment on function app.open_tenant_context(bytea, bytea) is
  'withTenant, once per connection: registers the connection''s HMAC key. Refused if the backend has one.';

-- Serves: the first statement of every withTenant transaction. Verifies the signature and the
-- counter, resets what earlier transactions left on the session, records the tenant for this
-- transaction. (Prepared statements are checked at the end of each tenant transaction, in the
-- same round trip as its COMMIT: pg_prepared_statements copies every statement's text, and a
-- connection holds dozens.)
create function app.enter_tenant_context(tenant uuid, counter bigint, signature text) returns void
  language plpgsql
  volatile
  security definer
  set search_path = pg_catalog, pg_temp
as $$
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
$$;
comment on function app.enter_tenant_context(uuid, bigint, text) is
  'withTenant, first statement of each tenant transaction: HMAC-verified tenant for this transaction only.';

-- Serves: every RLS policy (`(select app.current_tenant_id())`) and app.search_text. The tenant
-- app.enter_tenant_context recorded for the current transaction of this backend; NULL in any
-- other transaction, so a query without tenant context sees no rows (fail closed). PARALLEL
-- RESTRICTED: in a parallel worker pg_backend_pid() is the worker's, not the connection's.
create or replace function app.current_tenant_id() returns uuid
  language sql
  stable
  security definer
  parallel restricted
  set search_path = pg_catalog, pg_temp
as $$
  select c.tenant_id from app.tenant_contexts c
  where c.pid = pg_backend_pid() and c.xact_start = transaction_timestamp()
$$;
comment on function app.current_tenant_id() is
  'The tenant of the current transaction, as verified by app.enter_tenant_context, or NULL.';

revoke all on function app.open_tenant_context(bytea, bytea) from public;
revoke all on function app.enter_tenant_context(uuid, bigint, text) from public;
revoke all on function app.current_tenant_id() from public;
grant execute on function app.open_tenant_context(bytea, bytea) to app_server, app_gateway, app_cms;
grant execute on function app.enter_tenant_context(uuid, bigint, text) to app_server, app_gateway, app_cms;
grant execute on function app.current_tenant_id() to app_server, app_gateway, app_cms;
