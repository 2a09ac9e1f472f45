-- Why: reverses 0016_cms_catalog_writes. Tenant-owned prompts and tools are deleted (the
-- catalog's unique names cannot hold them): agents lose such a prompt (set null) and such tools
-- (cascade), users their credentials for them (cascade).

grant update on prompts to app_cms;

drop policy tools_delete on tools;
drop policy tools_update on tools;
drop policy tools_insert on tools;
drop policy tools_select on tools;
alter table tools no force row level security;
alter table tools disable row level security;

drop policy prompts_delete on prompts;
drop policy prompts_update on prompts;
drop policy prompts_insert on prompts;
drop policy prompts_select on prompts;
alter table prompts no force row level security;
alter table prompts disable row level security;

drop index user_agents_tenant_agent_created_idx;

delete from tools where tenant_id is not null;
drop index tools_tenant_idx;
alter table tools
  drop constraint tools_scope_name_key,
  drop column scope,
  drop column tenant_id;
alter table tools add constraint tools_name_key unique (name);

delete from prompts where tenant_id is not null;
alter table prompts
  drop constraint prompts_scope_name_version_key,
  drop column scope,
  drop column tenant_id;
alter table prompts add constraint prompts_name_version_key unique (name, version);

alter table agents
  drop column prompt_follows_latest,
  drop column retired_at;
