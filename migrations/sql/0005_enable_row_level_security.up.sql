-- Why: the tenant wall. Row-level security, enabled and FORCED (so it binds the table owner too),
-- on every tenant-scoped table, on agents/agent_tools and on tenants; one policy per operation
-- comparing tenant_id with (select app.current_tenant_id()) in both USING and WITH CHECK; the
-- grants of app_user, which owns nothing; and the SECURITY DEFINER API-key resolver that works
-- before any tenant is known. Superusers and BYPASSRLS roles are not bound by any of this:
-- withTenant() switches to app_user (`set local role app_user`) for that reason.

grant usage on schema public to app_user;

-- Catalog: read-only for the application. providers.api_key is left out on purpose: model
-- provider secrets are read by the owner (the gateway's configuration path), never by app_user.
grant select on roles, policies, role_policies, models, prompts, tools to app_user;
grant select (id, name, endpoint, created_at, updated_at) on providers to app_user;

-- tenants: a tenant sees and updates only its own row; creating and deleting tenants is the
-- owner's job (no INSERT/DELETE grant or policy for app_user).
alter table tenants enable row level security;
alter table tenants force row level security;
grant select, update (name, plan, settings) on tenants to app_user;
-- Serves: every read of the current tenant's row.
create policy tenants_select on tenants for select
  using (id = (select app.current_tenant_id()));
-- Serves: a tenant changing its own name, plan or settings.
create policy tenants_update on tenants for update
  using (id = (select app.current_tenant_id()))
  with check (id = (select app.current_tenant_id()));

-- users: tenant-scoped.
alter table users enable row level security;
alter table users force row level security;
grant select, insert, update, delete on users to app_user;
-- Serves: every read of users under withTenant.
create policy users_select on users for select
  using (tenant_id = (select app.current_tenant_id()));
-- Serves: inserts into users; a row for another tenant is refused.
create policy users_insert on users for insert
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: updates of users; a row cannot be moved to another tenant.
create policy users_update on users for update
  using (tenant_id = (select app.current_tenant_id()))
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: deletes from users.
create policy users_delete on users for delete
  using (tenant_id = (select app.current_tenant_id()));

-- user_agents: tenant-scoped.
alter table user_agents enable row level security;
alter table user_agents force row level security;
grant select, insert, update, delete on user_agents to app_user;
-- Serves: every read of user_agents under withTenant.
create policy user_agents_select on user_agents for select
  using (tenant_id = (select app.current_tenant_id()));
-- Serves: inserts into user_agents; a row for another tenant is refused.
create policy user_agents_insert on user_agents for insert
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: updates of user_agents; a row cannot be moved to another tenant.
create policy user_agents_update on user_agents for update
  using (tenant_id = (select app.current_tenant_id()))
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: deletes from user_agents.
create policy user_agents_delete on user_agents for delete
  using (tenant_id = (select app.current_tenant_id()));

-- user_tools: tenant-scoped.
alter table user_tools enable row level security;
alter table user_tools force row level security;
grant select, insert, update, delete on user_tools to app_user;
-- Serves: every read of user_tools under withTenant.
create policy user_tools_select on user_tools for select
  using (tenant_id = (select app.current_tenant_id()));
-- Serves: inserts into user_tools; a row for another tenant is refused.
create policy user_tools_insert on user_tools for insert
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: updates of user_tools; a row cannot be moved to another tenant.
create policy user_tools_update on user_tools for update
  using (tenant_id = (select app.current_tenant_id()))
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: deletes from user_tools.
create policy user_tools_delete on user_tools for delete
  using (tenant_id = (select app.current_tenant_id()));

-- conversations: tenant-scoped.
alter table conversations enable row level security;
alter table conversations force row level security;
grant select, insert, update, delete on conversations to app_user;
-- Serves: every read of conversations under withTenant.
create policy conversations_select on conversations for select
  using (tenant_id = (select app.current_tenant_id()));
-- Serves: inserts into conversations; a row for another tenant is refused.
create policy conversations_insert on conversations for insert
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: updates of conversations; a row cannot be moved to another tenant.
create policy conversations_update on conversations for update
  using (tenant_id = (select app.current_tenant_id()))
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: deletes from conversations.
create policy conversations_delete on conversations for delete
  using (tenant_id = (select app.current_tenant_id()));

-- messages: tenant-scoped.
alter table messages enable row level security;
alter table messages force row level security;
grant select, insert, update, delete on messages to app_user;
-- Serves: every read of messages under withTenant.
create policy messages_select on messages for select
  using (tenant_id = (select app.current_tenant_id()));
-- Serves: inserts into messages; a row for another tenant is refused.
create policy messages_insert on messages for insert
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: updates of messages; a row cannot be moved to another tenant.
create policy messages_update on messages for update
  using (tenant_id = (select app.current_tenant_id()))
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: deletes from messages.
create policy messages_delete on messages for delete
  using (tenant_id = (select app.current_tenant_id()));

-- resources: tenant-scoped.
alter table resources enable row level security;
alter table resources force row level security;
grant select, insert, update, delete on resources to app_user;
-- Serves: every read of resources under withTenant.
create policy resources_select on resources for select
  using (tenant_id = (select app.current_tenant_id()));
-- Serves: inserts into resources; a row for another tenant is refused.
create policy resources_insert on resources for insert
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: updates of resources; a row cannot be moved to another tenant.
create policy resources_update on resources for update
  using (tenant_id = (select app.current_tenant_id()))
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: deletes from resources.
create policy resources_delete on resources for delete
  using (tenant_id = (select app.current_tenant_id()));

-- usage: tenant-scoped.
alter table usage enable row level security;
alter table usage force row level security;
grant select, insert, update, delete on usage to app_user;
-- Serves: every read of usage under withTenant.
create policy usage_select on usage for select
  using (tenant_id = (select app.current_tenant_id()));
-- Serves: inserts into usage; a row for another tenant is refused.
create policy usage_insert on usage for insert
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: updates of usage; a row cannot be moved to another tenant.
create policy usage_update on usage for update
  using (tenant_id = (select app.current_tenant_id()))
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: deletes from usage.
create policy usage_delete on usage for delete
  using (tenant_id = (select app.current_tenant_id()));

-- vectors: tenant-scoped.
alter table vectors enable row level security;
alter table vectors force row level security;
grant select, insert, update, delete on vectors to app_user;
-- Serves: every read of vectors under withTenant.
create policy vectors_select on vectors for select
  using (tenant_id = (select app.current_tenant_id()));
-- Serves: inserts into vectors; a row for another tenant is refused.
create policy vectors_insert on vectors for insert
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: updates of vectors; a row cannot be moved to another tenant.
create policy vectors_update on vectors for update
  using (tenant_id = (select app.current_tenant_id()))
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: deletes from vectors.
create policy vectors_delete on vectors for delete
  using (tenant_id = (select app.current_tenant_id()));

-- agents: shared-or-owned. Global agents (tenant_id NULL) are readable by every tenant, and
-- only the owner (seed) writes them; a tenant reads and writes its own.
alter table agents enable row level security;
alter table agents force row level security;
grant select, insert, update, delete on agents to app_user;
-- Serves: listAgentsForUser, resolveAgent: global agents and the tenant's own.
create policy agents_select on agents for select
  using (tenant_id is null or tenant_id = (select app.current_tenant_id()));
-- Serves: createAgent; only for the current tenant, never a global agent.
create policy agents_insert on agents for insert
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: updating the tenant's own agents.
create policy agents_update on agents for update
  using (tenant_id = (select app.current_tenant_id()))
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: deleting the tenant's own agents.
create policy agents_delete on agents for delete
  using (tenant_id = (select app.current_tenant_id()));

-- agent_tools: visible when its agent is visible (the subquery is itself filtered by agents'
-- policies), writable only for the tenant's own agents.
alter table agent_tools enable row level security;
alter table agent_tools force row level security;
grant select, insert, delete on agent_tools to app_user;
-- Serves: resolveAgent's tools of a visible agent.
create policy agent_tools_select on agent_tools for select
  using (exists (select 1 from agents a where a.id = agent_tools.agent_id));
-- Serves: createAgent({ toolIds }) for the tenant's own agent.
create policy agent_tools_insert on agent_tools for insert
  with check (exists (select 1 from agents a
                      where a.id = agent_tools.agent_id
                        and a.tenant_id = (select app.current_tenant_id())));
-- Serves: removing a tool from the tenant's own agent.
create policy agent_tools_delete on agent_tools for delete
  using (exists (select 1 from agents a
                 where a.id = agent_tools.agent_id
                   and a.tenant_id = (select app.current_tenant_id())));

-- Serves: authenticateApiKey(), which runs before any tenant is known. Takes the sha256 hex of
-- an API key and returns only (tenant_id, user_id, role_id) of an active user, nothing else. SECURITY
-- DEFINER runs it as its owner (the migrating role, which must be a superuser or BYPASSRLS to
-- see past the forced RLS); the pinned search_path keeps a caller's objects out of it.
create function app.resolve_api_key(key_hash text)
  returns table (tenant_id uuid, user_id uuid, role_id integer)
  language sql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  select u.tenant_id, u.id, u.role_id
  from public.users u
  where u.api_key_hash = key_hash
    and u.status = 'active'
$$;
comment on function app.resolve_api_key(text) is
  'API key (as sha256 hex) -> (tenant_id, user_id, role_id) of an active user; callable without tenant context.';
revoke all on function app.resolve_api_key(text) from public;
grant execute on function app.resolve_api_key(text) to app_user;

-- Serves: hybridSearch's full-text leg. `content_tsv @@ query` calls ts_match_vq, which is not
-- LEAKPROOF, so for app_user (bound by the forced policies) PostgreSQL must evaluate it after the
-- policy's tenant filter and never as an index condition: every search scanned the tenant's rows
-- (bench, 100,000 vectors: hybridSearch p50 102 ms). This SECURITY DEFINER function runs the leg as
-- the owner, where the GIN index is usable, and filters by app.current_tenant_id() itself (the
-- transaction's tenant, set by withTenant; NULL, so no rows, without one): a caller cannot name
-- another tenant. It returns only ids and ranks.
create function app.search_text(
  query tsquery, max_rows integer, resource uuid default null, conversation uuid default null, tool integer default null
)
  returns table (id uuid, rank bigint)
  language sql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  select v.id, row_number() over (order by ts_rank_cd(v.content_tsv, query) desc, v.id)
  from public.vectors v
  where v.tenant_id = app.current_tenant_id()
    and v.content_tsv @@ query
    and (resource is null or v.resource_id = resource)
    and (conversation is null or v.conversation_id = conversation)
    and (tool is null or v.tool_id = tool)
  order by ts_rank_cd(v.content_tsv, query) desc, v.id
  limit max_rows
$$;
comment on function app.search_text(tsquery, integer, uuid, uuid, integer) is
  'hybridSearch full-text leg: ids and ranks of the current tenant''s chunks matching query (GIN index), best first.';
revoke all on function app.search_text(tsquery, integer, uuid, uuid, integer) from public;
grant execute on function app.search_text(tsquery, integer, uuid, uuid, integer) to app_user;
