-- Why: reverses 0003_create_tenant_tables (indexes, triggers and foreign keys go with their tables).

drop table usage;
drop table resources;
alter table conversations drop constraint conversations_tenant_id_summary_message_id_fkey;
drop table messages;
drop table conversations;
drop table user_tools;
drop table user_agents;
drop table agent_tools;
drop table agents;
drop table users;
drop table tenants;
