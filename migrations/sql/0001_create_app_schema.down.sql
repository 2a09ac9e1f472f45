-- Why: reverses 0001_create_app_schema.

revoke execute on function app.current_tenant_id() from app_user;
revoke usage on schema app from app_user;

drop function app.set_updated_at();
drop function app.current_tenant_id();
drop schema app;
drop extension if exists vector;

-- app_user is shared by every database on the server: drop it only when no other database still
-- grants it anything (DROP ROLE refuses with 2BP01 then).
do $$
begin
  drop role if exists app_user;
exception when dependent_objects_still_exist then
  raise notice 'role app_user is still used by another database on this server; kept';
end
$$;
