/**
 * Prompts: system prompts, versioned by name. Shared-or-owned (migration 0016): global prompts
 * come from the seed and every tenant reads them; a tenant's cms writes its own. A version is
 * never changed: createPromptVersion is the edit, so an agent pinned to a version keeps running
 * exactly that text. Versions are numbered per name and owner: a tenant's prompt named like a
 * global one starts at version 1 and, for that tenant, shadows the global one in lookups by name.
 */
import { sql, type Selectable } from 'kysely';
import { NotFoundError, ValidationError } from '../db/errors.ts';
import type { Prompts } from '../db/schema.generated.ts';
import { assertRole } from '../db/service-roles.ts';
import { tenantOf } from '../db/tenant.ts';
import type { TenantTx } from '../db/tenant-tx.ts';
import type { CursorScope, Page } from './cursor.ts';
import { decodeIntCursor, scopeDigest, toIntPage } from './int-cursor.ts';
import { assertInt, assertText, assertTextBytes, pageLimit } from './validate.ts';

/** One version of a prompt: global (`tenantId` null, from the seed) or the current tenant's. */
export type Prompt = Pick<Selectable<Prompts>, 'id' | 'tenantId' | 'name' | 'version' | 'content' | 'createdAt' | 'updatedAt'>;

/** A version in listPromptVersions: without its content (getPrompt reads it), with its size. */
export type PromptVersion = Omit<Prompt, 'content'> & { contentBytes: number };

/** The largest prompt content accepted by createPromptVersion, in UTF-8 bytes. */
export const MAX_PROMPT_CONTENT_BYTES = 256 * 1024;
/** The longest prompt name. */
export const MAX_PROMPT_NAME_LENGTH = 200;

const NIL_UUID = '00000000-0000-0000-0000-000000000000';
const PROMPT_COLUMNS = ['id', 'tenantId', 'name', 'version', 'content', 'createdAt', 'updatedAt'] as const;
/** How many times createPromptVersion takes the next number again after a concurrent writer took it. */
const MAX_VERSION_ATTEMPTS = 100;

