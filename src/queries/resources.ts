import { sql, type ExpressionBuilder, type Selectable } from 'kysely';
import type { TenantTx } from '../db/tenant-tx.ts';
import { NotFoundError, ValidationError, foreignKeyViolated } from '../db/errors.ts';
import type { DB, Resources } from '../db/schema.generated.ts';
import { tenantOf } from '../db/tenant.ts';
import { cursorTimestamp, decodeCursor, toSizedPage, type CursorScope, type Page, keysetPast } from './cursor.ts';
import { DEFAULT_PAGE_BYTES, MAX_CONTENT_BYTES_CEILING, MAX_METADATA_BYTES, MAX_RESOURCE_CONTENT_BYTES } from './limits.ts';
import { assertText, assertTextBytes, assertUuid, jsonObject, limitName, limitOption, pageBytes, pageLimit } from './validate.ts';
import { assertRole } from '../db/service-roles.ts';
import { visibleAgent } from './agents.ts';

/** A document or file of the current tenant, attached to an agent and/or a message. */
export type Resource = Pick<
  Selectable<Resources>,
  'id' | 'agentId' | 'messageId' | 'name' | 'type' | 'content' | 's3Uri' | 'metadata' | 'createdAt' | 'updatedAt'
>;

const RESOURCE_COLUMNS = [
  'id', 'agentId', 'messageId', 'name', 'type', 'content', 's3Uri', 'metadata', 'createdAt', 'updatedAt',
] as const;

