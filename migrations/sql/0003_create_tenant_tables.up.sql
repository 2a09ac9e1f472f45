-- Why: the data that grows, owned by tenants. Every tenant-scoped table has
-- `tenant_id uuid not null`, primary key (tenant_id, id), and composite foreign keys
-- (tenant_id, x_id) to other tenant-scoped tables, so a child can never point at another
-- tenant's parent, even for a role that bypasses row-level security, and every table can be
-- distributed by tenant_id (Citus). `agents` and `agent_tools` are shared-or-owned: a global
-- agent has tenant_id NULL. Row-level security is switched on in 0005.

create table tenants (
  id         uuid primary key default gen_random_uuid(),
  name       text not null check (length(btrim(name)) > 0),
  slug       text not null unique check (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
  plan       text not null default 'free',
  settings   jsonb not null default '{}' check (jsonb_typeof(settings) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table tenants is 'Organizations using the platform; every tenant-scoped row carries one tenants.id.';

create table users (
  tenant_id    uuid not null references tenants (id) on delete cascade,
  id           uuid not null default gen_random_uuid(),
  email        text not null check (email = lower(email) and position('@' in email) > 1),
  first_name   text,
  last_name    text,
  status       text not null default 'active' check (status in ('active', 'disabled')),
  role_id      integer not null references roles (id) on delete restrict,
  api_key_hash text check (api_key_hash ~ '^[0-9a-f]{64}$'),
  budget       numeric check (budget >= 0),
  remaining    numeric check (remaining >= 0),
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (tenant_id, email),
  unique (tenant_id, api_key_hash)
);
comment on table users is 'Users of a tenant. api_key_hash is the sha256 hex of the API key; the key itself is never stored. budget/remaining NULL means no budget limit.';
comment on column users.remaining is 'What is left of budget; recordUsage decrements it with `where remaining >= cost`.';
-- Serves: app.resolve_api_key(hash), which runs before any tenant is known.
create index users_api_key_hash_idx on users (api_key_hash) where api_key_hash is not null;
-- Serves: users of a role within a tenant (admin console). Deleting a role (a rare owner
-- operation, restricted) checks users without an index led by role_id: a scan, accepted.
create index users_tenant_role_idx on users (tenant_id, role_id);

create table agents (
  id               uuid primary key default gen_random_uuid(),
  tenant_id        uuid references tenants (id) on delete cascade,
  user_id          uuid,
  model_id         integer not null references models (id) on delete restrict,
  prompt_id        integer references prompts (id) on delete set null,
  name             text not null check (length(btrim(name)) > 0),
  description      text,
  model_parameters jsonb not null default '{}' check (jsonb_typeof(model_parameters) = 'object'),
  created_at       timestamptz not null default now(),
  updated_at       timestamptz not null default now(),
  -- A user's agent belongs to that user's tenant; a global agent (tenant_id NULL) has no user.
  foreign key (tenant_id, user_id) references users (tenant_id, id) on delete set null (user_id),
  check (user_id is null or tenant_id is not null)
);
comment on table agents is 'Agents: global (tenant_id NULL, from the seed) or owned by a tenant and optionally a user.';
-- Serves: listAgentsForUser (own agents of a tenant/user) and the user foreign key.
create index agents_tenant_user_idx on agents (tenant_id, user_id);
-- Serves: the restrict check on models, agents by model.
create index agents_model_id_idx on agents (model_id);
-- Serves: the set-null on prompts, agents by prompt.
create index agents_prompt_id_idx on agents (prompt_id);

create table agent_tools (
  agent_id   uuid not null references agents (id) on delete cascade,
  tool_id    integer not null references tools (id) on delete cascade,
  created_at timestamptz not null default now(),
  primary key (agent_id, tool_id)
);
comment on table agent_tools is 'Which agent may call which tool. Visible and writable exactly as its agent is. Rows never change: no updated_at.';
-- Serves: the cascade from tools, agents having a tool.
create index agent_tools_tool_id_idx on agent_tools (tool_id);

create table user_agents (
  tenant_id  uuid not null references tenants (id) on delete cascade,
  id         uuid not null default gen_random_uuid(),
  user_id    uuid not null,
  agent_id   uuid not null references agents (id) on delete cascade,
  role       text not null default 'viewer' check (role in ('owner', 'editor', 'viewer')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, user_id) references users (tenant_id, id) on delete cascade,
  unique (tenant_id, user_id, agent_id)
);
comment on table user_agents is 'Agents shared with a user, with the user''s role on the agent.';
-- Serves: users an agent is shared with, and the cascade when an agent is deleted. Led by
-- agent_id, not tenant_id: agent ids are unique across tenants, and a global agent is shared
-- in every tenant, so the cascade's `where agent_id = $1` needs this column first.
create index user_agents_agent_idx on user_agents (agent_id);

create table user_tools (
  tenant_id  uuid not null references tenants (id) on delete cascade,
  id         uuid not null default gen_random_uuid(),
  user_id    uuid not null,
  tool_id    integer not null references tools (id) on delete cascade,
  credential jsonb not null default '{}' check (jsonb_typeof(credential) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, user_id) references users (tenant_id, id) on delete cascade,
  unique (tenant_id, user_id, tool_id)
);
comment on table user_tools is 'A user''s own configuration of a tool (credentials).';
-- Serves: the cascade from tools.
create index user_tools_tenant_tool_idx on user_tools (tenant_id, tool_id);

create table conversations (
  tenant_id          uuid not null references tenants (id) on delete cascade,
  id                 uuid not null default gen_random_uuid(),
  user_id            uuid not null,
  agent_id           uuid references agents (id) on delete set null,
  title              text not null default '' check (length(title) <= 1000),
  deleted            boolean not null default false,
  deleted_at         timestamptz,
  summary_message_id uuid,
  last_activity_at   timestamptz not null default now(),
  created_at         timestamptz not null default now(),
  updated_at         timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, user_id) references users (tenant_id, id) on delete cascade,
  check (deleted = (deleted_at is not null))
);
comment on table conversations is 'Chats of a user with an agent. Soft delete: deleted + deleted_at; purge removes them for good.';
comment on column conversations.last_activity_at is 'Bumped by appendMessage; listConversations orders by it, newest first.';
-- Serves: listConversations (a user's live conversations, newest activity first, keyset on
-- (last_activity_at, id)).
create index conversations_list_idx on conversations (tenant_id, user_id, last_activity_at desc, id desc)
  where not deleted;
-- Serves: conversations of an agent, and the set-null when an agent is deleted (led by agent_id:
-- see user_agents_agent_idx).
create index conversations_agent_idx on conversations (agent_id) where agent_id is not null;
-- Serves: purgeDeletedConversations (deleted before a date).
create index conversations_purge_idx on conversations (tenant_id, deleted_at) where deleted;

create table messages (
  tenant_id       uuid not null references tenants (id) on delete cascade,
  id              uuid not null default gen_random_uuid(),
  conversation_id uuid not null,
  parent_id       uuid,
  role            text not null check (role in ('user', 'assistant', 'system', 'tool')),
  content         jsonb not null check (jsonb_typeof(content) in ('object', 'array')),
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, conversation_id) references conversations (tenant_id, id) on delete cascade,
  -- A tree: branches and edits. Deleting a message deletes the branch below it.
  foreign key (tenant_id, parent_id) references messages (tenant_id, id) on delete cascade,
  check (parent_id is null or parent_id <> id)
);
comment on table messages is 'Messages of a conversation, a tree through parent_id (branches and edits).';
-- Serves: listMessages (a conversation's messages in order, keyset on (created_at, id)) and the
-- cascade from conversations.
create index messages_list_idx on messages (tenant_id, conversation_id, created_at, id);
-- Serves: getThread's walk and children of a message; the cascade from a parent.
create index messages_parent_idx on messages (tenant_id, parent_id) where parent_id is not null;

-- conversations <-> messages is a cycle: this foreign key comes after both tables exist.
alter table conversations
  add foreign key (tenant_id, summary_message_id) references messages (tenant_id, id)
  on delete set null (summary_message_id);
-- Serves: the set-null on conversations when a summary message is deleted.
create index conversations_summary_message_idx on conversations (tenant_id, summary_message_id)
  where summary_message_id is not null;

create table resources (
  tenant_id  uuid not null references tenants (id) on delete cascade,
  id         uuid not null default gen_random_uuid(),
  agent_id   uuid references agents (id) on delete set null,
  message_id uuid,
  name       text not null check (length(btrim(name)) > 0),
  type       text not null,
  content    text,
  s3_uri     text check (s3_uri ~ '^s3://'),
  metadata   jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, message_id) references messages (tenant_id, id) on delete set null (message_id)
);
comment on table resources is 'Documents and files attached to an agent or a message; their chunks live in vectors.';
-- Serves: resources of an agent, and the set-null when an agent is deleted (led by agent_id:
-- see user_agents_agent_idx).
create index resources_agent_idx on resources (agent_id) where agent_id is not null;
-- Serves: resources of a message, and the set-null from messages.
create index resources_tenant_message_idx on resources (tenant_id, message_id) where message_id is not null;

create table usage (
  tenant_id          uuid not null references tenants (id) on delete cascade,
  id                 uuid not null default gen_random_uuid(),
  user_id            uuid not null,
  model_id           integer not null references models (id) on delete restrict,
  agent_id           uuid references agents (id) on delete set null,
  message_id         uuid,
  type               text not null check (length(btrim(type)) > 0),
  input_tokens       integer not null default 0 check (input_tokens >= 0),
  output_tokens      integer not null default 0 check (output_tokens >= 0),
  cache_read_tokens  integer not null default 0 check (cache_read_tokens >= 0),
  cache_write_tokens integer not null default 0 check (cache_write_tokens >= 0),
  cost               numeric not null check (cost >= 0),
  idempotency_key    text check (length(idempotency_key) between 1 and 200),
  created_at         timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, user_id) references users (tenant_id, id) on delete cascade,
  foreign key (tenant_id, message_id) references messages (tenant_id, id) on delete set null (message_id),
  unique (tenant_id, idempotency_key)
);
comment on table usage is 'One row per charged model call: tokens and exact cost. Rows never change: no updated_at.';
-- Serves: a user's usage over time (budget views, costSummary by user).
create index usage_tenant_user_created_idx on usage (tenant_id, user_id, created_at);
-- Serves: costSummary by model over a period, and the restrict check on models.
create index usage_tenant_model_created_idx on usage (tenant_id, model_id, created_at);
-- Serves: costSummary over a period for the whole tenant.
create index usage_tenant_created_idx on usage (tenant_id, created_at);
-- Serves: costSummary by agent, and the set-null when an agent is deleted (led by agent_id: see
-- user_agents_agent_idx). Deleting a model (restricted, a rare owner operation) is served by
-- usage_tenant_model_created_idx only through a scan, accepted.
create index usage_agent_idx on usage (agent_id) where agent_id is not null;
-- Serves: the set-null on usage when a message is deleted (also through a conversation purge).
create index usage_tenant_message_idx on usage (tenant_id, message_id) where message_id is not null;

create trigger tenants_set_updated_at before update on tenants
  for each row execute function app.set_updated_at();
create trigger users_set_updated_at before update on users
  for each row execute function app.set_updated_at();
create trigger agents_set_updated_at before update on agents
  for each row execute function app.set_updated_at();
create trigger user_agents_set_updated_at before update on user_agents
  for each row execute function app.set_updated_at();
create trigger user_tools_set_updated_at before update on user_tools
  for each row execute function app.set_updated_at();
create trigger conversations_set_updated_at before update on conversations
  for each row execute function app.set_updated_at();
create trigger messages_set_updated_at before update on messages
  for each row execute function app.set_updated_at();
create trigger resources_set_updated_at before update on resources
  for each row execute function app.set_updated_at();
