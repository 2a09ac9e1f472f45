-- Why: reverses 0019_shape_for_citus: agent_tools' policies look their agent up again.
drop function app.next_instant(timestamptz);
drop policy agent_tools_select on agent_tools;
drop policy agent_tools_insert on agent_tools;
drop policy agent_tools_delete on agent_tools;
alter table agent_tools
  drop constraint agent_tools_agent_id_fkey,
  add constraint agent_tools_agent_id_fkey foreign key (agent_id) references agents (id) on delete cascade,
  drop column agent_scope;
create policy agent_tools_select on agent_tools for select
  using (exists (select 1 from agents a where a.id = agent_tools.agent_id));
create policy agent_tools_insert on agent_tools for insert
  with check (exists (select 1 from agents a
                      where a.id = agent_tools.agent_id
                        and a.tenant_id = (select app.current_tenant_id())));
create policy agent_tools_delete on agent_tools for delete
  using (exists (select 1 from agents a
                 where a.id = agent_tools.agent_id
                   and a.tenant_id = (select app.current_tenant_id())));
drop function app.resolve_api_key(text, uuid);
