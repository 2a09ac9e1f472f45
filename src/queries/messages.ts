/**
 * Messages of a conversation: a tree through parent_id (branches and edits). Tenant-scoped like
 * conversations.ts: inside withTenant only, explicit tenant filter, and another tenant's ids behave
 * like ids that do not exist.
 *
 * Order: a message's created_at is the statement's time, statement_timestamp() (the time of the
 * append, not of the transaction's start, which now() would give to every message of one
 * transaction; not clock_timestamp(), a VOLATILE function that Citus refuses in a distributed
 * UPDATE, where a STABLE one is evaluated once on the coordinator) and is always
 * later than the conversation's previous activity: within a conversation, created_at strictly
 * increases in append order, so keyset pagination on (created_at, id) follows insertion.
 *
 * Trees: every message stores its depth in its thread (0 for a root), and the database holds each
 * parent to be a message of the same tenant and conversation one level up (migration 0013, a
 * composite foreign key through `depth`): no writer can make a cycle or a thread deeper than
 * MAX_THREAD_DEPTH messages.
 */
import { sql, type Kysely, type Selectable } from 'kysely';
import type { TenantTx } from '../db/tenant-tx.ts';
import { NotFoundError, ValidationError } from '../db/errors.ts';
import type { DB, JsonArray, JsonObject, Messages } from '../db/schema.generated.ts';
import { tenantOf } from '../db/tenant.ts';
import { cursorTimestamp, decodeCursor, tooLargeForPage, toSizedPage, type CursorScope, type Page, type SizedRow, keysetPast } from './cursor.ts';
import { DEFAULT_PAGE_BYTES } from './limits.ts';
import { assertInt, assertUuid, describe, jsonText, limitName, pageBytes, pageLimit, shown } from './validate.ts';
import { assertRole } from '../db/service-roles.ts';
import { statementTemplate } from '../db/statement-template.ts';

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

/**
 * Most messages in one thread (root … message, what getThread returns): a message's depth is 0 …
 * MAX_THREAD_DEPTH - 1. appendMessage refuses a parent at the last depth with a ValidationError;
 * the table's check constraint (messages_depth_check, migration 0013) refuses it for any writer.
 */
export const MAX_THREAD_DEPTH = 10_000;

/**
 * Default most bytes of a message's content as JSON text (UTF-8), 1 MiB: appendMessage refuses
 * bigger content with a ValidationError before any SQL; pass `maxContentBytes` to change it per call.
 */
export const MAX_MESSAGE_CONTENT_BYTES = 1_048_576;

/** The largest `maxContentBytes` appendMessage accepts: jsonb holds at most 255 MiB. */
const JSONB_MAX_BYTES = 255 * 1_048_576;

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
 * message's created_at, in one statement (a CTE reading the parent's depth, an `update
 * conversations … returning` CTE, and an `insert into messages … select … returning`). A
 * soft-deleted, missing or foreign conversation → NotFoundError('conversation'); a `parentId` that
 * is not a message of this conversation (missing, of another conversation or tenant) →
 * NotFoundError('message', parentId); a parent that is already the MAX_THREAD_DEPTH-th message of
 * its thread → ValidationError('parentId'); nothing is written then.
 *
 * `content` is a JSON object or array of at most `maxContentBytes` bytes of JSON text (default
 * MAX_MESSAGE_CONTENT_BYTES, 1 MiB), stored exactly: anything JSON.stringify or jsonb would change
 * (NaN, a Map, a Date, a toJSON method, a BigInt, a lone surrogate, a NUL…) is refused
 * with ValidationError('content') naming where, before any SQL (see jsonText in validate.ts).
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
  params: { conversationId: string; role: MessageRole; content: MessageContent; parentId?: string | null; maxContentBytes?: number },
): Promise<Message> {
  assertRole(db, 'appendMessage');
  const tenantId = tenantOf(db);
  const { conversationId, role } = params;
  const parentId = params.parentId ?? null;
  assertUuid('conversationId', conversationId);
  if (parentId !== null) assertUuid('parentId', parentId);
  if (typeof role !== 'string' || !(MESSAGE_ROLES as readonly string[]).includes(role)) {
    throw new ValidationError('role', `must be one of ${MESSAGE_ROLES.join(', ')}, got ${shown(role)}`);
  }
  const maxBytes = params.maxContentBytes ?? MAX_MESSAGE_CONTENT_BYTES;
  assertInt('maxContentBytes', maxBytes, 2);
  if (maxBytes > JSONB_MAX_BYTES) throw new ValidationError('maxContentBytes', `must be at most ${JSONB_MAX_BYTES} (jsonb's limit), got ${maxBytes}`);
  const content = contentJson(params.content, maxBytes);

  const values = { tenantId, conversationId, parent: parentId ?? NO_PARENT, parentId, role, content };
  const { rows } = await appendStatement(db, values, { withParent: parentId !== null }).execute(db);
  const row = rows[0];

  if (row !== undefined) return row as Message;
  // Nothing written: say why (only on this failure path a second statement runs).
  const found = await db
    .selectFrom('conversations')
    .leftJoin('messages', (join) =>
      join
        .onRef('messages.tenantId', '=', 'conversations.tenantId')
        .onRef('messages.conversationId', '=', 'conversations.id')
        .on('messages.id', '=', parentId ?? NO_PARENT),
    )
    .select(['conversations.id', 'messages.depth'])
    .where('conversations.tenantId', '=', tenantId)
    .where('conversations.id', '=', conversationId)
    .where((eb) => eb.not(eb.ref('conversations.deleted')))
    .executeTakeFirst();
  if (found === undefined || parentId === null) throw new NotFoundError('conversation', conversationId);
  // A parent with room below it that is there now was not when the statement ran (a concurrent write).
  if (found.depth === null || found.depth < MAX_THREAD_DEPTH - 1) throw new NotFoundError('message', parentId);
  throw new ValidationError(
    'parentId',
    `is message ${found.depth + 1} of its thread: a thread holds at most MAX_THREAD_DEPTH = ${MAX_THREAD_DEPTH} messages`,
  );
}

