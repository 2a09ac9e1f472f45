import { sql } from 'kysely';
import { NotFoundError, SecretError, ValidationError, foreignKeyViolated } from '../db/errors.ts';
import { userToolBinding, type SealedCredential } from '../db/secret-bindings.ts';
import { openStoredSecret, writingKeys } from '../db/secret-keys.ts';
import { sealSecret } from '../db/secrets.ts';
import { assertRole } from '../db/service-roles.ts';
import { tenantOf } from '../db/tenant.ts';
import type { TenantTx } from '../db/tenant-tx.ts';
import { cursorTimestamp, decodeCursor, toPage, type CursorScope, type Page, keysetPast } from './cursor.ts';
import { assertInt, assertUuid, jsonObject, pageLimit } from './validate.ts';

/** A user's configuration of a tool, without its credential: only whether it has one. */
export interface UserTool {
  id: string;
  userId: string;
  toolId: number;
  hasCredential: boolean;
  createdAt: Date;
  updatedAt: Date;
}

/** The largest credential accepted, as JSON text. */
export const MAX_CREDENTIAL_BYTES = 64 * 1024;

function userToolColumns() {
  return [
    'id', 'userId', 'toolId', 'createdAt', 'updatedAt',
    sql<boolean>`credential <> '{}'::jsonb`.as('hasCredential'),
  ] as const;
}

/**
 * Stores the user's credential for a tool (a JSON object: tokens, keys), replacing the one it had:
 * encrypted in this process under the current secret key (AES-256-GCM, bound to the tenant, the
 * user and the tool), so the database holds `{"v": 1, "enc": "<envelope>"}`. Returns the row
 * without the credential. A user not in the tenant → NotFoundError('user') (the failed insert
 * aborts the transaction, like any failed statement); a tool that is neither global nor the
 * tenant's own (migration 0016) → NotFoundError('tool'), before the insert; no secret key
 * configured → ConfigError.
 *
 * @example
 * await withTenant(db, tenantId, (tx) => setUserToolCredential(tx, { userId, toolId, credential: { token: 'ghp_…' } }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function setUserToolCredential(
  db: TenantTx,
  params: { userId: string; toolId: number; credential: Record<string, unknown> },
): Promise<UserTool> {
  assertRole(db, 'setUserToolCredential');
  const tenantId = tenantOf(db);
  assertUuid('userId', params.userId);
  assertInt('toolId', params.toolId, 1);
  const json = jsonObject('credential', params.credential);
  if (Buffer.byteLength(json) > MAX_CREDENTIAL_BYTES) {
    throw new ValidationError('credential', `must be at most ${MAX_CREDENTIAL_BYTES} bytes as JSON, got ${Buffer.byteLength(json)}`);
  }
  // The foreign key alone would accept another tenant's tool (it does not see row-level security).
  const tool = await db
    .selectFrom('tools')
    .select('id')
    .where('id', '=', params.toolId)
    .where((eb) => eb.or([eb('tenantId', 'is', null), eb('tenantId', '=', tenantId)]))
    .executeTakeFirst();
  if (tool === undefined) throw new NotFoundError('tool', params.toolId);
  const sealed: SealedCredential = {
    v: 1,
    enc: sealSecret(writingKeys(db, 'user_tools.credential'), json, userToolBinding(tenantId, params.userId, params.toolId)),
  };
  try {
    return await db
      .insertInto('userTools')
      .values({ tenantId, userId: params.userId, toolId: params.toolId, credential: JSON.stringify(sealed) })
      .onConflict((oc) => oc.columns(['tenantId', 'userId', 'toolId']).doUpdateSet((eb) => ({ credential: eb.ref('excluded.credential') })))
      .returning(userToolColumns())
      .executeTakeFirstOrThrow();
  } catch (error) {
    const constraint = foreignKeyViolated(error);
    if (constraint === 'user_tools_tenant_id_user_id_fkey') throw new NotFoundError('user', params.userId);
    if (constraint === 'user_tools_tool_id_fkey') throw new NotFoundError('tool', params.toolId);
    throw error;
  }
}

/**
 * The user's credential for a tool, decrypted: the JSON object setUserToolCredential stored (`{}`
 * for a tool configured without one). NotFoundError('user tool', '<userId>:<toolId>') when the
 * user has no such row in the tenant; SecretError when it does not open (stored in plaintext
 * before migration 0012 — `database secrets rotate` encrypts it —, a key id the ring lacks, or a
 * value changed or copied from another row).
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function getUserToolCredential(db: TenantTx, params: { userId: string; toolId: number }): Promise<Record<string, unknown>> {
  assertRole(db, 'getUserToolCredential');
  const tenantId = tenantOf(db);
  assertUuid('userId', params.userId);
  assertInt('toolId', params.toolId, 1);
  const row = await db
    .selectFrom('userTools')
    .select('credential')
    .where('tenantId', '=', tenantId)
    .where('userId', '=', params.userId)
    .where('toolId', '=', params.toolId)
    .executeTakeFirst();
  if (row === undefined) throw new NotFoundError('user tool', `${params.userId}:${params.toolId}`);
  const stored = row.credential as Record<string, unknown>;
  const binding = userToolBinding(tenantId, params.userId, params.toolId);
  if (Object.keys(stored).length === 0) return {};
  if (stored.v !== 1 || typeof stored.enc !== 'string' || Object.keys(stored).length !== 2) throw new SecretError(binding, undefined, 'plaintext');
  return JSON.parse(openStoredSecret(db, stored.enc, binding)) as Record<string, unknown>;
}

/** Removes the user's configuration of a tool, credential included; true when there was one. Roles: app_cms. */
export async function deleteUserToolCredential(db: TenantTx, params: { userId: string; toolId: number }): Promise<boolean> {
  assertRole(db, 'deleteUserToolCredential');
  const tenantId = tenantOf(db);
  assertUuid('userId', params.userId);
  assertInt('toolId', params.toolId, 1);
  const result = await db
    .deleteFrom('userTools')
    .where('tenantId', '=', tenantId)
    .where('userId', '=', params.userId)
    .where('toolId', '=', params.toolId)
    .executeTakeFirst();
  return result.numDeletedRows > 0n;
}

/**
 * One page of the user's tools, newest first (keyset on created_at desc, id desc), never their
 * credentials: `hasCredential` says whether one is stored. `limit` 1..200 (default 50); pass
 * `nextCursor` back as `cursor`, with the same user, for the next page (null: no more).
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function listUserTools(
  db: TenantTx,
  params: { userId: string; limit?: number; cursor?: string | null },
): Promise<Page<UserTool>> {
  assertRole(db, 'listUserTools');
  const tenantId = tenantOf(db);
  assertUuid('userId', params.userId);
  const limit = pageLimit(params.limit);
  const scope: CursorScope = { list: 'user_tools', tenantId, scope: params.userId.toLowerCase() };
  const after = params.cursor == null ? undefined : decodeCursor(params.cursor, scope);
  const rows = await db
    .selectFrom('userTools')
    .select(userToolColumns())
    .select((eb) => cursorTimestamp(eb.ref('createdAt')).as('cursorAt'))
    .where('tenantId', '=', tenantId)
    .where('userId', '=', params.userId)
    .$if(after !== undefined, (qb) =>
      qb.where((eb) => keysetPast(eb.ref('createdAt'), eb.ref('id'), after!)),
    )
    .orderBy('createdAt', 'desc')
    .orderBy('id', 'desc')
    .limit(limit + 1)
    .execute();
  return toPage(rows, limit, scope);
}
