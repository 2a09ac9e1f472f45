-- Why: spend control (issue 14). A user's budget gets a period (none = lifetime, as before; day,
-- week or month, UTC, ISO weeks) whose window resets without a scheduler: the charge that first
-- falls in a new window starts it again at the full budget, exactly, on the row it locks. A
-- tenant gets a spend cap per calendar month (tenants.settings.maxMonthlySpend, migration 0014)
-- counted in tenant_spend, one row per tenant locked by the charges that must fit it. A gateway
-- reserves budget before it knows a call's cost (budget_holds): an active hold counts against
-- the user's and the tenant's budget until it is settled, released or expires (computed at read,
-- no cron). A charge that takes a user's window or the tenant's month past a threshold of its
-- budget (tenants.settings.budgetAlertThresholds, default 80 and 100 percent) records one
-- budget_alerts row per window and threshold, in its own statement, and notifies channel
-- budget_alerts. Also: listUsage's keyset indexes.
--
-- The numbers a charge checks live on the rows it locks (users, tenant_spend), never in a sum read
-- beside them: a statement waiting for a row lock re-reads that row when it gets it (READ
-- COMMITTED), but its snapshot of other tables is as old as the statement. So users.held and
-- tenant_spend.held are what the active holds added up to when a reservation function last ran
-- under the lock, and held_until the latest expiry among them: a charge counts `held` until
-- held_until passes (never less than the active holds: no overspend; the reservation functions
-- recount it exactly).

-- Serves: recordUsage, reserveBudget, getUserBudget: the window a charge at `at` falls in.
-- NULL for 'none' (lifetime). `offset_ms` shifts the start of every day (and so of weeks and
-- months) by that much after 00:00 UTC; 0 for calendar windows. Immutable: plain UTC arithmetic.
create function app.budget_window_start(period text, offset_ms integer, at timestamptz) returns timestamptz
  language sql
  immutable
  parallel safe
as $$
  select case when period in ('day', 'week', 'month') then
    (pg_catalog.date_trunc(period, (at - offset_ms * interval '1 millisecond') at time zone 'UTC') at time zone 'UTC')
      + offset_ms * interval '1 millisecond'
  end
$$;
comment on function app.budget_window_start(text, integer, timestamptz) is
  'Start of the budget window (day, week = ISO week from Monday, month; UTC, shifted by offset_ms) that `at` falls in; NULL for none.';

-- Serves: getUserBudget (window end): the start of the window after the one `at` falls in.
create function app.budget_window_end(period text, offset_ms integer, at timestamptz) returns timestamptz
  language sql
  immutable
  parallel safe
as $$
  select case when period in ('day', 'week', 'month') then
    ((pg_catalog.date_trunc(period, (at - offset_ms * interval '1 millisecond') at time zone 'UTC')
        + case period when 'day' then interval '1 day' when 'week' then interval '7 days' else interval '1 month' end)
      at time zone 'UTC') + offset_ms * interval '1 millisecond'
  end
$$;
comment on function app.budget_window_end(text, integer, timestamptz) is
  'End (exclusive) of the budget window that `at` falls in; NULL for none.';

alter table users
  add column budget_period text not null default 'none' check (budget_period in ('none', 'day', 'week', 'month')),
  add column budget_window_offset_ms integer not null default 0 check (budget_window_offset_ms between 0 and 86399999),
  add column budget_window_start timestamptz,
  add column held numeric not null default 0 check (held >= 0),
  add column held_until timestamptz;
comment on column users.budget_period is 'none (lifetime), day, week or month: the window `remaining` is of (UTC, ISO weeks).';
comment on column users.budget_window_offset_ms is 'The user''s windows start this many ms after 00:00 UTC (0: calendar days, weeks, months).';
comment on column users.budget_window_start is 'Start of the window `remaining` belongs to (NULL: lifetime, or no charge yet); a charge in a later window starts again at the full budget.';
comment on column users.held is 'Sum of the user''s active holds when a reservation function last counted them (under the row lock).';
comment on column users.held_until is 'Latest expiry among those holds: after it, `held` no longer counts.';

-- The gateway reads the period and the holds, and moves the window on (the trigger checks how).
grant select (budget_period, budget_window_offset_ms, budget_window_start, held, held_until) on users to app_server, app_gateway;
grant update (budget_window_start) on users to app_gateway;