/** appendMessage's one statement, compiled once with a parent and once without (statementTemplate). */
const appendStatement = statementTemplate(
  (
    db: Kysely<DB>,
    v: { tenantId: string; conversationId: string; parent: string; parentId: string | null; role: MessageRole; content: string },
    shape: { withParent: boolean },
  ) =>
    db
      // The parent, if any: of this tenant and conversation, with room below it.
      .with('p', (qb) =>
        qb
          .selectFrom('messages')
          .select((eb) => eb(eb.ref('messages.depth'), '+', sql.lit(1)).as('depth'))
          .where('messages.tenantId', '=', v.tenantId)
          .where('messages.id', '=', v.parent)
          .where('messages.conversationId', '=', v.conversationId)
          .where('messages.depth', '<', sql.lit(MAX_THREAD_DEPTH - 1)),
      )
      .with('c', (qb) =>
        qb
          .updateTable('conversations')
          // Strictly after the previous activity, even if the clock stood still or went back.
          .set((eb) => ({
            lastActivityAt: sql<Date>`greatest(app.next_instant(${eb.ref('conversations.lastActivityAt')}), statement_timestamp())`,
          }))
          .where('conversations.tenantId', '=', v.tenantId)
          .where('conversations.id', '=', v.conversationId)
          .where((eb) => eb.not(eb.ref('conversations.deleted')))
          .$if(shape.withParent, (qb) => qb.where((eb) => eb.exists(eb.selectFrom('p').select(sql.lit(1).as('one')))))
          .returning(['conversations.tenantId', 'conversations.id', 'conversations.lastActivityAt']),
      )
      .with('m', (qb) =>
        qb
          .insertInto('messages')
          .columns(['tenantId', 'conversationId', 'parentId', 'role', 'content', 'createdAt', 'updatedAt', 'depth'])
          .expression((eb) =>
            eb
              .selectFrom('c')
              .select((eb) => [
                'c.tenantId',
                eb.ref('c.id').as('conversationId'),
                eb.cast<string | null>(eb.val(v.parentId), 'uuid').as('parentId'),
                eb.cast<string>(eb.val(v.role), 'text').as('role'),
                eb.cast<MessageContent>(eb.val(v.content), 'jsonb').as('content'),
                eb.ref('c.lastActivityAt').as('createdAt'),
                eb.ref('c.lastActivityAt').as('updatedAt'),
                (!shape.withParent ? sql<number>`0` : eb.selectFrom('p').select('p.depth')).as('depth'),
              ]),
          )
          .returning(COLUMNS),
      )
      .selectFrom('m')
      .select(['m.id', 'm.conversationId', 'm.parentId', 'm.role', 'm.content', 'm.createdAt', 'm.updatedAt']),
);

/** Stands for "no parent" in the parent lookup, which then finds nothing (the nil UUID is never a message id). */
const NO_PARENT = '00000000-0000-0000-0000-000000000000';

