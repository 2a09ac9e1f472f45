-- Why: a message tree could hold a cycle (any writer could `update messages set parent_id = …`
-- so that A → B → A), a parent in another conversation of the tenant (only appendMessage checked
-- that), and chains of any length; getThread's walk then depended on the planner's statistics
-- (30 s at depth 10,000 under stale ones, and on a 2-message cycle).
--
-- Every message now stores its `depth` in its thread (0 for a root), and the parent link is one
-- composite foreign key from (tenant_id, conversation_id, parent_id, parent_depth) to
-- (tenant_id, conversation_id, id, depth), where parent_depth is generated as depth - 1. So the
-- parent is a message of the same tenant and conversation whose depth is exactly one less, for
-- every row, whoever writes (the owner's raw SQL included): along a cycle the depth would have to
-- decrease forever, so no cycle can be stored. This is PostgreSQL's own foreign-key machinery,
-- exact under concurrency: a new child locks its parent's key (FOR KEY SHARE), and a parent's
-- key (its depth, its conversation) cannot change while a child references it (NO ACTION): a
-- message with replies cannot be moved to another depth or conversation. Deleting a message
-- still deletes the branch below it (ON DELETE CASCADE).
--
-- The maximum depth is in the table: depth 0 … 9,999, so a thread (root … message) holds at most
-- 10,000 messages, MAX_THREAD_DEPTH in src/queries/messages.ts (which must equal it).
--
-- appendMessage passes the depth it reads from the parent (in its one statement); other writers
-- may leave it out (default 0): the trigger below fills it from the parent on insert, and
-- recomputes it when parent_id changes (the foreign key then refuses what would break the tree). Citus runs
-- triggers on distributed tables only with citus.enable_unsafe_triggers, already required by the
-- updated_at triggers; this one reads only the parent, a row of the same tenant and so of the
-- same (colocated) shard.
--
-- Existing rows get their depth by a walk down from the roots of each conversation. A message
-- the walk cannot reach (in a cycle or below one, whose parent is in another conversation, or
-- deeper than 10,000) stops the migration with their count and a few ids, changing nothing: set
-- their parent_id to NULL or to a message of the same conversation, and migrate again.

alter table messages add column depth integer;
comment on column messages.depth is
  'Position in the thread: 0 for a root, the parent''s depth + 1 otherwise (0 … 9,999; filled from the parent by messages_set_depth when left out).';

-- The backfill rewrites every row: keep each message's updated_at as it is.
alter table messages disable trigger messages_set_updated_at;
analyze messages;
with recursive walk as (
  select m.tenant_id, m.id, m.conversation_id, 0 as depth
  from messages m
  where m.parent_id is null
  union all
  select c.tenant_id, c.id, c.conversation_id, w.depth + 1
  from walk w
  join messages c on c.tenant_id = w.tenant_id and c.parent_id = w.id and c.conversation_id = w.conversation_id
  where w.depth < 9999
)
update messages m set depth = w.depth
from walk w
where m.tenant_id = w.tenant_id and m.id = w.id;
alter table messages enable trigger messages_set_updated_at;

do $$
declare
  unreached bigint;
  examples text;
begin
  select count(*), string_agg(format('%s (tenant %s)', id, tenant_id), ', ')
           filter (where n <= 5)
    into unreached, examples
  from (select id, tenant_id, row_number() over (order by tenant_id, id) as n
        from messages where depth is null) x;
  if unreached > 0 then
    raise exception 'messages: % message(s) are not on a path of at most 10,000 messages from a root of their own conversation (in a cycle or below one, with a parent in another conversation, or deeper), e.g. %', unreached, examples
      using hint = 'Set their parent_id to NULL or to a message of the same conversation, then migrate again.';
  end if;
end
$$;

alter table messages
  alter column depth set not null,
  alter column depth set default 0,
  add column parent_depth integer generated always as (depth - 1) stored,
  add constraint messages_depth_check check (depth between 0 and 9999 and (parent_id is null) = (depth = 0));
comment on column messages.parent_depth is
  'depth - 1: the depth the parent must have (generated; the referencing half of messages_parent_fkey).';
comment on constraint messages_depth_check on messages is
  'A root has depth 0, a reply its parent''s depth + 1, at most 9,999: a thread holds at most MAX_THREAD_DEPTH = 10,000 messages.';

-- Serves: messages_parent_fkey (the parent of a message: same tenant, same conversation, depth
-- one less).
alter table messages
  add constraint messages_thread_key unique (tenant_id, id, conversation_id, depth);
comment on constraint messages_thread_key on messages is
  'The referenced half of messages_parent_fkey (id alone is already unique per tenant).';

alter table messages
  drop constraint messages_tenant_id_parent_id_fkey,
  add constraint messages_parent_fkey
    foreign key (tenant_id, parent_id, conversation_id, parent_depth)
    references messages (tenant_id, id, conversation_id, depth)
    on delete cascade;
comment on constraint messages_parent_fkey on messages is
  'A tree: the parent is a message of the same tenant and conversation, one level up, so no cycle can exist. Deleting a message deletes the branch below it.';

-- Serves: every insert of a reply that leaves depth out (raw SQL, fixtures, bulk loads: the
-- default 0, which a reply cannot have) and every change of parent_id. appendMessage gives the
-- depth itself, so the WHEN clause skips the function.
create function app.set_message_depth() returns trigger
  language plpgsql
  set search_path = pg_catalog, pg_temp
as $$
begin
  if new.parent_id is null then
    new.depth := 0;
    return new;
  end if;
  select p.depth + 1 into new.depth
  from public.messages p
  where p.tenant_id = new.tenant_id and p.id = new.parent_id and p.conversation_id = new.conversation_id;
  if not found then
    raise exception 'message %: parent % is not a message of conversation %', new.id, new.parent_id, new.conversation_id
      using errcode = '23503', constraint = 'messages_parent_fkey', table = 'messages', schema = 'public';
  end if;
  -- Only to say it clearly: messages_parent_fkey refuses this too, also under concurrency.
  if tg_op = 'UPDATE' and new.depth <> old.depth
     and exists (select from public.messages c where c.tenant_id = old.tenant_id and c.parent_id = old.id) then
    raise exception 'message % has replies: %; a cycle, or moving a branch to another depth, is refused', old.id,
      case when old.depth = 0 then 'a root with replies cannot be given a parent'
           else format('its parent can only become another message at depth %s of its conversation', old.depth - 1) end
      using errcode = '23503', constraint = 'messages_parent_fkey', table = 'messages', schema = 'public';
  end if;
  return new;
end
$$;
comment on function app.set_message_depth() is
  'BEFORE INSERT/UPDATE trigger on messages: depth := the parent''s depth + 1 (0 for a root).';
create trigger messages_set_depth before insert on messages
  for each row when (new.parent_id is not null and new.depth = 0) execute function app.set_message_depth();
create trigger messages_set_depth_on_reparent before update of parent_id on messages
  for each row when (new.parent_id is distinct from old.parent_id) execute function app.set_message_depth();