-- Serves: every UPDATE of users' remaining or budget_window_start (replaces 0009's version). An
-- app role may lower remaining (a charge); it may raise it only together with moving
-- budget_window_start on to the window the transaction's instant falls in (the charge that opens
-- a new window), and never above the budget. The owner, and SECURITY DEFINER functions owned by
-- it (the admin and reservation paths), pass.
create or replace function app.guard_user_remaining() returns trigger
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
begin
  if (new.remaining is not distinct from old.remaining and new.budget_window_start is not distinct from old.budget_window_start)
     or pg_has_role(current_user, (select c.relowner from pg_class c where c.oid = tg_relid), 'USAGE') then
    return new;
  end if;
  if new.budget_window_start is distinct from old.budget_window_start then
    if new.budget_window_start is null
       or new.budget_window_start is distinct from app.budget_window_start(new.budget_period, new.budget_window_offset_ms, now())
       or (old.budget_window_start is not null and new.budget_window_start <= old.budget_window_start)
       or new.remaining is null or new.budget is null or new.remaining > new.budget then
      raise exception 'role % may move users.budget_window_start only on to the current window (at most the full budget)', current_user
        using errcode = '42501';
    end if;
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
drop trigger users_guard_remaining on users;
create trigger users_guard_remaining before update of remaining, budget_window_start on users
  for each row execute function app.guard_user_remaining();

-- A tenant's spend in its current calendar month (UTC), for the cap tenants.settings.maxMonthlySpend.
create table tenant_spend (
  tenant_id    uuid not null references tenants (id) on delete cascade,
  window_start timestamptz not null,
  spent        numeric not null default 0 check (spent >= 0),
  held         numeric not null default 0 check (held >= 0),
  held_until   timestamptz,
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  primary key (tenant_id)
);
comment on table tenant_spend is 'The tenant''s spend in the month starting at window_start, and its active holds (see users.held); one row per tenant, created by app.open_tenant_spend.';
create trigger tenant_spend_set_updated_at before update on tenant_spend
  for each row execute function app.set_updated_at();

alter table tenant_spend enable row level security;
alter table tenant_spend force row level security;
-- Serves: the charge's lock and read of the tenant's spend, getTenantSpend.
create policy tenant_spend_select on tenant_spend for select
  using (tenant_id = (select app.current_tenant_id()));
