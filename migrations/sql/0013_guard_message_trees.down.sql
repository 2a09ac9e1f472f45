-- Reverts 0013: the depth, its trigger and the parent foreign key through it; the plain
-- (tenant_id, parent_id) foreign key of 0003 comes back. Cycles can be written again after this.
drop trigger messages_set_depth_on_reparent on messages;
drop trigger messages_set_depth on messages;
drop function app.set_message_depth();
alter table messages
  drop constraint messages_parent_fkey,
  add constraint messages_tenant_id_parent_id_fkey
    foreign key (tenant_id, parent_id) references messages (tenant_id, id) on delete cascade;
alter table messages
  drop constraint messages_thread_key,
  drop constraint messages_depth_check,
  drop column parent_depth,
  drop column depth;
