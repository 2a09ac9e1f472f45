-- Why: the cms writes agents, prompts and tools (issue 15, part A). Three changes:
--   * agents can be retired (deleteAgent) instead of deleted: conversations, usage and shares
--     keep pointing at the agent they were made with, and the history stays whole; a retired
--     agent is refused for new conversations and shares and left out of listAgentsForUser.
--   * an agent pins its prompt version (prompt_id, the default) or follows the latest version of
--     that prompt's name (prompt_follows_latest).
--   * prompts and tools become shared-or-owned like agents: global rows (tenant_id NULL, from the
--     seed) that every tenant reads and none writes, and rows a tenant's cms creates and changes.
--     Until now app_cms could INSERT/UPDATE the catalog rows every tenant shares. Each table gets
--     tenant_id and a generated scope (tenant_id, or the nil UUID for a global row), as agents got
--     in 0011, so that names and versions are unique per scope. The policies compare tenant_id
--     with the current tenant and nothing else (no subqueries: Citus refuses them); prompts and
--     tools are to be reference tables, like agents.

alter table agents
  add column retired_at timestamptz,
  add column prompt_follows_latest boolean not null default false;
comment on column agents.retired_at is
  'When deleteAgent retired the agent: existing conversations keep it; new conversations and shares refuse it.';
comment on column agents.prompt_follows_latest is
  'false (default): the agent runs prompt_id, a pinned version; true: the latest version of that prompt''s name and scope.';

alter table prompts
  add column tenant_id uuid references tenants (id) on delete cascade,
  add column scope uuid not null
    generated always as (coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)) stored,
  add constraint prompts_tenant_id_not_nil check (tenant_id <> '00000000-0000-0000-0000-000000000000'::uuid),
  drop constraint prompts_name_version_key;
-- Serves: getPrompt by name (latest: the last entry of (scope, name)), listPromptVersions (keyset
-- on version), createPromptVersion (next version; the conflict that makes a concurrent writer retry).
alter table prompts add constraint prompts_scope_name_version_key unique (scope, name, version);
comment on column prompts.tenant_id is 'NULL: a global prompt (seed), read-only for tenants; else the tenant that owns it.';
comment on column prompts.scope is 'tenant_id, or the nil UUID for a global prompt: versions are numbered per (scope, name).';

alter table tools
  add column tenant_id uuid references tenants (id) on delete cascade,
  add column scope uuid not null
    generated always as (coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)) stored,
  add constraint tools_tenant_id_not_nil check (tenant_id <> '00000000-0000-0000-0000-000000000000'::uuid),
  drop constraint tools_name_key;
-- Serves: createTool's unique name per scope (a tenant may name a tool like a global one).
alter table tools add constraint tools_scope_name_key unique (scope, name);
-- Serves: listTools (the tenant's own tools) and the cascade when a tenant is deleted.
create index tools_tenant_idx on tools (tenant_id) where tenant_id is not null;
comment on column tools.tenant_id is 'NULL: a global tool (seed), read-only for tenants; else the tenant that owns it.';
comment on column tools.scope is 'tenant_id, or the nil UUID for a global tool: names are unique per scope.';

-- Serves: listAgentShares (the shares of one agent, oldest first, keyset on (created_at, id)).
create index user_agents_tenant_agent_created_idx on user_agents (tenant_id, agent_id, created_at, id);

-- prompts: shared-or-owned.
alter table prompts enable row level security;
alter table prompts force row level security;
-- Serves: getPrompt, listPromptVersions, resolveAgent's prompt: global prompts and the tenant's own.
create policy prompts_select on prompts for select
  using (tenant_id is null or tenant_id = (select app.current_tenant_id()));
-- Serves: createPromptVersion; only for the current tenant, never a global prompt.
create policy prompts_insert on prompts for insert
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: no function (versions are immutable; app_cms has no UPDATE); the owner's updates bypass RLS.
create policy prompts_update on prompts for update
  using (tenant_id = (select app.current_tenant_id()))
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: no function (app_cms has no DELETE); deleting a tenant is the owner's.
create policy prompts_delete on prompts for delete
  using (tenant_id = (select app.current_tenant_id()));

-- tools: shared-or-owned.
alter table tools enable row level security;
alter table tools force row level security;
-- Serves: resolveAgent's tools, setAgentTools' check, getTool, listTools: global tools and the tenant's own.
create policy tools_select on tools for select
  using (tenant_id is null or tenant_id = (select app.current_tenant_id()));
-- Serves: createTool; only for the current tenant, never a global tool.
create policy tools_insert on tools for insert
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: updateTool; the tenant's own tools only, never moved to another tenant.
create policy tools_update on tools for update
  using (tenant_id = (select app.current_tenant_id()))
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: no function (app_cms has no DELETE); deleting a tenant is the owner's.
create policy tools_delete on tools for delete
  using (tenant_id = (select app.current_tenant_id()));

-- A prompt version is never changed: a new version is the edit (pinned agents keep theirs).
revoke update on prompts from app_cms;