/**
 * Creates a resource of the current tenant, optionally attached to an agent and/or a message.
 *
 * A resource belongs to the tenant (it has no user, and listResources lists it tenant-wide), so
 * the agent it is attached to must be one its users may use: with `userId` (the user the
 * resource is created for, a user of the tenant, else NotFoundError('user')), an agent that user
 * may use — global, tenant-wide, the user's own or shared with the user; without `userId`, an
 * agent every user of the tenant may use — global or tenant-wide. Any other agent (a user's
 * private agent without that user, another tenant's) → NotFoundError('agent', id), exactly as an
 * id that does not exist. `messageId` must be one of the tenant's messages, else
 * NotFoundError('message', id).
 *
 * Limits, checked before any SQL (ValidationError naming the field and the limit): `content` at
 * most `maxContentBytes` bytes of UTF-8 (default MAX_RESOURCE_CONTENT_BYTES, 16 MiB; at most
 * MAX_CONTENT_BYTES_CEILING), `metadata` at most `maxMetadataBytes` bytes of JSON (default
 * MAX_METADATA_BYTES, 64 KiB), `name` 500 characters, `type` 100, `s3Uri` 2048. A resource larger
 * than the defaults is listed only with a `maxPageBytes` that holds it (see listResources).
 *
 * @example
 * const doc = await withTenant(db, tenantId, (tx) =>
 *   createResource(tx, { name: 'handbook.pdf', type: 'pdf', s3Uri: 's3://docs/handbook.pdf', agentId, metadata: { pages: 12 } }));
 * const mine = await withTenant(db, tenantId, (tx) =>
 *   createResource(tx, { name: 'notes.md', type: 'text', content: '…', agentId: myPrivateAgentId, userId: me }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function createResource(
  db: TenantTx,
  params: {
    name: string;
    type: string;
    content?: string | null;
    s3Uri?: string | null;
    metadata?: Record<string, unknown>;
    agentId?: string | null;
    messageId?: string | null;
    /** The user the resource is created for: the agent must be one this user may use. */
    userId?: string | null;
    /** Most bytes of `content` for this call (default MAX_RESOURCE_CONTENT_BYTES). */
    maxContentBytes?: number;
    /** Most bytes of `metadata` as JSON for this call (default MAX_METADATA_BYTES). */
    maxMetadataBytes?: number;
  },
): Promise<Resource> {
  assertRole(db, 'createResource');
  const tenantId = tenantOf(db);
  assertText('name', params.name, 500);
  assertText('type', params.type, 100);
  const maxContent = limitOption('maxContentBytes', params.maxContentBytes, MAX_RESOURCE_CONTENT_BYTES, MAX_CONTENT_BYTES_CEILING);
  const maxMetadata = limitOption('maxMetadataBytes', params.maxMetadataBytes, MAX_METADATA_BYTES, MAX_CONTENT_BYTES_CEILING);
  const content = params.content ?? null;
  if (content !== null) {
    assertTextBytes('content', content, maxContent, limitName(maxContent, MAX_RESOURCE_CONTENT_BYTES, 'MAX_RESOURCE_CONTENT_BYTES', 'maxContentBytes'));
  }
  const s3Uri = params.s3Uri ?? null;
  if (s3Uri !== null) {
    assertText('s3Uri', s3Uri, 2048);
    if (!s3Uri.startsWith('s3://')) throw new ValidationError('s3Uri', 'must start with s3://');
  }
  const metadata = jsonObject('metadata', params.metadata === undefined ? {} : params.metadata, {
    maxBytes: maxMetadata,
    limitName: limitName(maxMetadata, MAX_METADATA_BYTES, 'MAX_METADATA_BYTES', 'maxMetadataBytes'),
  });
  const agentId = params.agentId ?? null;
  if (agentId !== null) assertUuid('agentId', agentId);
  const messageId = params.messageId ?? null;
  if (messageId !== null) assertUuid('messageId', messageId);
  const userId = params.userId ?? null;
  if (userId !== null) assertUuid('userId', userId);

  // The scope of the agent when the user (or every user) may use it, else NULL: the row's half of
  // the key (agent_scope, agent_id) -> agents (scope, id), which alone would accept any agent of
  // the tenant, private ones included (foreign-key checks bypass row-level security).
  const agentScope = (eb: ExpressionBuilder<DB, never>) =>
    eb
      .selectFrom('agents as a')
      .select('a.scope')
      .where('a.id', '=', agentId)
      .where((eb) => visibleAgent(eb, tenantId, userId === null ? 'everyUser' : { userId }));

  let resource: Resource | undefined;
  try {
    resource = await db
      .insertInto('resources')
      .columns(['tenantId', 'agentId', 'agentScope', 'messageId', 'name', 'type', 'content', 's3Uri', 'metadata'])
      .expression(
        db
          .selectNoFrom((eb) => [
            eb.val(tenantId).as('tenantId'),
            eb.val(agentId).as('agentId'),
            agentId === null ? eb.val<string | null>(null).as('agentScope') : agentScope(eb).as('agentScope'),
            eb.val(messageId).as('messageId'),
            eb.val(params.name).as('name'),
            eb.val(params.type).as('type'),
            eb.val(content).as('content'),
            eb.val(s3Uri).as('s3Uri'),
            eb.val(metadata).as('metadata'),
          ])
          // Nothing to insert when the agent is not one the user may use.
          .$if(agentId !== null, (qb) => qb.where((eb) => eb(agentScope(eb), 'is not', null)))
          .$if(userId !== null, (qb) =>
            qb.where((eb) =>
              eb.exists(eb.selectFrom('users as u').select(eb.lit(1).as('one')).where('u.tenantId', '=', tenantId).where('u.id', '=', userId)),
            ),
          ),
      )
      .returning(RESOURCE_COLUMNS)
      .executeTakeFirst();
  } catch (error) {
    const constraint = foreignKeyViolated(error);
    if (constraint === 'resources_tenant_id_message_id_fkey' && messageId !== null) throw new NotFoundError('message', messageId);
    if (constraint === 'resources_agent_id_fkey' && agentId !== null) throw new NotFoundError('agent', agentId);
    throw error;
  }
  if (resource === undefined) {
    if (userId !== null) {
      const user = await db.selectFrom('users').select('id').where('tenantId', '=', tenantId).where('id', '=', userId).executeTakeFirst();
      if (user === undefined) throw new NotFoundError('user', userId);
    }
    throw new NotFoundError('agent', agentId ?? '');
  }
  return resource;
}

/** The resource with this id in the current tenant; NotFoundError('resource', id) otherwise. Roles: app_cms. */
export async function getResource(db: TenantTx, params: { resourceId: string }): Promise<Resource> {
  assertRole(db, 'getResource');
  const tenantId = tenantOf(db);
  assertUuid('resourceId', params.resourceId);
  const resource = await db
    .selectFrom('resources')
    .select(RESOURCE_COLUMNS)
    .where('tenantId', '=', tenantId)
    .where('id', '=', params.resourceId)
    .executeTakeFirst();
  if (resource === undefined) throw new NotFoundError('resource', params.resourceId);
  return resource;
}

