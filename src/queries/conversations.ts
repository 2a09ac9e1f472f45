/**
 * Conversations: a user's chats with an agent. Tenant-scoped: every function runs inside
 * withTenant (TenantContextError otherwise), filters on the transaction's tenant explicitly (row-level
 * security is the second wall), and treats an id of another tenant exactly like an id that does
 * not exist.
 *
 * Soft delete: softDeleteConversation sets `deleted`/`deleted_at`; a deleted conversation leaves
 * listConversations, can still be read by getConversation (its `deleted` says so) and restored, and
 * refuses writes (rename, appendMessage) until restored; purgeDeletedConversations removes it for good.
 */
import { sql, type Kysely, type Selectable } from 'kysely';
import type { TenantTx } from '../db/tenant-tx.ts';
import { AgentRetiredError, foreignKeyViolated, NotFoundError, sqlState, ValidationError } from '../db/errors.ts';
import type { Conversations, DB } from '../db/schema.generated.ts';
import { tenantOf } from '../db/tenant.ts';
import { cursorTimestamp, decodeCursor, encodeCursor, type CursorScope, type Page, keysetPast } from './cursor.ts';
import { assertText, assertUuid, pageLimit } from './validate.ts';
import { assertRole } from '../db/service-roles.ts';
import { statementTemplate } from '../db/statement-template.ts';
import { visibleAgent } from './agents.ts';

/** A conversation as the query functions return it (the tenant is the caller's own, so not repeated). */
export type Conversation = Pick<
  Selectable<Conversations>,
  | 'id'
  | 'userId'
  | 'agentId'
  | 'title'
  | 'deleted'
  | 'deletedAt'
  | 'summaryMessageId'
  | 'lastActivityAt'
  | 'createdAt'
  | 'updatedAt'
>;

/** Longest title a conversation may have (the table's check constraint says the same). */
export const MAX_TITLE_LENGTH = 1000;

const COLUMNS = [
  'conversations.id',
  'conversations.userId',
  'conversations.agentId',
  'conversations.title',
  'conversations.deleted',
  'conversations.deletedAt',
  'conversations.summaryMessageId',
  'conversations.lastActivityAt',
  'conversations.createdAt',
  'conversations.updatedAt',
] as const;
/** The columns of a Conversation, as the functions here return it (for writers elsewhere that return one). */
export const CONVERSATION_COLUMNS = COLUMNS;

/**
 * Starts a conversation of user `userId` with agent `agentId`, an agent the user may use: global,
 * tenant-wide, the user's own or shared with the user (see listAgentsForUser). Any other agent —
 * another user's private one, another tenant's — → NotFoundError('agent'), exactly as an id that
 * does not exist; a user not in the tenant → NotFoundError('user'); a retired agent (deleteAgent)
 * → AgentRetiredError (its existing conversations go on: appendMessage does not look at it).
 *
 * One statement: `insert into conversations … select … from agents where id = $agentId and
 * <usable by the user> returning …`.
 * The user is checked by the composite foreign key; its violation (23503) aborts the surrounding
 * transaction like any failed statement, and is reported as NotFoundError('user').
 *
 * @example
 * const convo = await withTenant(db, tenantId, (tx) => createConversation(tx, { userId, agentId, title: 'Trip plans' }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function createConversation(
  db: TenantTx,
  params: { userId: string; agentId: string; title?: string },
): Promise<Conversation> {
  assertRole(db, 'createConversation');
  const tenantId = tenantOf(db);
  const { userId, agentId } = params;
  assertUuid('userId', userId);
  assertUuid('agentId', agentId);
  const title = params.title ?? '';
  if (params.title !== undefined) assertText('title', params.title, MAX_TITLE_LENGTH);

  let row: Conversation | undefined;
  try {
    row = (await createStatement(db, { tenantId, userId, agentId, title }, null).execute(db)).rows[0];
  } catch (error) {
    if (sqlState(error) === '23503') {
      const constraint = foreignKeyViolated(error);
      // The agent was deleted between the select and the insert; otherwise it is the user
      // (conversations_tenant_id_user_id_fkey) or a tenant that does not exist, which has no users.
      if (constraint === 'conversations_agent_id_fkey') throw new NotFoundError('agent', agentId);
      throw new NotFoundError('user', userId);
    }
    throw error;
  }
  if (row === undefined) {
    const retired = await db
      .selectFrom('agents as a')
      .select('a.id')
      .where('a.id', '=', agentId)
      .where('a.retiredAt', 'is not', null)
      .where((eb) => visibleAgent(eb, tenantId, { userId }))
      .executeTakeFirst();
    if (retired !== undefined) throw new AgentRetiredError(agentId);
    throw new NotFoundError('agent', agentId);
  }
  return row;
}

/** createConversation's one statement, compiled once (statementTemplate). */
const createStatement = statementTemplate(
  (db: Kysely<DB>, v: { tenantId: string; userId: string; agentId: string; title: string }, _shape: null) =>
    db
      .insertInto('conversations')
      .columns(['tenantId', 'userId', 'agentId', 'agentScope', 'title'])
      .expression((eb) =>
        eb
          .selectFrom('agents as a')
          .select((eb) => [
            eb.cast<string>(eb.val(v.tenantId), 'uuid').as('tenantId'),
            eb.cast<string>(eb.val(v.userId), 'uuid').as('userId'),
            'a.id',
            // The agent's scope, half of the key (agent_scope, agent_id) -> agents (scope, id).
            'a.scope',
            eb.cast<string>(eb.val(v.title), 'text').as('title'),
          ])
          .where('a.id', '=', v.agentId)
          .where('a.retiredAt', 'is', null)
          .where((eb) => visibleAgent(eb, v.tenantId, { userId: v.userId })),
      )
      .returning(COLUMNS),
);

