-- Why: costSummary summed usage_rollups (0021), one bucket per tenant, UTC day, user, model and
-- agent, so its cost grew with the tenant's active users until every user had used every model
-- and agent on every day: `npm run bench -- --growth` measured 2.99x (by day) and 2.70x (by day
-- and model) from 10k to 1M usage rows, against a goal of 2x (issue 18). A summary that does not
-- group by user does not need the user.
--
-- usage_day_rollups holds the same sums without the user: one row per tenant, UTC day, model,
-- agent and stripe, where the stripe is the last byte of the user's id modulo 8. A month is then at
-- most 31 x models x agents x 8 rows, however many users and charges the tenant has. costSummary
-- reads it for every grouping but by user (which keeps reading usage_rollups: its answer has a row
-- per user anyway).
--
-- Exact at every instant, as 0021: the same trigger function adds each usage row to both buckets in
-- the statement that writes it (and takes it out, or moves it). Why the stripe: without it every
-- charge of a tenant on one day, model and agent would update one row, and concurrent charges of
-- different users would wait for each other's transaction on it. With 8 stripes two charges meet
-- only when their users share a stripe; a charge waits for such a neighbour's transaction to end
-- (a charge is one short statement). Two transactions that each charge several users, in opposite
-- orders, can deadlock now also when their users only share stripes (SQLSTATE 40P01; as 0021's
-- note says of two unlimited users' buckets).
--
-- Who may write: nobody but the owner (the trigger is SECURITY DEFINER); app_server reads it
-- (costSummary is the server's); row-level security forced, as on every tenant table.

create table usage_day_rollups (
  tenant_id     uuid not null,
  id            uuid not null default gen_random_uuid(),
  day           date not null,
  stripe        smallint not null check (stripe between 0 and 7),
  model_id      integer not null,
  agent_id      uuid,
  cost          numeric not null check (cost >= 0),
  input_tokens  bigint not null check (input_tokens >= 0),
  output_tokens bigint not null check (output_tokens >= 0),
  calls         bigint not null check (calls > 0),
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now(),
  primary key (tenant_id, id)
);
comment on table usage_day_rollups is
  'Sums of usage per tenant, UTC day, model, agent and stripe (of the user), kept by the trigger usage_roll_up in the charge''s own statement; costSummary reads them for every grouping but by user. No app role writes it.';
comment on column usage_day_rollups.stripe is 'app.usage_stripe(user_id): spreads a day''s charges of different users over 8 rows.';
-- Serves: the trigger's upsert (ON CONFLICT), and costSummary over whole days (led by tenant_id and day).
create unique index usage_day_rollups_bucket_key on usage_day_rollups (tenant_id, day, model_id, agent_id, stripe) nulls not distinct;

alter table usage_day_rollups enable row level security;
alter table usage_day_rollups force row level security;
-- Serves: costSummary (app_server).
create policy usage_day_rollups_select on usage_day_rollups for select
  using (tenant_id = (select app.current_tenant_id()));
-- Serves: nothing of the app (no app role may insert: the trigger runs as the owner); one policy per operation.
create policy usage_day_rollups_insert on usage_day_rollups for insert
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: nothing of the app (no app role may update: the trigger runs as the owner); one policy per operation.
create policy usage_day_rollups_update on usage_day_rollups for update
  using (tenant_id = (select app.current_tenant_id()))
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: nothing of the app (tenant deletion); one policy per operation.
create policy usage_day_rollups_delete on usage_day_rollups for delete
  using (tenant_id = (select app.current_tenant_id()));
grant select on usage_day_rollups to app_server;

-- Serves: app.roll_up_usage and the back-fill below: the stripe of a user's buckets.
create function app.usage_stripe(user_id uuid) returns smallint
  language sql
  immutable
  parallel safe
as $$
  select (pg_catalog.get_byte(pg_catalog.uuid_send($1), 15) operator(pg_catalog.%) 8)::smallint
$$;
comment on function app.usage_stripe(uuid) is 'The stripe (0..7) of a user''s usage_day_rollups buckets: the last byte of its id modulo 8.';

-- Citus: distributed like every tenant table (0020), colocated with users.
do $citus$
begin
  if not exists (select from pg_extension where extname = 'citus') then
    return;
  end if;
  set local citus.multi_shard_modify_mode to 'sequential';
  alter policy usage_day_rollups_select on usage_day_rollups using (tenant_id = app.current_tenant_id());
  alter policy usage_day_rollups_insert on usage_day_rollups with check (tenant_id = app.current_tenant_id());
  alter policy usage_day_rollups_update on usage_day_rollups using (tenant_id = app.current_tenant_id())
    with check (tenant_id = app.current_tenant_id());
  alter policy usage_day_rollups_delete on usage_day_rollups using (tenant_id = app.current_tenant_id());
  perform create_distributed_table('public.usage_day_rollups', 'tenant_id', colocate_with => 'public.users');
end
$citus$;

-- Serves: every INSERT, DELETE and bucket-changing UPDATE of usage (triggers usage_roll_up and
-- usage_roll_up_update, 0021): the row's amounts added to, taken out of, or moved between its
-- bucket in usage_rollups (per user) and in usage_day_rollups (per stripe), in that order. Static
-- statements (plans kept for the session) on one server; on Citus the trigger fires on the shard
-- (usage_<shardid>) and writes the colocated shards by name.
create or replace function app.roll_up_usage() returns trigger
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  per_user text;
  per_day text;
  removed bigint;
begin
  if tg_table_name = 'usage' then
    if tg_op in ('UPDATE', 'DELETE') then
      delete from public.usage_rollups r
      where r.tenant_id = old.tenant_id and r.day = (old.created_at at time zone 'UTC')::date and r.user_id = old.user_id
        and r.model_id = old.model_id and r.agent_id is not distinct from old.agent_id and r.calls = 1;
      if not found then
        update public.usage_rollups r
        set cost = r.cost - old.cost, input_tokens = r.input_tokens - old.input_tokens,
            output_tokens = r.output_tokens - old.output_tokens, calls = r.calls - 1, updated_at = now()
        where r.tenant_id = old.tenant_id and r.day = (old.created_at at time zone 'UTC')::date and r.user_id = old.user_id
          and r.model_id = old.model_id and r.agent_id is not distinct from old.agent_id;
      end if;
      delete from public.usage_day_rollups r
      where r.tenant_id = old.tenant_id and r.day = (old.created_at at time zone 'UTC')::date and r.stripe = app.usage_stripe(old.user_id)
        and r.model_id = old.model_id and r.agent_id is not distinct from old.agent_id and r.calls = 1;
      if not found then
        update public.usage_day_rollups r
        set cost = r.cost - old.cost, input_tokens = r.input_tokens - old.input_tokens,
            output_tokens = r.output_tokens - old.output_tokens, calls = r.calls - 1, updated_at = now()
        where r.tenant_id = old.tenant_id and r.day = (old.created_at at time zone 'UTC')::date and r.stripe = app.usage_stripe(old.user_id)
          and r.model_id = old.model_id and r.agent_id is not distinct from old.agent_id;
      end if;
    end if;
    if tg_op in ('INSERT', 'UPDATE') then
      insert into public.usage_rollups as r (tenant_id, day, user_id, model_id, agent_id, cost, input_tokens, output_tokens, calls)
      values (new.tenant_id, (new.created_at at time zone 'UTC')::date, new.user_id, new.model_id, new.agent_id,
              new.cost, new.input_tokens, new.output_tokens, 1)
      on conflict (tenant_id, day, user_id, model_id, agent_id) do update
      set cost = r.cost + excluded.cost, input_tokens = r.input_tokens + excluded.input_tokens,
          output_tokens = r.output_tokens + excluded.output_tokens, calls = r.calls + 1, updated_at = now();
      insert into public.usage_day_rollups as r (tenant_id, day, stripe, model_id, agent_id, cost, input_tokens, output_tokens, calls)
      values (new.tenant_id, (new.created_at at time zone 'UTC')::date, app.usage_stripe(new.user_id), new.model_id, new.agent_id,
              new.cost, new.input_tokens, new.output_tokens, 1)
      on conflict (tenant_id, day, model_id, agent_id, stripe) do update
      set cost = r.cost + excluded.cost, input_tokens = r.input_tokens + excluded.input_tokens,
          output_tokens = r.output_tokens + excluded.output_tokens, calls = r.calls + 1, updated_at = now();
    end if;
    return null;
  end if;

  -- Citus: the colocated shards of the two rollup tables.
  select format('public.%I', 'usage_rollups_' || r.shardid), format('public.%I', 'usage_day_rollups_' || d.shardid)
    into strict per_user, per_day
  from pg_dist_shard u
  join pg_dist_shard r on r.logicalrelid = 'public.usage_rollups'::regclass and r.shardminvalue = u.shardminvalue
  join pg_dist_shard d on d.logicalrelid = 'public.usage_day_rollups'::regclass and d.shardminvalue = u.shardminvalue
  where u.shardid = substring(tg_table_name from '_(\d+)$')::bigint;
  if tg_op in ('UPDATE', 'DELETE') then
    execute format('delete from %s r where r.tenant_id = $1 and r.day = $2 and r.user_id = $3 and r.model_id = $4
                      and r.agent_id is not distinct from $5 and r.calls = 1', per_user)
      using old.tenant_id, (old.created_at at time zone 'UTC')::date, old.user_id, old.model_id, old.agent_id;
    get diagnostics removed = row_count; -- EXECUTE does not set FOUND
    if removed = 0 then
      execute format('update %s r set cost = r.cost - $6, input_tokens = r.input_tokens - $7, output_tokens = r.output_tokens - $8,
                        calls = r.calls - 1, updated_at = now()
                      where r.tenant_id = $1 and r.day = $2 and r.user_id = $3 and r.model_id = $4 and r.agent_id is not distinct from $5', per_user)
        using old.tenant_id, (old.created_at at time zone 'UTC')::date, old.user_id, old.model_id, old.agent_id,
              old.cost, old.input_tokens::bigint, old.output_tokens::bigint;
    end if;
    execute format('delete from %s r where r.tenant_id = $1 and r.day = $2 and r.stripe = $3 and r.model_id = $4
                      and r.agent_id is not distinct from $5 and r.calls = 1', per_day)
      using old.tenant_id, (old.created_at at time zone 'UTC')::date, app.usage_stripe(old.user_id), old.model_id, old.agent_id;
    get diagnostics removed = row_count;
    if removed = 0 then
      execute format('update %s r set cost = r.cost - $6, input_tokens = r.input_tokens - $7, output_tokens = r.output_tokens - $8,
                        calls = r.calls - 1, updated_at = now()
                      where r.tenant_id = $1 and r.day = $2 and r.stripe = $3 and r.model_id = $4 and r.agent_id is not distinct from $5', per_day)
        using old.tenant_id, (old.created_at at time zone 'UTC')::date, app.usage_stripe(old.user_id), old.model_id, old.agent_id,
              old.cost, old.input_tokens::bigint, old.output_tokens::bigint;
    end if;
  end if;
  if tg_op in ('INSERT', 'UPDATE') then
    execute format('insert into %s as r (tenant_id, day, user_id, model_id, agent_id, cost, input_tokens, output_tokens, calls)
                    values ($1, $2, $3, $4, $5, $6, $7, $8, 1)
                    on conflict (tenant_id, day, user_id, model_id, agent_id) do update
                    set cost = r.cost + excluded.cost, input_tokens = r.input_tokens + excluded.input_tokens,
                        output_tokens = r.output_tokens + excluded.output_tokens, calls = r.calls + 1, updated_at = now()', per_user)
      using new.tenant_id, (new.created_at at time zone 'UTC')::date, new.user_id, new.model_id, new.agent_id,
            new.cost, new.input_tokens::bigint, new.output_tokens::bigint;
    execute format('insert into %s as r (tenant_id, day, stripe, model_id, agent_id, cost, input_tokens, output_tokens, calls)
                    values ($1, $2, $3, $4, $5, $6, $7, $8, 1)
                    on conflict (tenant_id, day, model_id, agent_id, stripe) do update
                    set cost = r.cost + excluded.cost, input_tokens = r.input_tokens + excluded.input_tokens,
                        output_tokens = r.output_tokens + excluded.output_tokens, calls = r.calls + 1, updated_at = now()', per_day)
      using new.tenant_id, (new.created_at at time zone 'UTC')::date, app.usage_stripe(new.user_id), new.model_id, new.agent_id,
            new.cost, new.input_tokens::bigint, new.output_tokens::bigint;
  end if;
  return null;
end
$$;
comment on function app.roll_up_usage() is
  'AFTER trigger on usage: keeps usage_rollups (per tenant, UTC day, user, model, agent) and usage_day_rollups (per tenant, UTC day, model, agent, stripe) exact in the statement that writes usage.';

-- The lock keeps charges out until this transaction commits (the trigger then sees every new row):
-- the back-fill below reads every usage row committed before it, and no other.
lock table usage in share row exclusive mode;

-- The usage written so far.
insert into usage_day_rollups (tenant_id, day, stripe, model_id, agent_id, cost, input_tokens, output_tokens, calls)
select tenant_id, (created_at at time zone 'UTC')::date, app.usage_stripe(user_id), model_id, agent_id,
       sum(cost), sum(input_tokens), sum(output_tokens), count(*)
from usage
group by tenant_id, (created_at at time zone 'UTC')::date, app.usage_stripe(user_id), model_id, agent_id;
