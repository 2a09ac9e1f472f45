/**
 * Messages of a conversation: a tree through parent_id (branches and edits). Tenant-scoped like
 * conversations.ts: inside withTenant only, explicit tenant filter, and another tenant's ids behave
 * like ids that do not exist.
 *
 * Order: a message's created_at is taken with clock_timestamp() (the time of the append, not of the
 * transaction's start, which now() would give to every message of one transaction) and is always
 * later than the conversation's previous activity: within a conversation, created_at strictly
 * increases in append order, so keyset pagination on (created_at, id) follows insertion.
 */
import { sql, type Selectable } from 'kysely';
import type { TenantTx } from '../db/tenant-tx.ts';
import { NotFoundError, ValidationError } from '../db/errors.ts';
import type { JsonArray, JsonObject, Messages } from '../db/schema.generated.ts';
import { tenantOf } from '../db/tenant.ts';
import { cursorTimestamp, decodeCursor, encodeCursor, type CursorScope, type Page } from './cursor.ts';
import { assertUuid, pageLimit } from './validate.ts';
import { assertRole } from '../db/service-roles.ts';

/** Who wrote a message (the table's check constraint allows exactly these). */
export const MESSAGE_ROLES = ['user', 'assistant', 'system', 'tool'] as const;
export type MessageRole = (typeof MESSAGE_ROLES)[number];

/** A message as the query functions return it. */
export type Message = Omit<
  Pick<Selectable<Messages>, 'id' | 'conversationId' | 'parentId' | 'role' | 'content' | 'createdAt' | 'updatedAt'>,
  'role'
> & { role: MessageRole };

/** What appendMessage stores as content: a JSON object or array. */
export type MessageContent = JsonObject | JsonArray;

/** How far getThread follows parent_id: deeper chains (or a cycle) are cut at this many ancestors. */
export const MAX_THREAD_DEPTH = 10_000;

const COLUMNS = [
  'messages.id',
  'messages.conversationId',
  'messages.parentId',
  'messages.role',
  'messages.content',
  'messages.createdAt',
  'messages.updatedAt',
] as const;

