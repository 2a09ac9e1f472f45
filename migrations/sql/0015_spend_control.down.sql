-- Why: reverses 0015_spend_control. Budgets become lifetime counters again: a user's remaining
-- keeps the value of its last window.

create or replace function app.tenant_settings_problem(settings jsonb) returns text
  language sql
  immutable
  parallel safe
  set search_path = pg_catalog, pg_temp
as $$
  select case
    when settings ? 'maxMonthlySpend'
         and not (jsonb_typeof(settings -> 'maxMonthlySpend') = 'number' and (settings ->> 'maxMonthlySpend')::numeric >= 0)
         and not (jsonb_typeof(settings -> 'maxMonthlySpend') = 'string' and (settings ->> 'maxMonthlySpend') ~ '^\d{1,20}(\.\d{1,20})?$')
      then 'maxMonthlySpend must be a non-negative decimal'
    when exists (
      select from unnest(array['allowedDomains', 'features']) k
      where settings ? k
        and (jsonb_typeof(settings -> k) <> 'array'
             or jsonb_array_length(settings -> k) > 100
             or exists (select from jsonb_array_elements(settings -> k) e
                        where jsonb_typeof(e) <> 'string' or (e #>> '{}') !~ '^\S{1,255}$')))
      then 'allowedDomains and features must be arrays of at most 100 strings of 1 to 255 characters without whitespace'
  end
$$;

drop table budget_alerts;
drop index usage_tenant_user_created_id_idx;
drop index usage_tenant_created_id_idx;

drop function app.set_user_budget_period(uuid, text, integer);
drop function app.finish_hold(uuid, text, uuid);
drop function app.reserve_budget(uuid, numeric, timestamptz);
drop function app.recount_holds(uuid);
drop table budget_holds;
drop function app.open_tenant_spend();
drop table tenant_spend;
drop function app.guard_tenant_spend();

drop trigger users_guard_remaining on users;
create or replace function app.guard_user_remaining() returns trigger
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
begin
  if new.remaining is not distinct from old.remaining
     or pg_has_role(current_user, (select c.relowner from pg_class c where c.oid = tg_relid), 'USAGE') then
    return new;
  end if;
  if old.remaining is null or new.remaining is null or new.remaining > old.remaining then
    raise exception 'role % may only lower users.remaining (by charging usage), not set it from % to %',
      current_user, coalesce(old.remaining::text, 'NULL'), coalesce(new.remaining::text, 'NULL')
      using errcode = '42501';
  end if;
  return new;
end
$$;
create trigger users_guard_remaining before update of remaining on users
  for each row execute function app.guard_user_remaining();

alter table users
  drop column held_until,
  drop column held,
  drop column budget_window_start,
  drop column budget_window_offset_ms,
  drop column budget_period;

drop function app.budget_window_end(text, integer, timestamptz);
drop function app.budget_window_start(text, integer, timestamptz);
