-- Why: each service holds only the rights seed 000's data-ownership matrix gives it, so that an
-- injection in one service cannot write what another service owns. Three NOLOGIN roles:
--   app_server   users and roles (auth/admin), authorization reads, usage analytics;
--   app_gateway  API-key and model lookups, charges usage, reads budgets;
--   app_cms      agents, conversations, messages, resources, vectors, the junction tables,
--                prompts and tools.
-- app_user, until now the one application role, becomes the development default: a member of
-- all three (INHERIT), holding nothing of its own. Money and rank change only through the paths
-- made for them: no app role may set users.budget, role_id, status or api_key_hash after the
-- user is created, nor tenants.plan; users.remaining only goes down (a charge), guarded by a
-- trigger; usage is append-only for every app role. Foreign-key actions (cascades, set null) run
-- as the table owner and are not limited by these grants.
-- Roles are global to the server (every database on it shares them): created only when missing,
-- refused if an existing one could bypass row-level security.

-- app_user holds the union of the three through membership; SET LOCAL ROLE app_user then acts
-- with all of their grants (and none of its own). PostgreSQL 16+ records INHERIT per grant (by
-- default the member's attribute when granted: app_user was NOINHERIT), so it is said explicitly.
alter role app_user inherit;

do $$
declare
  name text;
  inherit text := case when current_setting('server_version_num')::int >= 160000 then ' with inherit true' else '' end;
begin
  foreach name in array array['app_server', 'app_gateway', 'app_cms'] loop
    if not exists (select from pg_roles where rolname = name) then
      begin
        execute format('create role %I nologin nosuperuser nobypassrls inherit nocreatedb nocreaterole', name);
      exception when duplicate_object or unique_violation then
        null; -- created by a concurrent migrator of another database
      end;
    end if;
    if exists (select from pg_roles where rolname = name and (rolsuper or rolbypassrls or rolcreaterole or rolcreatedb)) then
      raise exception 'role % exists with SUPERUSER, BYPASSRLS, CREATEROLE or CREATEDB; row-level security would not hold for it', name;
    end if;
    -- The migrating role must be able to `set local role` to it (superusers always can).
    if not exists (select from pg_roles where rolname = current_user and rolsuper)
       and not pg_has_role(current_user, name, 'MEMBER') then
      execute format('grant %I to %I', name, current_user);
    end if;
    if not pg_has_role('app_user', name, 'USAGE') then
      execute format('grant %I to app_user', name) || inherit;
    end if;
  end loop;
end
$$;

-- The grants app_user had directly (0001, 0005) go to the service roles below.
revoke usage on schema app from app_user;
revoke execute on function app.current_tenant_id() from app_user;
revoke usage on schema public from app_user;
revoke select on roles, policies, role_policies, models, prompts, tools from app_user;
revoke select (id, name, endpoint, created_at, updated_at) on providers from app_user;
revoke select, update (name, plan, settings) on tenants from app_user;
revoke select, insert, update, delete on users, user_agents, user_tools, conversations, messages,
  resources, usage, vectors, agents from app_user;
revoke select, insert, delete on agent_tools from app_user;
revoke execute on function app.resolve_api_key(text) from app_user;
revoke execute on function app.search_text(tsquery, integer, uuid, uuid, integer) from app_user;

grant usage on schema public, app to app_server, app_gateway, app_cms;
grant execute on function app.current_tenant_id() to app_server, app_gateway, app_cms;

-- Catalog. Every service reads roles and models; only the server reads the policies
-- (authorization); the gateway and the cms read providers without their api_key; the cms writes
-- prompts and tools ("seed data + cms").
grant select on roles, models to app_server, app_gateway, app_cms;
grant select on policies, role_policies to app_server;
grant select (id, name, endpoint, created_at, updated_at) on providers to app_gateway, app_cms;
grant select, insert, update on prompts, tools to app_cms;

-- tenants: every service reads its own row (policy tenants_select); the server renames it and
-- changes its settings. The plan is the owner's (billing), not an app role's.
grant select on tenants to app_server, app_gateway, app_cms;
grant update (name, settings) on tenants to app_server;

-- users: the server creates, reads, renames and deletes them; the gateway reads them (budgets,
-- status) and lowers `remaining` when it charges (the trigger below refuses anything else); the
-- cms reads who a user is (agents of a user, shares). No app role reads api_key_hash: keys are
-- resolved by app.resolve_api_key.
grant select (tenant_id, id, email, first_name, last_name, status, role_id, budget, remaining, created_at, updated_at)
  on users to app_server, app_gateway;
grant select (tenant_id, id, status) on users to app_cms;
grant insert (tenant_id, id, email, first_name, last_name, status, role_id, api_key_hash, budget, remaining)
  on users to app_server;
grant update (email, first_name, last_name) on users to app_server;
grant update (remaining) on users to app_gateway;
grant delete on users to app_server;

-- usage: appended by the gateway's charges, read by the server (analytics) and the gateway
-- (idempotent repeats, budgets). Never updated or deleted by an app role.
grant select, insert on usage to app_gateway;
grant select on usage to app_server;

-- The cms's aggregates.
grant select, insert, update, delete on agents, user_agents, user_tools, conversations, messages, resources, vectors
  to app_cms;
grant select, insert, delete on agent_tools to app_cms;
-- What a charge checks before it is written: that the agent and the message it names are visible.
grant select (id, tenant_id, user_id) on agents to app_gateway;
grant select (tenant_id, user_id, agent_id) on user_agents to app_gateway;
grant select (tenant_id, id) on messages to app_gateway;

-- Functions: API keys are resolved by the server and the gateway; the full-text leg is the cms's.
grant execute on function app.resolve_api_key(text) to app_server, app_gateway;
grant execute on function app.search_text(tsquery, integer, uuid, uuid, integer) to app_cms;

-- Serves: every UPDATE of users. users.remaining is granted to the gateway only so that a charge
-- can lower it; this refuses raising it (or setting it where there was no budget, or removing
-- the limit) by any role that does not own the table. The owner, and SECURITY DEFINER functions
-- owned by it (the admin path), pass.
create function app.guard_user_remaining() returns trigger
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
begin
  if new.remaining is not distinct from old.remaining
     or pg_has_role(current_user, (select c.relowner from pg_class c where c.oid = tg_relid), 'USAGE') then
    return new;
  end if;
  if old.remaining is null or new.remaining is null or new.remaining > old.remaining then
    raise exception 'role % may only lower users.remaining (by charging usage), not set it from % to %',
      current_user, coalesce(old.remaining::text, 'NULL'), coalesce(new.remaining::text, 'NULL')
      using errcode = '42501';
  end if;
  return new;
end
$$;
comment on function app.guard_user_remaining() is
  'BEFORE UPDATE trigger on users: an app role may only lower remaining; budgets are raised by the owner.';
create trigger users_guard_remaining before update of remaining on users
  for each row execute function app.guard_user_remaining();
