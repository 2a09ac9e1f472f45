-- Why: reverses 0010_sign_tenant_context: the policies read the setting app.tenant_id again.

revoke execute on function app.enter_tenant_context(uuid, bigint, text) from app_server, app_gateway, app_cms;
revoke execute on function app.open_tenant_context(bytea, bytea) from app_server, app_gateway, app_cms;

create or replace function app.current_tenant_id() returns uuid
  language sql
  stable
  parallel safe
as $$
  select nullif(current_setting('app.tenant_id', true), '')::uuid
$$;
comment on function app.current_tenant_id() is
  'The tenant of the current transaction (set by withTenant via set_config(..., true)), or NULL.';
grant execute on function app.current_tenant_id() to public;

drop function app.enter_tenant_context(uuid, bigint, text);
drop function app.open_tenant_context(bytea, bytea);
drop table app.tenant_contexts;
