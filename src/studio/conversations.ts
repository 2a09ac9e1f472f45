/**
 * The conversation viewer's data, read inside a tenant transaction (so row-level security and
 * the role's grants decide what is there): a tenant's conversations, and one conversation as its
 * message tree with the usage charged for it.
 */
import { sql, type Kysely } from 'kysely';

/** Most conversations listed, newest activity first. */
export const MAX_CONVERSATIONS_LISTED = 100;
/** Most messages of one conversation shown (the viewer says when there are more). */
export const MAX_MESSAGES_SHOWN = 2000;

/** A conversation in the list. */
export interface ConversationSummary {
  id: string;
  title: string;
  userEmail: string | null;
  deleted: boolean;
  lastActivityAt: Date;
  messages: number;
}

/** A conversation's header. */
export interface ConversationHeader {
  id: string;
  title: string;
  userId: string;
  userEmail: string | null;
  agentName: string | null;
  deleted: boolean;
  createdAt: Date;
  lastActivityAt: Date;
}

/** One message of the tree. */
export interface TreeMessage {
  id: string;
  parentId: string | null;
  role: string;
  /** The jsonb content as text. */
  content: string;
  createdAt: Date;
}

/** A usage row charged for the conversation (through one of its messages). */
export interface ChargedUsage {
  id: string;
  messageId: string;
  modelName: string | null;
  type: string;
  inputTokens: number;
  outputTokens: number;
  cost: string;
  createdAt: Date;
}

/**
 * `u.email`, or NULL when the role may not read users.email (app_cms holds only users' id and
 * status): the conversation pages then show the user's id instead of failing.
 */
async function userEmail(db: Kysely<any>) {
  const { rows } = await sql<{ can: boolean }>`select has_column_privilege('users', 'email', 'SELECT') as can`.execute(db.withoutPlugins());
  return rows[0]?.can === true ? sql`u.email` : sql`null::text`;
}

/** The newest conversations of the tenant. */
export async function listConversationSummaries(db: Kysely<any>, tenantId: string): Promise<ConversationSummary[]> {
  const email = await userEmail(db);
  const { rows } = await sql<{ id: string; title: string; user_email: string | null; deleted: boolean; last_activity_at: Date; messages: number }>`
    select c.id, c.title, ${email} as user_email, c.deleted, c.last_activity_at,
           (select count(*)::int from messages m where m.tenant_id = c.tenant_id and m.conversation_id = c.id) as messages
    from conversations c
    left join users u on u.tenant_id = c.tenant_id and u.id = c.user_id
    where c.tenant_id = ${tenantId}::uuid
    order by c.last_activity_at desc, c.id desc
    limit ${MAX_CONVERSATIONS_LISTED}`.execute(db.withoutPlugins());
  return rows.map((r) => ({
    id: r.id,
    title: r.title,
    userEmail: r.user_email,
    deleted: r.deleted,
    lastActivityAt: new Date(r.last_activity_at),
    messages: r.messages,
  }));
}

/** The conversation's header, or undefined when the tenant has no such conversation (or cannot see it). */
export async function findConversationHeader(db: Kysely<any>, tenantId: string, conversationId: string): Promise<ConversationHeader | undefined> {
  const { rows } = await sql<{
    id: string;
    title: string;
    user_id: string;
    user_email: string | null;
    agent_name: string | null;
    deleted: boolean;
    created_at: Date;
    last_activity_at: Date;
  }>`
    select c.id, c.title, c.user_id, ${await userEmail(db)} as user_email, a.name as agent_name, c.deleted, c.created_at, c.last_activity_at
    from conversations c
    left join users u on u.tenant_id = c.tenant_id and u.id = c.user_id
    left join agents a on a.id = c.agent_id
    where c.tenant_id = ${tenantId}::uuid and c.id = ${conversationId}::uuid`.execute(db.withoutPlugins());
  const r = rows[0];
  if (r === undefined) return undefined;
  return {
    id: r.id,
    title: r.title,
    userId: r.user_id,
    userEmail: r.user_email,
    agentName: r.agent_name,
    deleted: r.deleted,
    createdAt: new Date(r.created_at),
    lastActivityAt: new Date(r.last_activity_at),
  };
}

/** The conversation's messages, oldest first (at most MAX_MESSAGES_SHOWN; `more` says when there are others). */
export async function listTreeMessages(
  db: Kysely<any>,
  tenantId: string,
  conversationId: string,
): Promise<{ messages: TreeMessage[]; more: boolean }> {
  const { rows } = await sql<{ id: string; parent_id: string | null; role: string; content: string; created_at: Date }>`
    select m.id, m.parent_id, m.role, m.content::text as content, m.created_at
    from messages m
    where m.tenant_id = ${tenantId}::uuid and m.conversation_id = ${conversationId}::uuid
    order by m.created_at, m.id
    limit ${MAX_MESSAGES_SHOWN + 1}`.execute(db.withoutPlugins());
  return {
    messages: rows.slice(0, MAX_MESSAGES_SHOWN).map((r) => ({
      id: r.id,
      parentId: r.parent_id,
      role: r.role,
      content: r.content,
      createdAt: new Date(r.created_at),
    })),
    more: rows.length > MAX_MESSAGES_SHOWN,
  };
}

/** The usage charged through the conversation's messages, oldest first. */
export async function listChargedUsage(db: Kysely<any>, tenantId: string, conversationId: string): Promise<ChargedUsage[]> {
  const { rows } = await sql<{
    id: string;
    message_id: string;
    model_name: string | null;
    type: string;
    input_tokens: number;
    output_tokens: number;
    cost: string;
    created_at: Date;
  }>`
    select g.id, g.message_id, md.name as model_name, g.type, g.input_tokens, g.output_tokens,
           trim_scale(g.cost)::text as cost, g.created_at
    from usage g
    join messages m on m.tenant_id = g.tenant_id and m.id = g.message_id
    left join models md on md.id = g.model_id
    where g.tenant_id = ${tenantId}::uuid and m.conversation_id = ${conversationId}::uuid
    order by g.created_at, g.id`.execute(db.withoutPlugins());
  return rows.map((r) => ({
    id: r.id,
    messageId: r.message_id,
    modelName: r.model_name,
    type: r.type,
    inputTokens: r.input_tokens,
    outputTokens: r.output_tokens,
    cost: r.cost,
    createdAt: new Date(r.created_at),
  }));
}
