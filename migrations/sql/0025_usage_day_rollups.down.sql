-- Back to 0021's trigger function (its text exactly as 0021 wrote it: the round-trip test compares
-- definitions as text), then usage_day_rollups and its stripe function go.
create or replace function app.roll_up_usage() returns trigger
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

drop table usage_day_rollups;
drop function app.usage_stripe(uuid);