-- Serves: app.open_tenant_spend (the owner's function), importTenant.
create policy tenant_spend_insert on tenant_spend for insert
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: the charge adding its cost to spent.
create policy tenant_spend_update on tenant_spend for update
  using (tenant_id = (select app.current_tenant_id()))
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: nothing of the app (tenant deletion runs as the owner); one policy per operation.
create policy tenant_spend_delete on tenant_spend for delete
  using (tenant_id = (select app.current_tenant_id()));
grant select on tenant_spend to app_server, app_gateway;
grant update (spent, window_start) on tenant_spend to app_gateway;

-- Serves: every UPDATE of tenant_spend. An app role (the gateway's charge) may only raise spent
-- within a window, or move window_start on to the current month (the transaction's instant),
-- which starts spent again. held and held_until change only through the reservation functions.
create function app.guard_tenant_spend() returns trigger
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
begin
  if pg_has_role(current_user, (select c.relowner from pg_class c where c.oid = tg_relid), 'USAGE') then
    return new;
  end if;
  if new.held is distinct from old.held or new.held_until is distinct from old.held_until then
    raise exception 'role % may not change tenant_spend.held', current_user using errcode = '42501';
  end if;
  if new.window_start is distinct from old.window_start then
    if new.window_start is distinct from app.budget_window_start('month', 0, now()) or new.window_start <= old.window_start then
      raise exception 'role % may move tenant_spend.window_start only on to the current month', current_user using errcode = '42501';
    end if;
    return new;
  end if;
  if new.spent < old.spent then
    raise exception 'role % may only raise tenant_spend.spent (by charging usage)', current_user using errcode = '42501';
  end if;
  return new;
end
$$;
comment on function app.guard_tenant_spend() is
  'BEFORE UPDATE trigger on tenant_spend: an app role may only add to spent, or start the current month afresh.';
create trigger tenant_spend_guard before update on tenant_spend
  for each row execute function app.guard_tenant_spend();

-- Serves: recordUsage, the first charge of a tenant with a cap: creates its tenant_spend row (the
-- current month, nothing spent) when there is none. SECURITY DEFINER: no app role inserts spend.
create function app.open_tenant_spend() returns void
  language sql
  volatile
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  insert into public.tenant_spend (tenant_id, window_start)
  select app.current_tenant_id(), app.budget_window_start('month', 0, now())
  where app.current_tenant_id() is not null
  on conflict (tenant_id) do nothing
$$;
comment on function app.open_tenant_spend() is
  'recordUsage, reserveBudget (app_gateway): the current tenant''s tenant_spend row, created when missing.';

-- Reservations: budget held for a call whose cost is not known yet.
create table budget_holds (
  tenant_id   uuid not null references tenants (id) on delete cascade,
  id          uuid not null default gen_random_uuid(),
  user_id     uuid not null,
  amount      numeric not null check (amount > 0),
  expires_at  timestamptz not null,
  status      text not null default 'held' check (status in ('held', 'settled', 'released')),
  usage_id    uuid,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, user_id) references users (tenant_id, id) on delete cascade,
  foreign key (tenant_id, usage_id) references usage (tenant_id, id) on delete cascade
);
comment on table budget_holds is 'A reservation: `amount` held against the user''s (and tenant''s) budget until settled, released or expires_at (an expired hold is status held with expires_at passed).';
create trigger budget_holds_set_updated_at before update on budget_holds
  for each row execute function app.set_updated_at();
-- Serves: the active holds of a user (reserveBudget, settleUsage, releaseReservation recount them; getUserBudget).
create index budget_holds_tenant_user_active_idx on budget_holds (tenant_id, user_id, expires_at) where status = 'held';
-- Serves: the active holds of a tenant (the cap's share of reserveBudget and the recounts).
create index budget_holds_tenant_active_idx on budget_holds (tenant_id, expires_at) where status = 'held';
-- Serves: the cascade from usage (a user's deletion) to the hold it settled.
create index budget_holds_tenant_usage_idx on budget_holds (tenant_id, usage_id) where usage_id is not null;

alter table budget_holds enable row level security;
alter table budget_holds force row level security;
-- Serves: getReservation, getUserBudget's held, the reservation functions' recounts.
create policy budget_holds_select on budget_holds for select
  using (tenant_id = (select app.current_tenant_id()));
-- Serves: app.reserve_budget (the owner's function), importTenant.
create policy budget_holds_insert on budget_holds for insert
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: app.finish_hold (settle and release).
create policy budget_holds_update on budget_holds for update
  using (tenant_id = (select app.current_tenant_id()))
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: nothing of the app (cascades and tenant deletion); one policy per operation.
create policy budget_holds_delete on budget_holds for delete
  using (tenant_id = (select app.current_tenant_id()));
grant select on budget_holds to app_server, app_gateway;

-- Serves: the reservation functions. Counts the active holds (status held, not expired at the
-- transaction's instant) of the user and of the tenant again, and stores them with their latest
-- expiry on the users and tenant_spend rows (which the caller has locked).
create function app.recount_holds(target uuid) returns void
  language sql
  volatile
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  update public.users u
  set held = coalesce(h.total, 0), held_until = h.until
  from (select sum(amount) as total, max(expires_at) as until from public.budget_holds
        where tenant_id = app.current_tenant_id() and user_id = target and status = 'held' and expires_at > now()) h
  where u.tenant_id = app.current_tenant_id() and u.id = target;
  update public.tenant_spend s
  set held = coalesce(h.total, 0), held_until = h.until
  from (select sum(amount) as total, max(expires_at) as until from public.budget_holds
        where tenant_id = app.current_tenant_id() and status = 'held' and expires_at > now()) h
  where s.tenant_id = app.current_tenant_id();
$$;
comment on function app.recount_holds(uuid) is
  'Reservation functions: users.held/held_until of one user and tenant_spend.held/held_until, counted again from the active holds.';

-- Serves: reserveBudget. Locks the user's row (and the tenant's spend row when the tenant has a
-- cap), so that reservations and charges of the user are serialized, and admits the hold only
-- when it fits both what is left of the user's window (less its other active holds) and of the
-- tenant's month. Returns one row: outcome 'held' (with the hold's id), 'user' or 'tenant'
-- (the limit that refused it, with what was available), or 'missing' (no such active user).
create function app.reserve_budget(target uuid, hold_amount numeric, hold_expires timestamptz)
  returns table (outcome text, hold_id uuid, available text)
  language plpgsql
  volatile
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  tenant uuid := app.current_tenant_id();
  u record;
  cap numeric;
  s record;
  user_left numeric;
  user_held numeric;
  tenant_left numeric;
  tenant_held numeric;
  new_id uuid;
begin
  select x.budget, x.remaining, x.budget_period, x.budget_window_offset_ms, x.budget_window_start, x.status into u
  from public.users x where x.tenant_id = tenant and x.id = target for no key update;
  if not found or u.status <> 'active' then
    return query select 'missing'::text, null::uuid, null::text;
    return;
  end if;
  select (t.settings ->> 'maxMonthlySpend')::numeric into cap from public.tenants t where t.id = tenant;
  if cap is not null then
    perform app.open_tenant_spend();
    select x.window_start, x.spent into s from public.tenant_spend x where x.tenant_id = tenant for no key update;
  end if;
  -- New statements: they see every hold committed before the locks were granted.
  if u.remaining is not null then
    select coalesce(sum(amount), 0) into user_held from public.budget_holds
    where tenant_id = tenant and user_id = target and status = 'held' and expires_at > now();
    user_left := case
      when u.budget_period <> 'none' and (u.budget_window_start is null
        or u.budget_window_start < app.budget_window_start(u.budget_period, u.budget_window_offset_ms, now()))
      then u.budget else u.remaining end - user_held;
    if user_left < hold_amount then
      return query select 'user'::text, null::uuid, trim_scale(greatest(user_left, 0))::text;
      return;
    end if;
  end if;
  if cap is not null then
    select coalesce(sum(amount), 0) into tenant_held from public.budget_holds
    where tenant_id = tenant and status = 'held' and expires_at > now();
    tenant_left := cap - case when s.window_start >= app.budget_window_start('month', 0, now()) then s.spent else 0 end - tenant_held;
    if tenant_left < hold_amount then
      return query select 'tenant'::text, null::uuid, trim_scale(greatest(tenant_left, 0))::text;
      return;
    end if;
  end if;
  insert into public.budget_holds (tenant_id, user_id, amount, expires_at)
  values (tenant, target, hold_amount, hold_expires) returning id into new_id;
  perform app.recount_holds(target);
  return query select 'held'::text, new_id, null::text;
end
$$;
comment on function app.reserve_budget(uuid, numeric, timestamptz) is
  'reserveBudget (app_gateway): holds an amount against the user''s window and the tenant''s month when it fits both.';

-- Serves: settleUsage ('settled', with the usage row) and releaseReservation ('released'). Locks
-- the hold's user, ends the hold when it is still held (expired or not) and recounts the holds.
-- Returns the hold's user and amount, and whether it was still held (false: settled or released
-- before); no row when there is no such hold in the current tenant.
create function app.finish_hold(hold uuid, new_status text, settled_usage uuid)
  returns table (user_id uuid, amount text, was_held boolean)
  language plpgsql
  volatile
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  tenant uuid := app.current_tenant_id();
  h record;
begin
  if new_status not in ('settled', 'released') then
    raise exception 'finish_hold: status must be settled or released' using errcode = '22023';
  end if;
  select x.user_id, x.amount into h from public.budget_holds x where x.tenant_id = tenant and x.id = hold;
  if not found then
    return;
  end if;
  perform 1 from public.users x where x.tenant_id = tenant and x.id = h.user_id for no key update;
  perform 1 from public.tenant_spend x where x.tenant_id = tenant for no key update;
  update public.budget_holds x set status = new_status, usage_id = settled_usage
  where x.tenant_id = tenant and x.id = hold and x.status = 'held';
  if found then
    perform app.recount_holds(h.user_id);
    return query select h.user_id, trim_scale(h.amount)::text, true;
  else
    return query select h.user_id, trim_scale(h.amount)::text, false;
  end if;
end
$$;
comment on function app.finish_hold(uuid, text, uuid) is
  'settleUsage / releaseReservation (app_gateway): ends a hold of the current tenant and recounts the holds.';

revoke all on function app.open_tenant_spend() from public;
revoke all on function app.recount_holds(uuid) from public;
revoke all on function app.reserve_budget(uuid, numeric, timestamptz) from public;
revoke all on function app.finish_hold(uuid, text, uuid) from public;
grant execute on function app.open_tenant_spend() to app_gateway;
grant execute on function app.reserve_budget(uuid, numeric, timestamptz) to app_gateway;
grant execute on function app.finish_hold(uuid, text, uuid) to app_gateway;

-- Serves: setBudget({ period }). Sets the period and the window offset of a user of the current
-- tenant and starts a new window at the full budget (the next charge opens it). NULL when there
-- is no such user.
create function app.set_user_budget_period(target uuid, new_period text, new_offset_ms integer) returns uuid
  language sql
  volatile
  security definer
  set search_path = pg_catalog, pg_temp
as $$
  update public.users u
  set budget_period = new_period, budget_window_offset_ms = new_offset_ms,
      budget_window_start = null, remaining = u.budget
  where u.tenant_id = app.current_tenant_id() and u.id = target
  returning u.id
$$;
comment on function app.set_user_budget_period(uuid, text, integer) is
  'setBudget (app_server): the budget period of a user of the current tenant; the window starts again at the full budget.';
revoke all on function app.set_user_budget_period(uuid, text, integer) from public;
grant execute on function app.set_user_budget_period(uuid, text, integer) to app_server;

-- Serves: listUsage, the spend log newest first (keyset on created_at desc, id desc) for the
-- tenant, a user, a model or an agent (the older (tenant_id, …, created_at) indexes of 0003 serve
-- costSummary's ascending ranges; these add the id for the keyset).
create index usage_tenant_created_id_idx on usage (tenant_id, created_at desc, id desc);
create index usage_tenant_user_created_id_idx on usage (tenant_id, user_id, created_at desc, id desc);

-- Alerts: a user's or the tenant's spend crossing a threshold of its budget, once per window.
create table budget_alerts (
  tenant_id    uuid not null references tenants (id) on delete cascade,
  id           uuid not null default gen_random_uuid(),
  -- NULL: the tenant's monthly cap.
  user_id      uuid,
  scope        text not null check (scope in ('user', 'tenant')),
  -- The window crossed in ('-infinity' for a lifetime budget).
  window_start timestamptz not null,
  -- Percent of the budget (80, 100, ...).
  threshold    integer not null check (threshold between 1 and 1000),
  severity     text not null check (severity in ('warning', 'critical')),
  budget       numeric not null,
  spent        numeric not null,
  usage_id     uuid not null,
  resolved_at  timestamptz,
  created_at   timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, user_id) references users (tenant_id, id) on delete cascade,
  foreign key (tenant_id, usage_id) references usage (tenant_id, id) on delete cascade,
  check ((scope = 'user') = (user_id is not null))
);
comment on table budget_alerts is 'A charge that took spend past a threshold of a budget: recorded once per budget, window and threshold, in the charging transaction.';
-- Serves: recordUsage's ON CONFLICT DO NOTHING: one alert per user (or the tenant), window and threshold.
create unique index budget_alerts_once_idx on budget_alerts (tenant_id, coalesce(user_id, tenant_id), window_start, threshold);
-- Serves: listBudgetAlerts, newest first (keyset on created_at desc, id desc), open or resolved.
create index budget_alerts_tenant_created_idx on budget_alerts (tenant_id, created_at desc, id desc);
-- Serves: the cascade from usage to the alert its charge raised.
create index budget_alerts_tenant_usage_idx on budget_alerts (tenant_id, usage_id);

alter table budget_alerts enable row level security;
alter table budget_alerts force row level security;
-- Serves: listBudgetAlerts.
create policy budget_alerts_select on budget_alerts for select
  using (tenant_id = (select app.current_tenant_id()));
-- Serves: recordUsage and settleUsage (the gateway's charge statement).
create policy budget_alerts_insert on budget_alerts for insert
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: resolveBudgetAlert.
create policy budget_alerts_update on budget_alerts for update
  using (tenant_id = (select app.current_tenant_id()))
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: nothing of the app (cascades and tenant deletion); one policy per operation.
create policy budget_alerts_delete on budget_alerts for delete
  using (tenant_id = (select app.current_tenant_id()));
grant select, insert on budget_alerts to app_gateway;
grant select, update (resolved_at) on budget_alerts to app_server;

-- Serves: the check tenants_settings_known (replaces 0014's version): adds budgetAlertThresholds,
-- the percentages of a budget whose crossing records an alert (default 80 and 100; see
-- src/queries/tenant-settings.ts, which must agree).
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
    when settings ? 'budgetAlertThresholds'
         and (jsonb_typeof(settings -> 'budgetAlertThresholds') <> 'array'
              or jsonb_array_length(settings -> 'budgetAlertThresholds') > 10
              or exists (select from jsonb_array_elements(settings -> 'budgetAlertThresholds') e
                         where case when jsonb_typeof(e) = 'number' and (e #>> '{}') ~ '^\d{1,4}$'
                                    then (e #>> '{}')::integer not between 1 and 1000 else true end))
      then 'budgetAlertThresholds must be an array of at most 10 whole percentages from 1 to 1000'
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

