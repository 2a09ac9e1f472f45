-- Why: reverses 0014_admin_functions.

do $$
declare
  fk record;
begin
  for fk in
    select c.conname, c.conrelid::regclass as rel from pg_constraint c
    where c.contype = 'f' and c.connamespace = 'public'::regnamespace
      and ((c.conrelid = 'public.messages'::regclass and c.confrelid = 'public.messages'::regclass)
           or (c.conrelid = 'public.conversations'::regclass and c.confrelid = 'public.messages'::regclass))
  loop
    execute format('alter table %s alter constraint %I not deferrable', fk.rel, fk.conname);
  end loop;
end
$$;

alter table tenants drop constraint tenants_settings_known;
drop function app.tenant_settings_problem(jsonb);
drop index users_tenant_created_idx;

drop function app.set_tenant_plan(text);
drop function app.set_user_api_key_hash(uuid, text);
drop function app.top_up_user_budget(uuid, numeric);
drop function app.set_user_budget(uuid, numeric, boolean);
drop function app.set_user_role(uuid, integer);
drop function app.set_user_status(uuid, text);