/**
 * Adds the next version of the current tenant's prompt `name` (1 for a new name) with `content`,
 * and returns it. Concurrency-safe: two writers never get the same number and neither fails; a
 * writer that lost the race to a number takes the next one. Each attempt is a read of the highest
 * version and an INSERT … ON CONFLICT DO NOTHING on (scope, name, version): the loser's insert
 * waits for the winner's transaction and then writes nothing, without an error that would abort
 * the caller's transaction. Under REPEATABLE READ or SERIALIZABLE the loser gets PostgreSQL's
 * serialization failure (40001) instead: retry its transaction.
 *
 * @example
 * const v2 = await withTenant(db, tenantId, (tx) => createPromptVersion(tx, { name: 'support', content: 'You are …' }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function createPromptVersion(db: TenantTx, params: { name: string; content: string }): Promise<Prompt> {
  assertRole(db, 'createPromptVersion');
  const tenantId = tenantOf(db);
  assertText('name', params.name, MAX_PROMPT_NAME_LENGTH);
  assertTextBytes('content', params.content, MAX_PROMPT_CONTENT_BYTES, 'MAX_PROMPT_CONTENT_BYTES');
  if (params.content.trim().length === 0) throw new ValidationError('content', 'must not be empty');
  const { name, content } = params;
  for (let attempt = 1; attempt <= MAX_VERSION_ATTEMPTS; attempt += 1) {
    const { latest } = await db
      .selectFrom('prompts')
      .select((eb) => eb.fn.max('version').as('latest'))
      .where('scope', '=', tenantId)
      .where('name', '=', name)
      .executeTakeFirstOrThrow();
    const inserted = await db
      .insertInto('prompts')
      .values({ tenantId, name, version: (latest ?? 0) + 1, content })
      .onConflict((oc) => oc.columns(['scope', 'name', 'version']).doNothing())
      .returning(PROMPT_COLUMNS)
      .executeTakeFirst();
    if (inserted !== undefined) return inserted;
  }
  throw new Error(`createPromptVersion: ${MAX_VERSION_ATTEMPTS} concurrent writers of prompt ${JSON.stringify(name)} took every number first; try again`);
}

/**
 * A prompt version: by `promptId`, or by `name`: the given `version`, else the latest. By name, the
 * current tenant's prompt of that name when it has one, else the global one (a tenant's prompt
 * shadows a global one of the same name; versions never mix the two). A prompt that is neither
 * global nor the tenant's, or no such name or version → NotFoundError('prompt').
 *
 * @example
 * const latest = await withTenant(db, tenantId, (tx) => getPrompt(tx, { name: 'support' }));
 * const pinned = await withTenant(db, tenantId, (tx) => getPrompt(tx, { name: 'support', version: 1 }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function getPrompt(db: TenantTx, params: { promptId: number } | { name: string; version?: number }): Promise<Prompt> {
  assertRole(db, 'getPrompt');
  const tenantId = tenantOf(db);
  if ('promptId' in params) {
    assertInt('promptId', params.promptId, 1);
    const row = await db
      .selectFrom('prompts')
      .select(PROMPT_COLUMNS)
      .where('id', '=', params.promptId)
      .where((eb) => eb.or([eb('tenantId', 'is', null), eb('tenantId', '=', tenantId)]))
      .executeTakeFirst();
    if (row === undefined) throw new NotFoundError('prompt', params.promptId);
    return row;
  }
  assertText('name', params.name, MAX_PROMPT_NAME_LENGTH);
  if (params.version !== undefined) assertInt('version', params.version, 1);
  const { name, version } = params;
  const row = await db
    .selectFrom('prompts')
    .select(PROMPT_COLUMNS)
    .where('scope', '=', await scopeOfName(db, tenantId, name))
    .where('name', '=', name)
    .$if(version !== undefined, (qb) => qb.where('version', '=', version!))
    .orderBy('version', 'desc')
    .limit(1)
    .executeTakeFirst();
  if (row === undefined) throw new NotFoundError('prompt', version === undefined ? name : `${name} v${version}`);
  return row;
}

/**
 * One page of the versions of prompt `name` (the tenant's, else the global one: see getPrompt),
 * newest first, without their content (`contentBytes` gives its size): keyset on version,
 * `limit` 1..200 (default 50); pass `nextCursor` back as `cursor`, with the same name, for the
 * next page (null: no more). No version of that name → an empty page.
 *
 * @example
 * const { items } = await withTenant(db, tenantId, (tx) => listPromptVersions(tx, { name: 'support' }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function listPromptVersions(
  db: TenantTx,
  params: { name: string; limit?: number; cursor?: string | null },
): Promise<Page<PromptVersion>> {
  assertRole(db, 'listPromptVersions');
  const tenantId = tenantOf(db);
  assertText('name', params.name, MAX_PROMPT_NAME_LENGTH);
  const limit = pageLimit(params.limit);
  const scope: CursorScope = { list: 'prompt_versions', tenantId, scope: scopeDigest(params.name) };
  const before = params.cursor == null ? undefined : decodeIntCursor(params.cursor, scope);
  const rows = await db
    .selectFrom('prompts')
    .select(['id', 'tenantId', 'name', 'version', 'createdAt', 'updatedAt'])
    .select(sql<number>`octet_length(content)`.as('contentBytes'))
    .where('scope', '=', await scopeOfName(db, tenantId, params.name))
    .where('name', '=', params.name)
    .$if(before !== undefined, (qb) => qb.where('version', '<', before!))
    .orderBy('version', 'desc')
    .limit(limit + 1)
    .execute();
  return toIntPage(rows, limit, scope, (row) => row.version);
}

/**
 * The scope a lookup of prompt `name` reads: the tenant's when it has a version of that name,
 * else the global scope (the nil UUID). One index probe on prompts (scope, name, version), a
 * statement of its own: given as a value, the scope is part of the next statement's index
 * condition, which then reads the versions in order (as a subquery it was only a filter).
 */
async function scopeOfName(db: TenantTx, tenantId: string, name: string): Promise<string> {
  const own = await db.selectFrom('prompts').select('scope').where('scope', '=', tenantId).where('name', '=', name).limit(1).executeTakeFirst();
  return own === undefined ? NIL_UUID : tenantId;
}
