-- Why: the admin path (seed 000: "User, Role — server (auth/admin)"). Migration 0009 left no app
-- role a way to change money and rank: users.budget, remaining (up), role_id, status,
-- api_key_hash and tenants.plan have no grant, and a trigger refuses raising remaining. The
-- server's admin functions (setUserStatus, setUserRole, setBudget, topUpBudget, rotateApiKey,
-- revokeApiKey, updateTenant's plan) go through the SECURITY DEFINER functions below: owned by the
-- owner (so the remaining guard lets them pass), executable by app_server only, search_path
-- pinned, and acting only on the transaction's signed tenant, app.current_tenant_id() (no context:
-- nothing found). Each changes one thing and returns the id of the row it changed, or NULL when
-- there is no such row in the current tenant (another tenant's user behaves as missing).
-- Also: listUsers' keyset index; the known tenants.settings keys, checked by the database; and
-- the two foreign keys that point "backwards" in the tenant's foreign-key order (a message's
-- parent, a conversation's summary message) made DEFERRABLE INITIALLY IMMEDIATE, so that
-- importTenant can load a tenant's rows table by table and have them checked at its end. Every
-- other transaction checks them exactly as before (at the end of each statement).

-- Serves: setUserStatus. 'active' or 'disabled' (the column's check); a disabled user's API key
-- no longer resolves (app.resolve_api_key) and recordUsage refuses to charge it.
create function app.set_user_status(target uuid, new_status text) returns uuid
  language sql
  volatile
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  update public.users u set status = new_status
  where u.tenant_id = app.current_tenant_id() and u.id = target
  returning u.id
$$;
comment on function app.set_user_status(uuid, text) is
  'setUserStatus (app_server): a user of the current tenant becomes active or disabled; NULL when there is none.';

-- Serves: setUserRole. An unknown role is the foreign key's 23503 (users_role_id_fkey).
create function app.set_user_role(target uuid, new_role integer) returns uuid
  language sql
  volatile
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  update public.users u set role_id = new_role
  where u.tenant_id = app.current_tenant_id() and u.id = target
  returning u.id
$$;
comment on function app.set_user_role(uuid, integer) is
  'setUserRole (app_server): the role of a user of the current tenant; NULL when there is none.';

-- Serves: setBudget. NULL removes the limit (budget and remaining NULL). Otherwise what was spent
-- of the old budget stays spent: remaining = max(new budget - (old budget - old remaining), 0)
-- (the full new budget for a user who had none), or the full budget with `reset`. The UPDATE
-- locks the row: it waits for a charge in flight, and the charge after it sees the new remaining.
create function app.set_user_budget(target uuid, new_budget numeric, reset boolean) returns uuid
  language sql
  volatile
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  update public.users u
  set budget = new_budget,
      remaining = case
        when new_budget is null then null
        when reset or u.budget is null or u.remaining is null then new_budget
        else greatest(new_budget - (u.budget - u.remaining), 0)
      end
  where u.tenant_id = app.current_tenant_id() and u.id = target
  returning u.id
$$;
comment on function app.set_user_budget(uuid, numeric, boolean) is
  'setBudget (app_server): a user''s budget, keeping what was spent (or starting afresh with reset); NULL when there is none.';

-- Serves: topUpBudget. Adds `amount` to budget and remaining in one UPDATE: concurrent top-ups and
-- charges serialize on the row lock and each applies to the values the previous one left
-- (READ COMMITTED re-reads the row it waited for), so none is lost. A user without a budget (no
-- limit) is left alone: NULL, as for no user (the package tells the two apart).
create function app.top_up_user_budget(target uuid, amount numeric) returns uuid
  language sql
  volatile
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  update public.users u
  set budget = u.budget + amount, remaining = u.remaining + amount
  where u.tenant_id = app.current_tenant_id() and u.id = target
    and u.budget is not null and u.remaining is not null and amount > 0
  returning u.id
$$;
comment on function app.top_up_user_budget(uuid, numeric) is
  'topUpBudget (app_server): adds amount to budget and remaining of a budgeted user of the current tenant, atomically; NULL otherwise.';

-- Serves: rotateApiKey (a new hash: the old key stops resolving when the transaction commits) and
-- revokeApiKey (NULL: no key resolves). The package generates the key; only its hash comes here.
create function app.set_user_api_key_hash(target uuid, new_hash text) returns uuid
  language sql
  volatile
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  update public.users u set api_key_hash = new_hash
  where u.tenant_id = app.current_tenant_id() and u.id = target
  returning u.id
$$;
comment on function app.set_user_api_key_hash(uuid, text) is
  'rotateApiKey / revokeApiKey (app_server): the API key hash of a user of the current tenant (NULL revokes); NULL when there is none.';

-- Serves: updateTenant({ plan }). The plan is billing's, not a column any app role may write.
create function app.set_tenant_plan(new_plan text) returns uuid
  language sql
  volatile
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  update public.tenants t set plan = new_plan
  where t.id = app.current_tenant_id()
  returning t.id
$$;
comment on function app.set_tenant_plan(text) is
  'updateTenant (app_server): the plan of the current tenant.';

revoke all on function app.set_user_status(uuid, text) from public;
revoke all on function app.set_user_role(uuid, integer) from public;
revoke all on function app.set_user_budget(uuid, numeric, boolean) from public;
revoke all on function app.top_up_user_budget(uuid, numeric) from public;
revoke all on function app.set_user_api_key_hash(uuid, text) from public;
revoke all on function app.set_tenant_plan(text) from public;
grant execute on function app.set_user_status(uuid, text) to app_server;
grant execute on function app.set_user_role(uuid, integer) to app_server;
grant execute on function app.set_user_budget(uuid, numeric, boolean) to app_server;
grant execute on function app.top_up_user_budget(uuid, numeric) to app_server;
grant execute on function app.set_user_api_key_hash(uuid, text) to app_server;
grant execute on function app.set_tenant_plan(text) to app_server;

-- Serves: listUsers, a tenant's users newest first (keyset on created_at desc, id desc).
create index users_tenant_created_idx on users (tenant_id, created_at desc, id desc);

-- Serves: the check tenants_settings_known below (and nothing else). What is wrong with the known
-- keys of tenants.settings, or NULL: `maxMonthlySpend` a non-negative decimal (a JSON string such
-- as "1000.50", or a number; the tenant's spend cap per calendar month), `allowedDomains` and
-- `features` arrays of at most 100 non-empty strings without whitespace. The database checks only
-- these types; unknown keys are refused by updateTenant (src/queries/tenant-settings.ts, which
-- must agree with this function), so that settings written before this migration stay writable.
create function app.tenant_settings_problem(settings jsonb) returns text
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
comment on function app.tenant_settings_problem(jsonb) is
  'What is wrong with the known keys of tenants.settings (maxMonthlySpend, allowedDomains, features), or NULL.';
-- NOT VALID: rows stored before are not checked until they are written.
alter table tenants add constraint tenants_settings_known check (app.tenant_settings_problem(settings) is null) not valid;
comment on constraint tenants_settings_known on tenants is
  'The known settings keys have their types (app.tenant_settings_problem); NOT VALID: rows from before 0014 are checked when written.';

-- importTenant loads a tenant table by table in foreign-key order; these two point backwards in
-- it (a self-reference, and the conversations <-> messages cycle), so it defers them (SET
-- CONSTRAINTS … DEFERRED) to the end of its transaction. Found by what they link, not by name.
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
    execute format('alter table %s alter constraint %I deferrable initially immediate', fk.rel, fk.conname);
  end loop;
end
$$;