/**
 * Changes a resource of the current tenant: the fields given (`name`, `type`, `content`, `s3Uri`,
 * `metadata`), each validated as createResource validates it (`content` and `s3Uri` may be set to
 * null; `metadata` replaces the whole object); at least one field, else ValidationError. A missing
 * or foreign resource → NotFoundError('resource', id). Its chunks are not touched: after changing
 * `content`, re-index with replaceResourceChunks (in the same transaction, so that searches see the
 * new text and its chunks together). The agent and the message it is attached to do not change.
 *
 * @example
 * await withTenant(db, tenantId, (tx) => updateResource(tx, { resourceId, name: 'handbook-v2.pdf', metadata: { pages: 14 } }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function updateResource(
  db: TenantTx,
  params: {
    resourceId: string;
    name?: string;
    type?: string;
    content?: string | null;
    s3Uri?: string | null;
    metadata?: Record<string, unknown>;
    /** Most bytes of `content` for this call (default MAX_RESOURCE_CONTENT_BYTES). */
    maxContentBytes?: number;
    /** Most bytes of `metadata` as JSON for this call (default MAX_METADATA_BYTES). */
    maxMetadataBytes?: number;
  },
): Promise<Resource> {
  assertRole(db, 'updateResource');
  const tenantId = tenantOf(db);
  assertUuid('resourceId', params.resourceId);
  const changes: { name?: string; type?: string; content?: string | null; s3Uri?: string | null; metadata?: string } = {};
  if (params.name !== undefined) {
    assertText('name', params.name, 500);
    changes.name = params.name;
  }
  if (params.type !== undefined) {
    assertText('type', params.type, 100);
    changes.type = params.type;
  }
  if (params.content !== undefined) {
    const maxContent = limitOption('maxContentBytes', params.maxContentBytes, MAX_RESOURCE_CONTENT_BYTES, MAX_CONTENT_BYTES_CEILING);
    if (params.content !== null) {
      assertTextBytes('content', params.content, maxContent, limitName(maxContent, MAX_RESOURCE_CONTENT_BYTES, 'MAX_RESOURCE_CONTENT_BYTES', 'maxContentBytes'));
    }
    changes.content = params.content;
  }
  if (params.s3Uri !== undefined) {
    if (params.s3Uri !== null) {
      assertText('s3Uri', params.s3Uri, 2048);
      if (!params.s3Uri.startsWith('s3://')) throw new ValidationError('s3Uri', 'must start with s3://');
    }
    changes.s3Uri = params.s3Uri;
  }
  if (params.metadata !== undefined) {
    const maxMetadata = limitOption('maxMetadataBytes', params.maxMetadataBytes, MAX_METADATA_BYTES, MAX_CONTENT_BYTES_CEILING);
    changes.metadata = jsonObject('metadata', params.metadata, {
      maxBytes: maxMetadata,
      limitName: limitName(maxMetadata, MAX_METADATA_BYTES, 'MAX_METADATA_BYTES', 'maxMetadataBytes'),
    });
  }
  if (Object.keys(changes).length === 0) throw new ValidationError('params', 'must change at least one of name, type, content, s3Uri, metadata');
  const resource = await db
    .updateTable('resources')
    .set(changes)
    .where('tenantId', '=', tenantId)
    .where('id', '=', params.resourceId)
    .returning(RESOURCE_COLUMNS)
    .executeTakeFirst();
  if (resource === undefined) throw new NotFoundError('resource', params.resourceId);
  return resource;
}

