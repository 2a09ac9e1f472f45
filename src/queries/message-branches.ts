/**
 * Editing a conversation as a tree (LibreChat / Open WebUI style): an edit or a regeneration is a
 * new branch beside the message it replaces, the original stays; a client shows one path, the
 * thread up from the leaf it chose (getThread), and offers the siblings (listBranches). Tenant-scoped
 * like messages.ts: inside withTenant only, explicit tenant filter, another tenant's ids behave like
 * ids that do not exist.
 *
 * What deleteMessageBranch leaves behind (the foreign keys' ON DELETE actions, in its one
 * statement): usage rows of removed messages stay — billing history is append-only, their cost and
 * the budgets they charged do not change — with message_id NULL; resources attached to a removed
 * message stay, with their chunks, with message_id NULL (delete them with deleteResource); the
 * conversation's summary pointer becomes NULL when the summary was in the branch. Chunks are
 * linked to conversations and resources, never to messages: a conversation's chunks stay until
 * deleteChunks({ conversationId }) or the conversation is purged.
 */
import { sql } from 'kysely';
import type { TenantTx } from '../db/tenant-tx.ts';
import { NotFoundError, ValidationError, foreignKeyViolated } from '../db/errors.ts';
import { tenantOf } from '../db/tenant.ts';
import { assertRole } from '../db/service-roles.ts';
import { CONVERSATION_COLUMNS, type Conversation } from './conversations.ts';
import { decodeCursor, type CursorScope, type Page } from './cursor.ts';
import { appendMessage, messagePage, type Message, type MessageContent } from './messages.ts';
import { assertUuid, pageBytes, pageLimit } from './validate.ts';