/** The conversation `conversationId`, soft-deleted or not (see `deleted`); NotFoundError('conversation') if there is none. Roles: app_cms. */
export async function getConversation(db: TenantTx, params: { conversationId: string }): Promise<Conversation> {
  assertRole(db, 'getConversation');
  const tenantId = tenantOf(db);
  const { conversationId } = params;
  assertUuid('conversationId', conversationId);
  const row = await db
    .selectFrom('conversations')
    .select(COLUMNS)
    .where('conversations.tenantId', '=', tenantId)
    .where('conversations.id', '=', conversationId)
    .executeTakeFirst();
  if (row === undefined) throw new NotFoundError('conversation', conversationId);
  return row;
}

/**
 * One page of user `userId`'s live (not deleted) conversations, newest activity first: keyset on
 * (last_activity_at desc, id desc) over the partial index conversations_list_idx, `limit` rows
 * (default 50, at most 200). Pass `nextCursor` back as `cursor` for the next page (null: no more).
 *
 * Guarantee of a walk over pages (each page may be its own transaction): no conversation is
 * returned twice, and every conversation whose last_activity_at does not change during the walk is
 * returned exactly once, in order. The sort key only ever grows (appendMessage bumps it; nothing
 * lowers it), so new activity moves a conversation up, above the cursor: if it was already
 * returned it is not returned again; if not, this walk does not return it (the next walk from the
 * first page shows it at the top). Conversations created during the walk sort above the cursor
 * too (their last_activity_at is their creation time) and appear in the next walk.
 *
 * @example
 * let cursor: string | null = null;
 * do {
 *   const page = await withTenant(db, tenantId, (tx) => listConversations(tx, { userId, cursor }));
 *   show(page.items);
 *   cursor = page.nextCursor;
 * } while (cursor !== null);
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function listConversations(
  db: TenantTx,
  params: { userId: string; limit?: number; cursor?: string | null },
): Promise<Page<Conversation>> {
  assertRole(db, 'listConversations');
  const tenantId = tenantOf(db);
  const { userId } = params;
  assertUuid('userId', userId);
  const limit = pageLimit(params.limit);
  const scope: CursorScope = { list: 'conversations', tenantId, scope: userId.toLowerCase() };
  const after = params.cursor == null ? undefined : decodeCursor(params.cursor, scope);

  const values = { tenantId, userId, limit: limit + 1, afterAt: after?.at ?? null, afterId: after?.id ?? null };
  const { rows } = await listStatement(db, values, { paged: after !== undefined }).execute(db);

  return toPage(rows, limit, scope);
}

/** listConversations' statement, compiled once for a first page and once for a later one (statementTemplate). */
const listStatement = statementTemplate(
  (db: Kysely<DB>, v: { tenantId: string; userId: string; limit: number; afterAt: string | null; afterId: string | null }, shape: { paged: boolean }) =>
    db
      .selectFrom('conversations')
      .select((eb) => [...COLUMNS, cursorTimestamp(eb.ref('conversations.lastActivityAt')).as('cursorAt')])
      .where('conversations.tenantId', '=', v.tenantId)
      .where('conversations.userId', '=', v.userId)
      // `not deleted` literally, so the planner matches the partial index's predicate.
      .where((eb) => eb.not(eb.ref('conversations.deleted')))
      .$if(shape.paged, (qb) =>
        qb.where((eb) => keysetPast(eb.ref('conversations.lastActivityAt'), eb.ref('conversations.id'), { at: v.afterAt!, id: v.afterId! })),
      )
      .orderBy('conversations.lastActivityAt', 'desc')
      .orderBy('conversations.id', 'desc')
      .limit(v.limit),
);

