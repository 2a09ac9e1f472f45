-- Why: reverses 0009_create_service_roles: app_user gets back its own grants of 0001 and 0005.
-- Role attributes and memberships are global to the server and shared by every database on it:
-- app_user stays INHERIT and a member of the three service roles (with no grants in this
-- database, membership gives nothing here); each service role is dropped only when no other
-- database still grants it anything.

drop trigger users_guard_remaining on users;
drop function app.guard_user_remaining();

revoke execute on function app.search_text(tsquery, integer, uuid, uuid, integer) from app_cms;
revoke execute on function app.resolve_api_key(text) from app_server, app_gateway;
revoke select (tenant_id, id) on messages from app_gateway;
revoke select (tenant_id, user_id, agent_id) on user_agents from app_gateway;
revoke select (id, tenant_id, user_id) on agents from app_gateway;
revoke select, insert, delete on agent_tools from app_cms;
revoke select, insert, update, delete on agents, user_agents, user_tools, conversations, messages, resources, vectors
  from app_cms;
revoke select on usage from app_server;
revoke select, insert on usage from app_gateway;
revoke delete on users from app_server;
revoke update (remaining) on users from app_gateway;
revoke update (email, first_name, last_name) on users from app_server;
revoke insert (tenant_id, id, email, first_name, last_name, status, role_id, api_key_hash, budget, remaining)
  on users from app_server;
revoke select (tenant_id, id, status) on users from app_cms;
revoke select (tenant_id, id, email, first_name, last_name, status, role_id, budget, remaining, created_at, updated_at)
  on users from app_server, app_gateway;
revoke update (name, settings) on tenants from app_server;
revoke select on tenants from app_server, app_gateway, app_cms;
revoke select, insert, update on prompts, tools from app_cms;
revoke select (id, name, endpoint, created_at, updated_at) on providers from app_gateway, app_cms;
revoke select on policies, role_policies from app_server;
revoke select on roles, models from app_server, app_gateway, app_cms;
revoke execute on function app.current_tenant_id() from app_server, app_gateway, app_cms;
revoke usage on schema public, app from app_server, app_gateway, app_cms;

-- 0001 and 0005, as they were.
grant usage on schema app to app_user;
grant execute on function app.current_tenant_id() to app_user;
grant usage on schema public to app_user;
grant select on roles, policies, role_policies, models, prompts, tools to app_user;
grant select (id, name, endpoint, created_at, updated_at) on providers to app_user;
grant select, update (name, plan, settings) on tenants to app_user;
grant select, insert, update, delete on users, user_agents, user_tools, conversations, messages,
  resources, usage, vectors, agents to app_user;
grant select, insert, delete on agent_tools to app_user;
grant execute on function app.resolve_api_key(text) to app_user;
grant execute on function app.search_text(tsquery, integer, uuid, uuid, integer) to app_user;

do $$
declare
  name text;
begin
  foreach name in array array['app_server', 'app_gateway', 'app_cms'] loop
    begin
      execute format('drop role if exists %I', name);
    exception when dependent_objects_still_exist then
      raise notice 'role % is still used by another database on this server; kept', name;
    end;
  end loop;
end
$$;
