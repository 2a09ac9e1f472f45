-- Why: everything else stands on this. The pgvector extension (embeddings), the `app` schema
-- that holds the package's own functions, the tenant-context function every row-level security
-- policy calls, the updated_at trigger function, and the `app_user` role that the application
-- switches to (`set local role app_user`) so that row-level security applies to it.

create extension if not exists vector;

create schema app;
comment on schema app is 'Functions of the database package: tenant context, triggers, API-key resolution.';

-- Serves every RLS policy: `tenant_id = (select app.current_tenant_id())`.
-- Reads the transaction-local setting written by withTenant(); unset or empty means NULL, and a
-- comparison with NULL is never true, so a query without tenant context sees no rows (fail closed).
create function app.current_tenant_id() returns uuid
  language sql
  stable
  parallel safe
as $$
  select nullif(current_setting('app.tenant_id', true), '')::uuid
$$;
comment on function app.current_tenant_id() is
  'The tenant of the current transaction (set by withTenant via set_config(..., true)), or NULL.';

-- Serves the `<table>_set_updated_at` triggers: keeps updated_at honest on every UPDATE.
create function app.set_updated_at() returns trigger
  language plpgsql
as $$
begin
  new.updated_at := now();
  return new;
end
$$;
comment on function app.set_updated_at() is 'BEFORE UPDATE trigger: sets updated_at to now().';

-- The application role. Roles are global to the server, so several databases on one server
-- (one per test file, say) share it: create it only when missing, and refuse to go on if an
-- existing role of that name could bypass row-level security.
do $$
begin
  if not exists (select from pg_roles where rolname = 'app_user') then
    begin
      create role app_user nologin nosuperuser nobypassrls noinherit nocreatedb nocreaterole;
    exception when duplicate_object or unique_violation then
      null; -- created by a concurrent migrator of another database
    end;
  end if;
  if exists (select from pg_roles where rolname = 'app_user' and (rolsuper or rolbypassrls)) then
    raise exception 'role app_user exists with SUPERUSER or BYPASSRLS; row-level security would not apply to it';
  end if;
  -- The migrating role must be able to `set local role app_user` (superusers always can).
  if not exists (select from pg_roles where rolname = current_user and rolsuper)
     and not pg_has_role(current_user, 'app_user', 'MEMBER') then
    execute format('grant app_user to %I', current_user);
  end if;
end
$$;

grant usage on schema app to app_user;
grant execute on function app.current_tenant_id() to app_user;