/**
 * Appends a message to a live conversation and bumps the conversation's last_activity_at to the
 * message's created_at, in one statement (an `update conversations … returning` CTE feeding an
 * `insert into messages … select … returning`). A soft-deleted, missing or foreign conversation →
 * NotFoundError('conversation'); a `parentId` that is not a message of this conversation (missing,
 * of another conversation or tenant) → NotFoundError('message', parentId); nothing is written then.
 *
 * The conversation row is locked first (as any update does), so concurrent appends to one
 * conversation take their created_at in commit order.
 *
 * @example
 * const question = await appendMessage(tx, { conversationId, role: 'user', content: { text: 'Hi' } });
 * const answer = await appendMessage(tx, { conversationId, role: 'assistant', content: { text: 'Hello!' }, parentId: question.id });
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function appendMessage(
  db: TenantTx,
  params: { conversationId: string; role: MessageRole; content: MessageContent; parentId?: string | null },
): Promise<Message> {
  assertRole(db, 'appendMessage');
  const tenantId = tenantOf(db);
  const { conversationId, role } = params;
  const parentId = params.parentId ?? null;
  assertUuid('conversationId', conversationId);
  if (parentId !== null) assertUuid('parentId', parentId);
  if (typeof role !== 'string' || !(MESSAGE_ROLES as readonly string[]).includes(role)) {
    throw new ValidationError('role', `must be one of ${MESSAGE_ROLES.join(', ')}, got ${JSON.stringify(role)}`);
  }
  const content = contentJson(params.content);

  const row = await db
    .with('c', (qb) =>
      qb
        .updateTable('conversations')
        // Strictly after the previous activity, even if the clock stood still or went back.
        .set((eb) => ({
          lastActivityAt: sql<Date>`greatest(${eb.ref('conversations.lastActivityAt')} + interval '1 microsecond', clock_timestamp())`,
        }))
        .where('conversations.tenantId', '=', tenantId)
        .where('conversations.id', '=', conversationId)
        .where((eb) => eb.not(eb.ref('conversations.deleted')))
        .$if(parentId !== null, (qb) =>
          qb.where((eb) =>
            eb.exists(
              eb
                .selectFrom('messages')
                .select(sql.lit(1).as('one'))
                .where('messages.tenantId', '=', tenantId)
                .where('messages.id', '=', parentId!)
                .where('messages.conversationId', '=', conversationId),
            ),
          ),
        )
        .returning(['conversations.tenantId', 'conversations.id', 'conversations.lastActivityAt']),
    )
    .with('m', (qb) =>
      qb
        .insertInto('messages')
        .columns(['tenantId', 'conversationId', 'parentId', 'role', 'content', 'createdAt', 'updatedAt'])
        .expression((eb) =>
          eb
            .selectFrom('c')
            .select((eb) => [
              'c.tenantId',
              eb.ref('c.id').as('conversationId'),
              eb.cast<string | null>(eb.val(parentId), 'uuid').as('parentId'),
              eb.cast<string>(eb.val(role), 'text').as('role'),
              eb.cast<MessageContent>(eb.val(content), 'jsonb').as('content'),
              eb.ref('c.lastActivityAt').as('createdAt'),
              eb.ref('c.lastActivityAt').as('updatedAt'),
            ]),
        )
        .returning(COLUMNS),
    )
    .selectFrom('m')
    .select(['m.id', 'm.conversationId', 'm.parentId', 'm.role', 'm.content', 'm.createdAt', 'm.updatedAt'])
    .executeTakeFirst();

  if (row !== undefined) return row as Message;
  // Nothing written: say why (only on this failure path a second statement runs).
  const live = await db
    .selectFrom('conversations')
    .select('conversations.id')
    .where('conversations.tenantId', '=', tenantId)
    .where('conversations.id', '=', conversationId)
    .where((eb) => eb.not(eb.ref('conversations.deleted')))
    .executeTakeFirst();
  if (live === undefined || parentId === null) throw new NotFoundError('conversation', conversationId);
  throw new NotFoundError('message', parentId);
}

/**
 * One page of a conversation's messages, oldest first: keyset on (created_at, id) over
 * messages_list_idx, `limit` rows (default 50, at most 200); pass `nextCursor` back as `cursor`
 * (null: no more). Every branch of the tree is included (use getThread for one path). A missing or
 * foreign conversation gives an empty page; a soft-deleted one still lists its messages.
 *
 * Guarantee of a walk over pages (each page may be its own transaction): every message is returned
 * exactly once, in order, including the ones appended during the walk: appendMessage gives a new
 * message a created_at after every message already in the conversation, and concurrent appends
 * wait for each other on the conversation row, so none can commit behind a reader's cursor.
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function listMessages(
  db: TenantTx,
  params: { conversationId: string; limit?: number; cursor?: string | null },
): Promise<Page<Message>> {
  assertRole(db, 'listMessages');
  const tenantId = tenantOf(db);
  const { conversationId } = params;
  assertUuid('conversationId', conversationId);
  const limit = pageLimit(params.limit);
  const scope: CursorScope = { list: 'messages', tenantId, scope: conversationId.toLowerCase() };
  const after = params.cursor == null ? undefined : decodeCursor(params.cursor, scope);

  const rows = await db
    .selectFrom('messages')
    .select((eb) => [...COLUMNS, cursorTimestamp(eb.ref('messages.createdAt')).as('cursorAt')])
    .where('messages.tenantId', '=', tenantId)
    .where('messages.conversationId', '=', conversationId)
    .$if(after !== undefined, (qb) =>
      qb.where(
        (eb) =>
          sql<boolean>`(${eb.ref('messages.createdAt')}, ${eb.ref('messages.id')}) > (${after!.at}::timestamptz, ${after!.id}::uuid)`,
      ),
    )
    .orderBy('messages.createdAt', 'asc')
    .orderBy('messages.id', 'asc')
    .limit(limit + 1)
    .execute();

  const items = rows.slice(0, limit).map(({ cursorAt: _cursorAt, ...row }) => row as Message);
  const last = rows[limit - 1];
  const nextCursor = rows.length > limit && last !== undefined ? encodeCursor(scope, { at: last.cursorAt, id: last.id }) : null;
  return { items, nextCursor };
}

/**
 * The path from the root of the message tree down to `messageId`, root first: the thread a model
 * sees when it answers `messageId`, without the other branches. One recursive statement up
 * through parent_id, cut at MAX_THREAD_DEPTH ancestors (a cycle made by hand ends there, each
 * message once). NotFoundError('message') if there is no such message.
 *
 * @example
 * // root → a → b1, and root → a → b2 (b2 an edit of b1)
 * await getThread(tx, { messageId: b2.id }); // [root, a, b2]
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function getThread(db: TenantTx, params: { messageId: string }): Promise<Message[]> {
  assertRole(db, 'getThread');
  const tenantId = tenantOf(db);
  const { messageId } = params;
  assertUuid('messageId', messageId);

  const rows = await db
    .withRecursive('thread', (qb) =>
      qb
        .selectFrom('messages')
        .select([...COLUMNS, sql<number>`0`.as('depth')])
        .where('messages.tenantId', '=', tenantId)
        .where('messages.id', '=', messageId)
        .unionAll((qb) =>
          qb
            .selectFrom('messages')
            .innerJoin('thread', (join) =>
              join.onRef('messages.id', '=', 'thread.parentId').on('messages.tenantId', '=', tenantId),
            )
            .select((eb) => [...COLUMNS, eb(eb.ref('thread.depth'), '+', 1).as('depth')])
            .where('thread.depth', '<', MAX_THREAD_DEPTH),
        ),
    )
    // Each message once, at its nearest depth: a hand-made cycle would otherwise repeat rows.
    .with('path', (qb) =>
      qb
        .selectFrom('thread')
        .distinctOn('thread.id')
        .select(['thread.id', 'thread.conversationId', 'thread.parentId', 'thread.role', 'thread.content', 'thread.createdAt', 'thread.updatedAt', 'thread.depth'])
        .orderBy('thread.id')
        .orderBy('thread.depth'),
    )
    .selectFrom('path')
    .select(['path.id', 'path.conversationId', 'path.parentId', 'path.role', 'path.content', 'path.createdAt', 'path.updatedAt'])
    .orderBy('path.depth', 'desc')
    .execute();

  if (rows.length === 0) throw new NotFoundError('message', messageId);
  return rows as Message[];
}

/** `content` as JSON text for a jsonb parameter, after checking it is a JSON object or array. */
function contentJson(content: unknown): string {
  const isObject =
    typeof content === 'object' &&
    content !== null &&
    (Array.isArray(content) || Object.getPrototypeOf(content) === Object.prototype || Object.getPrototypeOf(content) === null);
  if (!isObject) throw new ValidationError('content', 'must be a JSON object or array');
  let text: string;
  try {
    text = JSON.stringify(content);
  } catch (error) {
    throw new ValidationError('content', `is not JSON: ${(error as Error).message}`);
  }
  // jsonb cannot hold U+0000 (PostgreSQL refuses \u0000 in jsonb text).
  if (/(^|[^\\])(\\\\)*\\u0000/.test(text)) throw new ValidationError('content', 'must not contain NUL characters');
  return text;
}