/**
 * Edits a message the way chat products do: a new message with the same parent, conversation and
 * role and the new `content` (a sibling: another branch), while the original and the replies below
 * it stay as they were. Returns the new message; follow it with getThread, list the alternatives
 * with listBranches. `content` as for appendMessage (a JSON object or array, at most
 * `maxContentBytes`, default 1 MiB), and, as appendMessage, it bumps the conversation's activity.
 * A missing or foreign message → NotFoundError('message'); a message of a soft-deleted
 * conversation → NotFoundError('conversation'). Editing a root gives another root.
 *
 * @example
 * const edited = await withTenant(db, tenantId, (tx) => editMessage(tx, { messageId: question.id, content: { text: 'Hi, again' } }));
 * edited.parentId === question.parentId; // true
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function editMessage(
  db: TenantTx,
  params: { messageId: string; content: MessageContent; maxContentBytes?: number },
): Promise<Message> {
  assertRole(db, 'editMessage');
  const tenantId = tenantOf(db);
  assertUuid('messageId', params.messageId);
  // FOR KEY SHARE, as a reply's foreign-key check would: the original cannot be deleted while we
  // add its sibling, nor its parent (whose delete cascades to it): a concurrent deleteMessageBranch
  // waits for this transaction, or ran first and the original is not found.
  const original = await db
    .selectFrom('messages')
    .select(['messages.conversationId', 'messages.parentId', 'messages.role'])
    .where('messages.tenantId', '=', tenantId)
    .where('messages.id', '=', params.messageId)
    .forKeyShare()
    .executeTakeFirst();
  if (original === undefined) throw new NotFoundError('message', params.messageId);
  return appendMessage(db, {
    conversationId: original.conversationId,
    role: original.role as Message['role'],
    content: params.content,
    parentId: original.parentId,
    ...(params.maxContentBytes === undefined ? {} : { maxContentBytes: params.maxContentBytes }),
  });
}

/**
 * One page of the branches at a point of the tree, oldest first (keyset on (created_at, id)):
 * with `messageId`, the replies to that message (its children: the original answer, its
 * regenerations, the edits of a reply); with `conversationId`, the conversation's roots (a first
 * message and its edits). Exactly one of the two, else ValidationError. `limit` 1..200 (default
 * 50); pass `nextCursor` back as `cursor`, with the same message or conversation (null: no more).
 * A missing or foreign id gives an empty page. Byte budget (`maxPageBytes`) as for listMessages.
 * Served by messages_children_idx / messages_roots_idx (migration 0017).
 *
 * @example
 * const { items } = await withTenant(db, tenantId, (tx) => listBranches(tx, { messageId: question.id }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function listBranches(
  db: TenantTx,
  params: { messageId?: string; conversationId?: string; limit?: number; cursor?: string | null; maxPageBytes?: number },
): Promise<Page<Message>> {
  assertRole(db, 'listBranches');
  const tenantId = tenantOf(db);
  const { messageId, conversationId } = params;
  if ((messageId === undefined) === (conversationId === undefined)) {
    throw new ValidationError('params', 'must name exactly one of messageId (its replies) and conversationId (its roots)');
  }
  if (messageId !== undefined) assertUuid('messageId', messageId);
  if (conversationId !== undefined) assertUuid('conversationId', conversationId);
  const limit = pageLimit(params.limit);
  const maxBytes = pageBytes(params.maxPageBytes);
  const scope: CursorScope = {
    list: 'branches',
    tenantId,
    scope: messageId !== undefined ? `message=${messageId.toLowerCase()}` : `roots=${conversationId!.toLowerCase()}`,
  };
  const after = params.cursor == null ? undefined : decodeCursor(params.cursor, scope);

  // The replies of a message, or a conversation's roots (messages_children_idx / messages_roots_idx).
  return messagePage(db, tenantId, messageId !== undefined ? { parentId: messageId } : { rootsOf: conversationId! }, {
    after,
    limit,
    maxBytes,
    scope,
  });
}

/**
 * Deletes a message and every message below it (its replies, their replies…), in one statement:
 * a recursive walk down the tree (each step an index lookup of a message's children) and one
 * DELETE of the rows it found. Returns how many messages were deleted (0 for a missing or foreign
 * id: nothing happens). What points at the removed messages is kept or cleared as the module
 * comment says: usage rows and resources stay with message_id NULL, the conversation's summary
 * pointer is cleared if it was in the branch. Works on soft-deleted conversations too.
 *
 * @example
 * await withTenant(db, tenantId, (tx) => deleteMessageBranch(tx, { messageId: draft.id })); // { deleted: 3 }
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function deleteMessageBranch(db: TenantTx, params: { messageId: string }): Promise<{ deleted: number }> {
  assertRole(db, 'deleteMessageBranch');
  const tenantId = tenantOf(db);
  assertUuid('messageId', params.messageId);
  // LATERAL: a nested loop of lookups in messages_children_idx at every level, whatever the
  // statistics say (see getThread on the plain recursive join).
  const result = await sql`
    with recursive branch as (
      select m.id from messages m where m.tenant_id = ${tenantId} and m.id = ${params.messageId}
      union all
      select c.id from branch b
      cross join lateral (select m.id from messages m where m.tenant_id = ${tenantId} and m.parent_id = b.id) c
    )
    delete from messages m using branch b
    where m.tenant_id = ${tenantId} and m.id = b.id`.execute(db);
  return { deleted: Number(result.numAffectedRows ?? 0n) };
}

/**
 * Points a live conversation at its summary message (`messageId`, a message of this same
 * conversation), or clears it (`messageId: null`). Returns the conversation. A missing, foreign or
 * soft-deleted conversation → NotFoundError('conversation'); a missing or foreign message →
 * NotFoundError('message'); a message of another conversation → ValidationError('messageId'),
 * nothing written.
 *
 * @example
 * const summary = await withTenant(db, tenantId, (tx) => appendMessage(tx, { conversationId, role: 'system', content: { summary: '…' } }));
 * await withTenant(db, tenantId, (tx) => setConversationSummary(tx, { conversationId, messageId: summary.id }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function setConversationSummary(
  db: TenantTx,
  params: { conversationId: string; messageId: string | null },
): Promise<Conversation> {
  assertRole(db, 'setConversationSummary');
  const tenantId = tenantOf(db);
  const { conversationId, messageId } = params;
  assertUuid('conversationId', conversationId);
  if (messageId !== null) assertUuid('messageId', messageId);

  let row: Conversation | undefined;
  try {
    row = await db
      .updateTable('conversations')
      .set({ summaryMessageId: messageId })
      .where('conversations.tenantId', '=', tenantId)
      .where('conversations.id', '=', conversationId)
      .where((eb) => eb.not(eb.ref('conversations.deleted')))
      .$if(messageId !== null, (qb) =>
        qb.where((eb) =>
          eb.exists(
            eb
              .selectFrom('messages')
              .select(sql.lit(1).as('one'))
              .where('messages.tenantId', '=', tenantId)
              .where('messages.id', '=', messageId!)
              .whereRef('messages.conversationId', '=', 'conversations.id'),
          ),
        ),
      )
      .returning(CONVERSATION_COLUMNS)
      .executeTakeFirst();
  } catch (error) {
    // The message was deleted between the check and the foreign key's (a concurrent delete).
    if (foreignKeyViolated(error) !== undefined && messageId !== null) throw new NotFoundError('message', messageId);
    throw error;
  }
  if (row !== undefined) return row;
  // Nothing written: say why.
  const conversation = await db
    .selectFrom('conversations')
    .select('conversations.id')
    .where('conversations.tenantId', '=', tenantId)
    .where('conversations.id', '=', conversationId)
    .where((eb) => eb.not(eb.ref('conversations.deleted')))
    .executeTakeFirst();
  if (conversation === undefined || messageId === null) throw new NotFoundError('conversation', conversationId);
  const message = await db
    .selectFrom('messages')
    .select('messages.conversationId')
    .where('messages.tenantId', '=', tenantId)
    .where('messages.id', '=', messageId)
    .executeTakeFirst();
  if (message === undefined) throw new NotFoundError('message', messageId);
  throw new ValidationError('messageId', `is a message of another conversation, not of ${conversationId}`);
}
