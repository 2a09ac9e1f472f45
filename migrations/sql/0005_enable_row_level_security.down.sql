-- Why: reverses 0005_enable_row_level_security.

revoke execute on function app.search_text(tsquery, integer, uuid, uuid, integer) from app_user;
drop function app.search_text(tsquery, integer, uuid, uuid, integer);

revoke execute on function app.resolve_api_key(text) from app_user;
drop function app.resolve_api_key(text);

drop policy agent_tools_delete on agent_tools;
drop policy agent_tools_insert on agent_tools;
drop policy agent_tools_select on agent_tools;
revoke select, insert, delete on agent_tools from app_user;
alter table agent_tools no force row level security;
alter table agent_tools disable row level security;

drop policy agents_delete on agents;
drop policy agents_update on agents;
drop policy agents_insert on agents;
drop policy agents_select on agents;
revoke select, insert, update, delete on agents from app_user;
alter table agents no force row level security;
alter table agents disable row level security;

drop policy vectors_delete on vectors;
drop policy vectors_update on vectors;
drop policy vectors_insert on vectors;
drop policy vectors_select on vectors;
revoke select, insert, update, delete on vectors from app_user;
alter table vectors no force row level security;
alter table vectors disable row level security;

drop policy usage_delete on usage;
drop policy usage_update on usage;
drop policy usage_insert on usage;
drop policy usage_select on usage;
revoke select, insert, update, delete on usage from app_user;
alter table usage no force row level security;
alter table usage disable row level security;

drop policy resources_delete on resources;
drop policy resources_update on resources;
drop policy resources_insert on resources;
drop policy resources_select on resources;
revoke select, insert, update, delete on resources from app_user;
alter table resources no force row level security;
alter table resources disable row level security;

drop policy messages_delete on messages;
drop policy messages_update on messages;
drop policy messages_insert on messages;
drop policy messages_select on messages;
revoke select, insert, update, delete on messages from app_user;
alter table messages no force row level security;
alter table messages disable row level security;

drop policy conversations_delete on conversations;
drop policy conversations_update on conversations;
drop policy conversations_insert on conversations;
drop policy conversations_select on conversations;
revoke select, insert, update, delete on conversations from app_user;
alter table conversations no force row level security;
alter table conversations disable row level security;

drop policy user_tools_delete on user_tools;
drop policy user_tools_update on user_tools;
drop policy user_tools_insert on user_tools;
drop policy user_tools_select on user_tools;
revoke select, insert, update, delete on user_tools from app_user;
alter table user_tools no force row level security;
alter table user_tools disable row level security;

drop policy user_agents_delete on user_agents;
drop policy user_agents_update on user_agents;
drop policy user_agents_insert on user_agents;
drop policy user_agents_select on user_agents;
revoke select, insert, update, delete on user_agents from app_user;
alter table user_agents no force row level security;
alter table user_agents disable row level security;

drop policy users_delete on users;
drop policy users_update on users;
drop policy users_insert on users;
drop policy users_select on users;
revoke select, insert, update, delete on users from app_user;
alter table users no force row level security;
alter table users disable row level security;

drop policy tenants_update on tenants;
drop policy tenants_select on tenants;
revoke select, update (name, plan, settings) on tenants from app_user;
alter table tenants no force row level security;
alter table tenants disable row level security;

revoke select (id, name, endpoint, created_at, updated_at) on providers from app_user;
revoke select on roles, policies, role_policies, models, prompts, tools from app_user;
revoke usage on schema public from app_user;
