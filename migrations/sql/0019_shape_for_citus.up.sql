-- Why: agent_tools' policies looked their agent up with EXISTS subqueries, and Citus refuses
-- subqueries in the policies of distributed tables (reference tables included): "Subqueries are
-- not supported in policies on distributed tables". Like conversations, resources, usage and
-- user_agents since 0011, each agent_tools row now carries its agent's scope, agent_scope (the
-- agent's tenant_id, or the nil UUID for a global agent), and references agents (scope, id). The
-- policies then compare a column of the row itself, on every backend:
--   select: the agent is global or the tenant's   (was: EXISTS a visible agent — the same rows)
--   insert/delete: the agent is the tenant's      (was: EXISTS an agent of the tenant — the same)
-- The foreign key makes agent_scope the agent's true scope, so no row can claim another tenant's
-- or a global agent as its own. agent_scope defaults to the transaction's tenant, or the nil UUID
-- outside any tenant (the seed, loading the global agents' tools): writers need not name it, and a
-- default that names the wrong scope fails the foreign key instead of attaching anything.
alter table agent_tools add column agent_scope uuid;
update agent_tools t set agent_scope = a.scope from agents a where a.id = t.agent_id;
alter table agent_tools
  alter column agent_scope set not null,
  alter column agent_scope set default coalesce(app.current_tenant_id(), '00000000-0000-0000-0000-000000000000'::uuid),
  drop constraint agent_tools_agent_id_fkey,
  add constraint agent_tools_agent_id_fkey foreign key (agent_scope, agent_id)
    references agents (scope, id) on delete cascade;
comment on column agent_tools.agent_scope is
  'The agent''s scope (agents.scope): its tenant_id, or the nil UUID for a global agent. Defaults to the transaction''s tenant (nil outside one).';

drop policy agent_tools_select on agent_tools;
drop policy agent_tools_insert on agent_tools;
drop policy agent_tools_delete on agent_tools;
-- Serves: resolveAgent's tools of a visible (global or own) agent.
create policy agent_tools_select on agent_tools for select
  using (agent_scope = '00000000-0000-0000-0000-000000000000'::uuid
         or agent_scope = (select app.current_tenant_id()));
-- Serves: createAgent({ toolIds }) for the tenant's own agent.
create policy agent_tools_insert on agent_tools for insert
  with check (agent_scope = (select app.current_tenant_id()));
-- Serves: removing a tool from the tenant's own agent.
create policy agent_tools_delete on agent_tools for delete
  using (agent_scope = (select app.current_tenant_id()));

-- API keys name their tenant. app.resolve_api_key(hash) runs before any tenant is known and so
-- searches every tenant: on Citus a query of every shard, for every request a gateway admits.
-- Keys the package generates now carry their tenant (`sk_<tenant id, 32 hex>_<secret>`), and this
-- overload looks the hash up within that tenant only: one shard on Citus, and the unique
-- key (tenant_id, api_key_hash) as its index everywhere. A key naming another tenant finds nothing
-- there, like any unknown key. Keys without a tenant (made before, or TEST_API_KEY) still go
-- through app.resolve_api_key(hash).
create function app.resolve_api_key(key_hash text, tenant uuid)
  returns table (tenant_id uuid, user_id uuid, role_id integer)
  language sql
  stable
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  select u.tenant_id, u.id, u.role_id
  from public.users u
  where u.tenant_id = tenant
    and u.api_key_hash = key_hash
    and u.status = 'active'
$$;
comment on function app.resolve_api_key(text, uuid) is
  'API key (as sha256 hex) of a key naming its tenant -> (tenant_id, user_id, role_id) of an active user of that tenant; callable without tenant context.';
revoke all on function app.resolve_api_key(text, uuid) from public;
grant execute on function app.resolve_api_key(text, uuid) to app_server, app_gateway;

-- Serves: appendMessage, which keeps a conversation's activity strictly increasing:
-- greatest(app.next_instant(last_activity_at), statement_timestamp()). `timestamptz + interval` is
-- only STABLE (an interval of days or months depends on the time zone), and Citus refuses
-- non-IMMUTABLE functions inside GREATEST, COALESCE or CASE of a distributed UPDATE; one
-- microsecond later is the same instant in every time zone.
create function app.next_instant(t timestamptz) returns timestamptz
  language sql
  immutable
  parallel safe
  set search_path = pg_catalog, pg_temp
as $$
  select t + interval '1 microsecond'
$$;
comment on function app.next_instant(timestamptz) is
  'appendMessage: the instant one microsecond after t (IMMUTABLE, unlike timestamptz + interval).';
grant execute on function app.next_instant(timestamptz) to app_cms;
