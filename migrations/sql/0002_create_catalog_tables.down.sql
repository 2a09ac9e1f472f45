-- Why: reverses 0002_create_catalog_tables (triggers and indexes go with their tables).

drop table tools;
drop table prompts;
drop table models;
drop table providers;
drop table role_policies;
drop table policies;
drop table roles;
