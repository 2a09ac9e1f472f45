-- Why: conversations, resources, usage and user_agents referenced agents (id) alone. A foreign-key
-- check bypasses row-level security, so SQL run by a service inside its own tenant could point a
-- row at another tenant's agent, and the outcome (accepted, or 23503) told whether an agent id
-- existed anywhere. Now each of these rows carries its agent's scope, agent_scope: the row's own
-- tenant_id for a tenant agent, the nil UUID for a global agent (a check allows nothing else), and
-- references agents (scope, id), where agents.scope is tenant_id, or the nil UUID for a global
-- agent (a generated column). Another tenant's agent then matches no key, exactly like an id that
-- does not exist: the same 23503, naming the same constraint.
--
-- The shape, and what was not chosen:
--   * A composite key (tenant_id, agent_id) -> agents (tenant_id, id) cannot match a global agent:
--     its tenant_id is NULL, and a foreign key never matches NULL. Hence the nil UUID standing for
--     "global" on both sides (agents_tenant_id_not_nil keeps it from ever naming a tenant).
--   * MATCH FULL: agent_scope and agent_id are both NULL (no agent) or both set. Under the default
--     MATCH SIMPLE a row could leave agent_scope NULL and skip the check altogether.
--   * A constraint trigger (is the agent global or the row's tenant's?) would cost a PL/pgSQL call
--     per row on the hot inserts, and Citus refuses triggers on distributed tables without
--     citus.enable_unsafe_triggers. A foreign key is one index probe, as before: agents_scope_id_key
--     instead of agents_pkey. The cost is 16 bytes per row and writers naming agent_scope (the
--     query functions take it from the agent they checked).
--   * Citus: agents is to be a reference table and these four tables distributed by tenant_id;
--     Citus accepts foreign keys from a distributed table to a reference table, so this shape does
--     not make distribution harder. What Citus cannot have is a reference -> distributed key:
--     agents (tenant_id, user_id) -> users from 0003, unchanged here. Not tried on Citus: a
--     generated column in a reference table's unique key, and MATCH FULL / ON DELETE SET NULL on a
--     distributed -> reference key.
-- agent_tools has no tenant_id (it is shared-or-owned like agents) and keeps agents (id).

alter table agents
  add column scope uuid not null
    generated always as (coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)) stored,
  add constraint agents_tenant_id_not_nil check (tenant_id <> '00000000-0000-0000-0000-000000000000'::uuid),
  -- Serves: the foreign keys (agent_scope, agent_id) of conversations, resources, usage, user_agents.
  add constraint agents_scope_id_key unique (scope, id);
comment on column agents.scope is
  'tenant_id, or the nil UUID for a global agent: what tenant rows reference with (agent_scope, agent_id).';

-- Rows that point at another tenant's agent (only raw SQL could write them) lose that reference,
-- as they would if the agent were deleted (set null; user_agents rows are deleted, as by the cascade).
update conversations c set agent_id = null
  from agents a where a.id = c.agent_id and a.tenant_id <> c.tenant_id;
update resources r set agent_id = null
  from agents a where a.id = r.agent_id and a.tenant_id <> r.tenant_id;
update usage u set agent_id = null
  from agents a where a.id = u.agent_id and a.tenant_id <> u.tenant_id;
delete from user_agents ua
  using agents a where a.id = ua.agent_id and a.tenant_id <> ua.tenant_id;

alter table conversations drop constraint conversations_agent_id_fkey, add column agent_scope uuid;
update conversations c set agent_scope = a.scope from agents a where a.id = c.agent_id;
alter table conversations
  add constraint conversations_agent_scope_check
    check (agent_scope = tenant_id or agent_scope = '00000000-0000-0000-0000-000000000000'::uuid),
  add constraint conversations_agent_id_fkey foreign key (agent_scope, agent_id)
    references agents (scope, id) match full on delete set null;
comment on column conversations.agent_scope is 'The agent''s scope (agents.scope): tenant_id, or the nil UUID for a global agent.';

alter table resources drop constraint resources_agent_id_fkey, add column agent_scope uuid;
update resources r set agent_scope = a.scope from agents a where a.id = r.agent_id;
alter table resources
  add constraint resources_agent_scope_check
    check (agent_scope = tenant_id or agent_scope = '00000000-0000-0000-0000-000000000000'::uuid),
  add constraint resources_agent_id_fkey foreign key (agent_scope, agent_id)
    references agents (scope, id) match full on delete set null;
comment on column resources.agent_scope is 'The agent''s scope (agents.scope): tenant_id, or the nil UUID for a global agent.';

alter table usage drop constraint usage_agent_id_fkey, add column agent_scope uuid;
update usage u set agent_scope = a.scope from agents a where a.id = u.agent_id;
alter table usage
  add constraint usage_agent_scope_check
    check (agent_scope = tenant_id or agent_scope = '00000000-0000-0000-0000-000000000000'::uuid),
  add constraint usage_agent_id_fkey foreign key (agent_scope, agent_id)
    references agents (scope, id) match full on delete set null;
comment on column usage.agent_scope is 'The agent''s scope (agents.scope): tenant_id, or the nil UUID for a global agent.';

alter table user_agents drop constraint user_agents_agent_id_fkey, add column agent_scope uuid;
update user_agents ua set agent_scope = a.scope from agents a where a.id = ua.agent_id;
alter table user_agents
  alter column agent_scope set not null,
  add constraint user_agents_agent_scope_check
    check (agent_scope = tenant_id or agent_scope = '00000000-0000-0000-0000-000000000000'::uuid),
  add constraint user_agents_agent_id_fkey foreign key (agent_scope, agent_id)
    references agents (scope, id) on delete cascade;
comment on column user_agents.agent_scope is 'The agent''s scope (agents.scope): tenant_id, or the nil UUID for a global agent.';

-- What a charge writes: the scope of the agent it checked (recordUsage's refs).
grant select (scope) on agents to app_gateway;
