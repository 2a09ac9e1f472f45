-- Why: reverses 0001_create_app_schema.

revoke execute on function app.current_tenant_id() from app_user;
revoke usage on schema app from app_user;

drop function app.set_updated_at();
drop function app.current_tenant_id();
drop schema app;
drop extension if exists vector;

-- app_user is shared by every database on the server: drop it only when no other database still
-- grants it anything (DROP ROLE refuses with 2BP01 then), and while it is no member of a role:
-- since 0009 it holds its rights through the service roles, which DROP ROLE does not count, so
-- another database at 0009 or later would lose it (the service roles stay while any database
-- grants them anything: 0009's down).
do $$
begin
  if exists (select from pg_auth_members m join pg_roles r on r.oid = m.member where r.rolname = 'app_user') then
    raise notice 'role app_user is a member of the service roles, which another database uses; kept';
    return;
  end if;
  drop role if exists app_user;
exception when dependent_objects_still_exist then
  raise notice 'role app_user is still used by another database on this server; kept';
end
$$;