/** Renames a live conversation; NotFoundError('conversation') if there is none or it is soft-deleted (restore it first). Roles: app_cms. */
export async function renameConversation(
  db: TenantTx,
  params: { conversationId: string; title: string },
): Promise<Conversation> {
  assertRole(db, 'renameConversation');
  const tenantId = tenantOf(db);
  const { conversationId, title } = params;
  assertUuid('conversationId', conversationId);
  assertText('title', title, MAX_TITLE_LENGTH);
  const row = await db
    .updateTable('conversations')
    .set({ title })
    .where('conversations.tenantId', '=', tenantId)
    .where('conversations.id', '=', conversationId)
    .where((eb) => eb.not(eb.ref('conversations.deleted')))
    .returning(COLUMNS)
    .executeTakeFirst();
  if (row === undefined) throw new NotFoundError('conversation', conversationId);
  return row;
}

/**
 * Soft-deletes a conversation: `deleted = true, deleted_at = now()`. Idempotent: deleting a deleted
 * conversation keeps its first deleted_at (the purge clock does not restart).
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function softDeleteConversation(db: TenantTx, params: { conversationId: string }): Promise<Conversation> {
  assertRole(db, 'softDeleteConversation');
  const tenantId = tenantOf(db);
  const { conversationId } = params;
  assertUuid('conversationId', conversationId);
  const row = await db
    .updateTable('conversations')
    // least() skips NULL: the first deletion's time stays. (Not coalesce(): Citus refuses a
    // non-IMMUTABLE function inside COALESCE or CASE in a distributed UPDATE.)
    .set((eb) => ({ deleted: true, deletedAt: sql<Date>`least(${eb.ref('conversations.deletedAt')}, now())` }))
    .where('conversations.tenantId', '=', tenantId)
    .where('conversations.id', '=', conversationId)
    .returning(COLUMNS)
    .executeTakeFirst();
  if (row === undefined) throw new NotFoundError('conversation', conversationId);
  return row;
}

/** Brings a soft-deleted conversation back (at its old place in the list: last_activity_at is kept); idempotent. Roles: app_cms. */
export async function restoreConversation(db: TenantTx, params: { conversationId: string }): Promise<Conversation> {
  assertRole(db, 'restoreConversation');
  const tenantId = tenantOf(db);
  const { conversationId } = params;
  assertUuid('conversationId', conversationId);
  const row = await db
    .updateTable('conversations')
    .set({ deleted: false, deletedAt: null })
    .where('conversations.tenantId', '=', tenantId)
    .where('conversations.id', '=', conversationId)
    .returning(COLUMNS)
    .executeTakeFirst();
  if (row === undefined) throw new NotFoundError('conversation', conversationId);
  return row;
}

/**
 * Deletes for good the tenant's conversations soft-deleted before `olderThan`, with their messages
 * and vectors (foreign keys cascade); returns how many conversations went.
 *
 * @example
 * const purged = await withTenant(db, tenantId, (tx) =>
 *   purgeDeletedConversations(tx, { olderThan: new Date(Date.now() - 30 * 86_400_000) }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function purgeDeletedConversations(db: TenantTx, params: { olderThan: Date }): Promise<number> {
  assertRole(db, 'purgeDeletedConversations');
  const tenantId = tenantOf(db);
  const { olderThan } = params;
  if (!(olderThan instanceof Date) || Number.isNaN(olderThan.getTime())) {
    throw new ValidationError('olderThan', 'must be a valid Date');
  }
  const result = await db
    .deleteFrom('conversations')
    .where('conversations.tenantId', '=', tenantId)
    // `deleted` literally, so the planner matches conversations_purge_idx's predicate.
    .where((eb) => eb.ref('conversations.deleted'))
    .where('conversations.deletedAt', '<', olderThan)
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}

/** Rows fetched with `limit + 1` → a page and the cursor after its last row. */
function toPage(rows: (Conversation & { cursorAt: string })[], limit: number, scope: CursorScope): Page<Conversation> {
  const items = rows.slice(0, limit).map(({ cursorAt: _cursorAt, ...row }) => row);
  const last = rows[limit - 1];
  const nextCursor = rows.length > limit && last !== undefined ? encodeCursor(scope, { at: last.cursorAt, id: last.id }) : null;
  return { items, nextCursor };
}