/**
 * One page of a conversation's messages, oldest first: keyset on (created_at, id) over
 * messages_list_idx, `limit` rows (default 50, at most 200); pass `nextCursor` back as `cursor`
 * (null: no more). Every branch of the tree is included (use getThread for one path). A missing or
 * foreign conversation gives an empty page; a soft-deleted one still lists its messages.
 *
 * Byte budget: a page holds at most `maxPageBytes` (default DEFAULT_PAGE_BYTES, 32 MiB) of
 * content, counted as the JSON text PostgreSQL sends (`octet_length(content::text)`, which can be
 * larger than what appendMessage measured: jsonb writes `, ` and `: ` and numbers in full). It
 * ends before the first message that would pass it, and nextCursor continues from there; a
 * message that alone passes it → ValidationError('maxPageBytes') naming it, nothing sent.
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
  params: { conversationId: string; limit?: number; cursor?: string | null; maxPageBytes?: number },
): Promise<Page<Message>> {
  assertRole(db, 'listMessages');
  const tenantId = tenantOf(db);
  const { conversationId } = params;
  assertUuid('conversationId', conversationId);
  const limit = pageLimit(params.limit);
  const maxBytes = pageBytes(params.maxPageBytes);
  const scope: CursorScope = { list: 'messages', tenantId, scope: conversationId.toLowerCase() };
  const after = params.cursor == null ? undefined : decodeCursor(params.cursor, scope);

  return messagePage(db, tenantId, { conversationId }, { after, limit, maxBytes, scope });
}

/** Which messages a page lists: a conversation's, a message's replies, or a conversation's roots. */
export type MessageFilter = { conversationId: string } | { parentId: string } | { rootsOf: string };

/**
 * One byte-budgeted page of a tenant's messages that match `filter`, oldest first (keyset on
 * (created_at, id) past `after`): listMessages' and listBranches' query. Content is sent only
 * while the running size of the page stays within `maxBytes` (see listMessages).
 */
export async function messagePage(
  db: TenantTx,
  tenantId: string,
  filter: MessageFilter,
  page: { after: ReturnType<typeof decodeCursor> | undefined; limit: number; maxBytes: number; scope: CursorScope },
): Promise<Page<Message>> {
  const { after, limit, maxBytes, scope } = page;
  const [by, id] =
    'conversationId' in filter ? (['conversation', filter.conversationId] as const)
    : 'parentId' in filter ? (['parent', filter.parentId] as const)
    : (['roots', filter.rootsOf] as const);
  const values = { tenantId, id, limit: limit + 1, maxBytes, afterAt: after?.at ?? null, afterId: after?.id ?? null };
  const { rows } = await messagePageStatement(db, values, { by, paged: after !== undefined }).execute(db);
  const limitText = limitName(maxBytes, DEFAULT_PAGE_BYTES, 'DEFAULT_PAGE_BYTES', 'maxPageBytes');
  // `role` is text to the query builder; the table's check constraint holds it to MessageRole.
  return toSizedPage(rows as (Message & SizedRow & { cursorAt: string })[], limit, scope, {
    maxBytes,
    limitName: limitText,
    what: 'message',
  });
}

interface MessagePageValues {
  tenantId: string;
  /** The conversation, parent message or conversation of the roots, as `by` says. */
  id: string;
  /** Rows fetched: the page's limit + 1 (one more says whether a next page exists). */
  limit: number;
  maxBytes: number;
  afterAt: string | null;
  afterId: string | null;
}

/** messagePage's statement, compiled once per filter and first-or-later page (statementTemplate). */
const messagePageStatement = statementTemplate(
  (db: Kysely<DB>, v: MessagePageValues, shape: { by: 'conversation' | 'parent' | 'roots'; paged: boolean }) =>
    db
      .selectFrom((eb) =>
        eb
          .selectFrom('messages')
          .select((eb) => [
            ...COLUMNS,
            cursorTimestamp(eb.ref('messages.createdAt')).as('cursorAt'),
            sql<number>`octet_length(${eb.ref('messages.content')}::text)`.as('rowBytes'),
          ])
          .where('messages.tenantId', '=', v.tenantId)
          .where((eb) =>
            shape.by === 'conversation' ? eb('messages.conversationId', '=', v.id)
            : shape.by === 'parent' ? eb('messages.parentId', '=', v.id)
            : eb.and([eb('messages.conversationId', '=', v.id), eb('messages.parentId', 'is', null)]),
          )
          .$if(shape.paged, (qb) =>
            qb.where((eb) => keysetPast(eb.ref('messages.createdAt'), eb.ref('messages.id'), { at: v.afterAt!, id: v.afterId! }, 'after')),
          )
          .orderBy('messages.createdAt', 'asc')
          .orderBy('messages.id', 'asc')
          .limit(v.limit)
          .as('p'),
      )
      .select((eb) => {
        // The running size in page order; content is sent only while it stays within the budget.
        const running = sql<string | number>`sum(${eb.ref('p.rowBytes')}) over (order by ${eb.ref('p.createdAt')}, ${eb.ref('p.id')})`;
        return [
          'p.id',
          'p.conversationId',
          'p.parentId',
          'p.role',
          sql<Message['content']>`case when ${running} <= ${v.maxBytes} then ${eb.ref('p.content')} end`.as('content'),
          'p.createdAt',
          'p.updatedAt',
          'p.cursorAt',
          'p.rowBytes',
          running.as('runningBytes'),
        ] as const;
      })
      .orderBy('p.createdAt', 'asc')
      .orderBy('p.id', 'asc'),
);

