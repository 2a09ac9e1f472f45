-- Why: costSummary read every usage row of its range (1.1 s for 202,782 rows by day and model), so
-- it grew with the tenant. usage_rollups holds the same sums pre-aggregated, one row per tenant,
-- UTC day, user, model and agent (the groupings costSummary offers: model, user, agent; weeks and
-- months are unions of UTC days), and costSummary sums those rows for the whole days of its range,
-- reading usage itself only for the partial days at its ends.
--
-- Exact at every instant: the buckets are kept by a trigger on usage, in the statement (and so the
-- transaction) that writes the usage row: a charge and its bucket commit or roll back together,
-- whichever path wrote the row (recordUsage, settleUsage, importTenant, the owner's SQL). Money is
-- numeric and each charge adds to its bucket with INSERT … ON CONFLICT DO UPDATE, which never loses
-- an update: a concurrent charge of the same bucket waits for the row lock and adds to what the
-- first one left. Deleting usage (tenant deletion, a user's deletion: the owner's paths) takes the
-- row out of its bucket, and a bucket whose last call goes is deleted (calls > 0 always); an
-- UPDATE of usage (the owner's, or an agent's deletion setting agent_id NULL through the foreign
-- key) moves the row from its old bucket to its new one.
--
-- The bucket's day is the UTC day of usage.created_at, `(created_at at time zone 'UTC')::date`:
-- the day costSummary's full scan puts the row in (costSummary buckets by UTC day, ISO week and
-- month only; it has no time-zone parameter). Days, not hours: costSummary's `from`/`to` may fall
-- anywhere in a day, and it reads the rows of those two partial days from usage (the index
-- usage_tenant_created_idx), which bounds that part by two days of a tenant's usage; hourly
-- buckets would bound it to two hours but multiply the buckets of a user who charges a few times
-- a day by up to 24.
--
-- Keyed by user: concurrent charges of different users never wait for each other's bucket (a
-- per-tenant, per-day, per-model bucket would serialize a tenant's charges), and charges of one
-- budgeted user are serialized by the user's row lock already.
--
-- Who may write: no app role. The trigger function is SECURITY DEFINER (the owner), the table
-- grants SELECT to app_server alone (costSummary is the server's), and row-level security is
-- forced with one policy per operation, as on every tenant table. A forged total would need a
-- forged usage row, which only the gateway's charge path (or the owner) writes.
--
-- Citus: distributed by tenant_id and colocated with users (0020's conventions), the trigger
-- allowed with citus.enable_unsafe_triggers; on a shard the function writes the colocated shard of
-- usage_rollups (a query of the distributed table from inside a shard's query is refused).

create table usage_rollups (
  tenant_id     uuid not null,
  id            uuid not null default gen_random_uuid(),
  day           date not null,
  user_id       uuid not null,
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
comment on table usage_rollups is
  'Sums of usage per tenant, UTC day, user, model and agent, kept by the trigger usage_roll_up in the charge''s own statement; costSummary reads them. No app role writes it.';
comment on column usage_rollups.day is 'The UTC day of usage.created_at: (created_at at time zone ''UTC'')::date.';
comment on column usage_rollups.calls is 'Usage rows in the bucket; a bucket whose last row is deleted is deleted.';
-- Serves: the trigger's upsert of a charge's bucket (ON CONFLICT), and costSummary over whole days
-- (led by tenant_id and day). NULLS NOT DISTINCT: charges without an agent share one bucket.
create unique index usage_rollups_bucket_key on usage_rollups (tenant_id, day, user_id, model_id, agent_id) nulls not distinct;
-- Serves: the cascade from users (a user's deletion).
create index usage_rollups_tenant_user_idx on usage_rollups (tenant_id, user_id);

alter table usage_rollups enable row level security;
alter table usage_rollups force row level security;
-- Serves: costSummary (app_server).
create policy usage_rollups_select on usage_rollups for select
  using (tenant_id = (select app.current_tenant_id()));
-- Serves: nothing of the app (no app role may insert: the trigger runs as the owner); one policy per operation.
create policy usage_rollups_insert on usage_rollups for insert
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: nothing of the app (no app role may update: the trigger runs as the owner); one policy per operation.
create policy usage_rollups_update on usage_rollups for update
  using (tenant_id = (select app.current_tenant_id()))
  with check (tenant_id = (select app.current_tenant_id()));
-- Serves: nothing of the app (cascades, tenant deletion); one policy per operation.
create policy usage_rollups_delete on usage_rollups for delete
  using (tenant_id = (select app.current_tenant_id()));
grant select on usage_rollups to app_server;

-- Citus: distributed like every tenant table (0020), before the foreign key and the trigger.
do $citus$
begin
  if not exists (select from pg_extension where extname = 'citus') then
    return;
  end if;
  set local citus.multi_shard_modify_mode to 'sequential';
  set local citus.enable_unsafe_triggers to on;
  -- Citus refuses subqueries in the policies of distributed tables: app.current_tenant_id()
  -- directly, as 0020 does, before the table is distributed.
  alter policy usage_rollups_select on usage_rollups using (tenant_id = app.current_tenant_id());
  alter policy usage_rollups_insert on usage_rollups with check (tenant_id = app.current_tenant_id());
  alter policy usage_rollups_update on usage_rollups using (tenant_id = app.current_tenant_id())
    with check (tenant_id = app.current_tenant_id());
  alter policy usage_rollups_delete on usage_rollups using (tenant_id = app.current_tenant_id());
  perform create_distributed_table('public.usage_rollups', 'tenant_id', colocate_with => 'public.users');
end
$citus$;

alter table usage_rollups
  add constraint usage_rollups_user_fkey foreign key (tenant_id, user_id) references users (tenant_id, id) on delete cascade;

-- Serves: every INSERT, DELETE and bucket-changing UPDATE of usage (trigger usage_roll_up): the
-- row's amounts added to its bucket, taken out of it, or moved. SECURITY DEFINER: the buckets are
-- written as the owner, no app role has a grant to write them. On Citus the trigger fires on the
-- shard (usage_<shardid>), and writes the colocated shard of usage_rollups by name.
create function app.roll_up_usage() returns trigger
  language plpgsql
  security definer
  set search_path = pg_catalog, pg_temp
as $$
declare
  target text;
  removed bigint;
begin
  if tg_table_name <> 'usage' then
    select format('public.%I', 'usage_rollups_' || r.shardid) into strict target
    from pg_dist_shard u
    join pg_dist_shard r on r.logicalrelid = 'public.usage_rollups'::regclass and r.shardminvalue = u.shardminvalue
    where u.shardid = substring(tg_table_name from '_(\d+)$')::bigint;
  end if;
  if tg_op in ('UPDATE', 'DELETE') then
    if target is null then
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
    else
      execute format('delete from %s r where r.tenant_id = $1 and r.day = $2 and r.user_id = $3 and r.model_id = $4
                        and r.agent_id is not distinct from $5 and r.calls = 1', target)
        using old.tenant_id, (old.created_at at time zone 'UTC')::date, old.user_id, old.model_id, old.agent_id;
      get diagnostics removed = row_count; -- EXECUTE does not set FOUND
      if removed = 0 then
        execute format('update %s r set cost = r.cost - $6, input_tokens = r.input_tokens - $7, output_tokens = r.output_tokens - $8,
                          calls = r.calls - 1, updated_at = now()
                        where r.tenant_id = $1 and r.day = $2 and r.user_id = $3 and r.model_id = $4 and r.agent_id is not distinct from $5', target)
          using old.tenant_id, (old.created_at at time zone 'UTC')::date, old.user_id, old.model_id, old.agent_id,
                old.cost, old.input_tokens::bigint, old.output_tokens::bigint;
      end if;
    end if;
  end if;
  if tg_op in ('INSERT', 'UPDATE') then
    if target is null then
      insert into public.usage_rollups as r (tenant_id, day, user_id, model_id, agent_id, cost, input_tokens, output_tokens, calls)
      values (new.tenant_id, (new.created_at at time zone 'UTC')::date, new.user_id, new.model_id, new.agent_id,
              new.cost, new.input_tokens, new.output_tokens, 1)
      on conflict (tenant_id, day, user_id, model_id, agent_id) do update
      set cost = r.cost + excluded.cost, input_tokens = r.input_tokens + excluded.input_tokens,
          output_tokens = r.output_tokens + excluded.output_tokens, calls = r.calls + 1, updated_at = now();
    else
      execute format('insert into %s as r (tenant_id, day, user_id, model_id, agent_id, cost, input_tokens, output_tokens, calls)
                      values ($1, $2, $3, $4, $5, $6, $7, $8, 1)
                      on conflict (tenant_id, day, user_id, model_id, agent_id) do update
                      set cost = r.cost + excluded.cost, input_tokens = r.input_tokens + excluded.input_tokens,
                          output_tokens = r.output_tokens + excluded.output_tokens, calls = r.calls + 1, updated_at = now()', target)
        using new.tenant_id, (new.created_at at time zone 'UTC')::date, new.user_id, new.model_id, new.agent_id,
              new.cost, new.input_tokens::bigint, new.output_tokens::bigint;
    end if;
  end if;
  return null;
end
$$;
comment on function app.roll_up_usage() is
  'AFTER trigger on usage: keeps usage_rollups (one row per tenant, UTC day, user, model, agent) exact in the statement that writes usage.';
revoke all on function app.roll_up_usage() from public;

-- The lock keeps charges out until this transaction commits (the trigger then sees every new row):
-- the back-fill below reads every usage row committed before it, and no other.
lock table usage in share row exclusive mode;

-- Serves: every write of usage (see app.roll_up_usage). UPDATE only of the columns that choose the
-- bucket or hold its amounts (not message_id, which a message's deletion sets NULL).
create trigger usage_roll_up after insert or delete on usage
  for each row execute function app.roll_up_usage();
create trigger usage_roll_up_update
  after update of tenant_id, user_id, model_id, agent_id, cost, input_tokens, output_tokens, created_at on usage
  for each row
  when (old.tenant_id is distinct from new.tenant_id or old.user_id is distinct from new.user_id
        or old.model_id is distinct from new.model_id or old.agent_id is distinct from new.agent_id
        or old.cost is distinct from new.cost or old.input_tokens is distinct from new.input_tokens
        or old.output_tokens is distinct from new.output_tokens or old.created_at is distinct from new.created_at)
  execute function app.roll_up_usage();

-- The usage written so far.
insert into usage_rollups (tenant_id, day, user_id, model_id, agent_id, cost, input_tokens, output_tokens, calls)
select tenant_id, (created_at at time zone 'UTC')::date, user_id, model_id, agent_id,
       sum(cost), sum(input_tokens), sum(output_tokens), count(*)
from usage
group by tenant_id, (created_at at time zone 'UTC')::date, user_id, model_id, agent_id;