/**
 * Deletes a resource of the current tenant and, in the same statement (the foreign key's ON DELETE
 * CASCADE), every chunk of it: no search sees the resource's chunks once this commits. Returns
 * true when there was such a resource (false for a missing or foreign id: nothing happens).
 *
 * @example
 * await withTenant(db, tenantId, (tx) => deleteResource(tx, { resourceId })); // true
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function deleteResource(db: TenantTx, params: { resourceId: string }): Promise<boolean> {
  assertRole(db, 'deleteResource');
  const tenantId = tenantOf(db);
  assertUuid('resourceId', params.resourceId);
  const result = await db.deleteFrom('resources').where('tenantId', '=', tenantId).where('id', '=', params.resourceId).executeTakeFirst();
  return result.numDeletedRows > 0n;
}

/**
 * One page of the current tenant's resources, newest first: keyset on (created_at desc, id desc),
 * optionally only those of an agent and/or a message; `limit` rows (default 50, at most 200).
 * Pass `nextCursor` back as `cursor`, with the same filters, for the next page (null: no more); a
 * cursor of other filters is a ValidationError('cursor'). created_at never changes, so a walk over
 * pages returns every resource that exists throughout it exactly once; resources created during
 * the walk sort above the cursor and appear in the next walk.
 *
 * Byte budget: a page holds at most `maxPageBytes` (default DEFAULT_PAGE_BYTES, 32 MiB) of its
 * rows' text (content, metadata as JSON, name, type, s3Uri, in UTF-8): it ends before the first
 * row that would pass it, and nextCursor continues from that row. The sizes are read in SQL
 * (`octet_length`, from the stored value's header) before any content is sent; a resource that
 * alone passes the budget → ValidationError('maxPageBytes') naming it and its size, nothing sent.
 *
 * @example
 * const first = await withTenant(db, tenantId, (tx) => listResources(tx, { agentId, limit: 20 }));
 * const next = await withTenant(db, tenantId, (tx) => listResources(tx, { agentId, limit: 20, cursor: first.nextCursor }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function listResources(
  db: TenantTx,
  params: { agentId?: string; messageId?: string; limit?: number; cursor?: string | null; maxPageBytes?: number } = {},
): Promise<Page<Resource>> {
  assertRole(db, 'listResources');
  const tenantId = tenantOf(db);
  const { agentId, messageId } = params;
  if (agentId !== undefined) assertUuid('agentId', agentId);
  if (messageId !== undefined) assertUuid('messageId', messageId);
  const limit = pageLimit(params.limit);
  const maxBytes = pageBytes(params.maxPageBytes);
  const filters = `agent=${agentId?.toLowerCase() ?? '*'};message=${messageId?.toLowerCase() ?? '*'}`;
  const scope: CursorScope = { list: 'resources', tenantId, scope: filters };
  const after = params.cursor == null ? undefined : decodeCursor(params.cursor, scope);
  const rows = await db
    .selectFrom((eb) =>
      eb
        .selectFrom('resources')
        .select(RESOURCE_COLUMNS)
        .select((eb) => [
          cursorTimestamp(eb.ref('createdAt')).as('cursorAt'),
          sql<number>`coalesce(octet_length(${eb.ref('content')}), 0) + octet_length(${eb.ref('metadata')}::text)
            + octet_length(${eb.ref('name')}) + octet_length(${eb.ref('type')}) + coalesce(octet_length(${eb.ref('s3Uri')}), 0)`.as('rowBytes'),
        ])
        .where('tenantId', '=', tenantId)
        .$if(agentId !== undefined, (qb) => qb.where('agentId', '=', agentId!))
        .$if(messageId !== undefined, (qb) => qb.where('messageId', '=', messageId!))
        .$if(after !== undefined, (qb) =>
          qb.where((eb) => keysetPast(eb.ref('createdAt'), eb.ref('id'), after!)),
        )
        .orderBy('createdAt', 'desc')
        .orderBy('id', 'desc')
        .limit(limit + 1)
        .as('p'),
    )
    .select((eb) => {
      // The running size in page order; a row's text is sent only while it stays within the budget.
      const running = sql<string | number>`sum(${eb.ref('p.rowBytes')}) over (order by ${eb.ref('p.createdAt')} desc, ${eb.ref('p.id')} desc)`;
      const fits = <T>(column: 'p.content' | 'p.metadata' | 'p.name' | 'p.type' | 'p.s3Uri') =>
        sql<T>`case when ${running} <= ${maxBytes} then ${eb.ref(column)} end`;
      return [
        'p.id',
        'p.agentId',
        'p.messageId',
        fits<string>('p.name').as('name'),
        fits<string>('p.type').as('type'),
        fits<string | null>('p.content').as('content'),
        fits<string | null>('p.s3Uri').as('s3Uri'),
        fits<Resource['metadata']>('p.metadata').as('metadata'),
        'p.createdAt',
        'p.updatedAt',
        'p.cursorAt',
        'p.rowBytes',
        running.as('runningBytes'),
      ] as const;
    })
    .orderBy('p.createdAt', 'desc')
    .orderBy('p.id', 'desc')
    .execute();
  const limitText = limitName(maxBytes, DEFAULT_PAGE_BYTES, 'DEFAULT_PAGE_BYTES', 'maxPageBytes');
  return toSizedPage(rows, limit, scope, { maxBytes, limitName: limitText, what: 'resource' });
}