/**
 * The path from the root of the message tree down to `messageId`, root first: the thread a model
 * sees when it answers `messageId`, without the other branches; at most MAX_THREAD_DEPTH messages
 * (the database refuses deeper threads and cycles). One recursive statement up through
 * parent_id, each step a LATERAL subquery with LIMIT 1 that looks one row up by (tenant_id, id):
 * a nested loop of unique-index lookups whatever the planner's statistics say (the plain join of
 * the walk could be planned as a hash join over the tenant's messages at every level: past 30 s
 * at depth 10,000 under stale statistics). NotFoundError('message') if there is no such message.
 *
 * Byte budget: the thread's content, as the JSON text PostgreSQL sends, is at most `maxPageBytes`
 * (default DEFAULT_PAGE_BYTES, 32 MiB); a longer thread → ValidationError('maxPageBytes') with
 * its size, and no content is sent (read it with a larger budget, or page through listMessages).
 *
 * @example
 * // root → a → b1, and root → a → b2 (b2 an edit of b1)
 * await getThread(tx, { messageId: b2.id }); // [root, a, b2]
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function getThread(db: TenantTx, params: { messageId: string; maxPageBytes?: number }): Promise<Message[]> {
  assertRole(db, 'getThread');
  const tenantId = tenantOf(db);
  const { messageId } = params;
  assertUuid('messageId', messageId);
  const maxBytes = pageBytes(params.maxPageBytes);

  const rows = await db
    .withRecursive('thread', (qb) =>
      qb
        .selectFrom('messages')
        .select([...COLUMNS, 'messages.depth'])
        .where('messages.tenantId', '=', tenantId)
        .where('messages.id', '=', messageId)
        .unionAll((qb) =>
          qb
            .selectFrom('thread')
            .crossJoinLateral((eb) =>
              eb
                .selectFrom('messages')
                .select([...COLUMNS, 'messages.depth'])
                .where('messages.tenantId', '=', tenantId)
                .whereRef('messages.id', '=', 'thread.parentId')
                .limit(1)
                .as('parent'),
            )
            .select(['parent.id', 'parent.conversationId', 'parent.parentId', 'parent.role', 'parent.content', 'parent.createdAt', 'parent.updatedAt', 'parent.depth']),
        ),
    )
    .selectFrom('thread')
    .select((eb) => {
      // The whole thread's size; its content is sent only when it fits the budget.
      const total = sql<string | number>`sum(octet_length(${eb.ref('thread.content')}::text)) over ()`;
      return [
        'thread.id',
        'thread.conversationId',
        'thread.parentId',
        'thread.role',
        sql<Message['content']>`case when ${total} <= ${maxBytes} then ${eb.ref('thread.content')} end`.as('content'),
        'thread.createdAt',
        'thread.updatedAt',
        total.as('threadBytes'),
      ] as const;
    })
    .orderBy('thread.depth', 'asc')
    .execute();

  const first = rows[0];
  if (first === undefined) throw new NotFoundError('message', messageId);
  if (Number(first.threadBytes) > maxBytes) {
    const limitText = limitName(maxBytes, DEFAULT_PAGE_BYTES, 'DEFAULT_PAGE_BYTES', 'maxPageBytes');
    throw tooLargeForPage({ maxBytes, limitName: limitText }, `the thread of ${rows.length} messages up to ${messageId} holds`, Number(first.threadBytes));
  }
  return rows.map(({ threadBytes: _threadBytes, ...row }) => row) as Message[];
}

/** `content` as JSON text for a jsonb parameter: a JSON object or array, stored exactly (see jsonText), of at most `maxBytes` bytes. */
function contentJson(content: unknown, maxBytes: number): string {
  const isObject =
    typeof content === 'object' &&
    content !== null &&
    (Array.isArray(content) || Object.getPrototypeOf(content) === Object.prototype || Object.getPrototypeOf(content) === null);
  if (!isObject) throw new ValidationError('content', `must be a JSON object or array, got ${describe(content)}`);
  return jsonText('content', content, {
    maxBytes,
    limitName: maxBytes === MAX_MESSAGE_CONTENT_BYTES ? 'MAX_MESSAGE_CONTENT_BYTES' : 'maxContentBytes',
  });
}
