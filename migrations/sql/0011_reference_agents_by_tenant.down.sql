-- Why: reverses 0011_reference_agents_by_tenant: tenant rows reference agents (id) alone again.

revoke select (scope) on agents from app_gateway;

alter table user_agents drop constraint user_agents_agent_id_fkey, drop constraint user_agents_agent_scope_check,
  drop column agent_scope;
alter table user_agents add constraint user_agents_agent_id_fkey foreign key (agent_id) references agents (id) on delete cascade;

alter table usage drop constraint usage_agent_id_fkey, drop constraint usage_agent_scope_check, drop column agent_scope;
alter table usage add constraint usage_agent_id_fkey foreign key (agent_id) references agents (id) on delete set null;

alter table resources drop constraint resources_agent_id_fkey, drop constraint resources_agent_scope_check,
  drop column agent_scope;
alter table resources add constraint resources_agent_id_fkey foreign key (agent_id) references agents (id) on delete set null;

alter table conversations drop constraint conversations_agent_id_fkey, drop constraint conversations_agent_scope_check,
  drop column agent_scope;
alter table conversations add constraint conversations_agent_id_fkey foreign key (agent_id) references agents (id) on delete set null;

alter table agents drop constraint agents_scope_id_key, drop constraint agents_tenant_id_not_nil, drop column scope;
