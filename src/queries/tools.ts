/**
 * Tools an agent can call. Shared-or-owned (migration 0016): global tools come from the seed and
 * every tenant reads them; a tenant's cms creates and changes its own. Names are unique per owner
 * (a tenant may name a tool like a global one). Users' credentials for tools are user-tools.ts.
 */
import { sql, type Selectable } from 'kysely';
import type { Executor } from '../db/create-db.ts';
import { NotFoundError, ReadOnlyError, ValidationError, sqlState } from '../db/errors.ts';
import type { Tools } from '../db/schema.generated.ts';
import { assertRole } from '../db/service-roles.ts';
import { tenantOf } from '../db/tenant.ts';
import type { TenantTx } from '../db/tenant-tx.ts';
import type { CursorScope, Page } from './cursor.ts';
import { decodeIntCursor, toIntPage } from './int-cursor.ts';
import { MAX_METADATA_BYTES } from './limits.ts';
import { assertInt, assertOptionalText, assertText, jsonObject, pageLimit } from './validate.ts';

/** A tool: global (`tenantId` null, from the seed) or the current tenant's. */
export type Tool = Pick<
  Selectable<Tools>,
  | 'id' | 'tenantId' | 'name' | 'description' | 'type' | 'authenticationType' | 'endpoint' | 'transportType' | 'customConfig'
  | 'createdAt' | 'updatedAt'
>;

/** A tool's fields as createTool takes them and updateTool changes them. Text fields: null clears them. */
export interface ToolFields {
  name: string;
  description?: string | null;
  /** What kind of tool (`builtin`, `mcp`, `http`…): free text for the service that runs it. */
  type?: string | null;
  authenticationType?: string | null;
  endpoint?: string | null;
  transportType?: string | null;
  /** The tool's own settings, a JSON object (at most MAX_METADATA_BYTES); replaced whole by updateTool. */
  customConfig?: Record<string, unknown>;
}

const TOOL_COLUMNS = [
  'id', 'tenantId', 'name', 'description', 'type', 'authenticationType', 'endpoint', 'transportType', 'customConfig',
  'createdAt', 'updatedAt',
] as const;
const SHORT_FIELDS = ['type', 'authenticationType', 'transportType'] as const;

/** The columns of `fields` that are given, validated; `partial`: name may be absent. */
function toolValues(fields: Partial<ToolFields>, partial: boolean): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  if (fields.name !== undefined || !partial) {
    assertText('name', fields.name, 200);
    values.name = fields.name;
  }
  if (fields.description !== undefined) {
    if (fields.description !== null) assertOptionalText('description', fields.description, 10_000);
    values.description = fields.description;
  }
  for (const field of SHORT_FIELDS) {
    const value = fields[field];
    if (value === undefined) continue;
    if (value !== null) assertText(field, value, 200);
    values[field] = value;
  }
  if (fields.endpoint !== undefined) {
    if (fields.endpoint !== null) assertText('endpoint', fields.endpoint, 2000);
    values.endpoint = fields.endpoint;
  }
  if (fields.customConfig !== undefined) {
    values.customConfig = jsonObject('customConfig', fields.customConfig, { maxBytes: MAX_METADATA_BYTES, limitName: 'MAX_METADATA_BYTES' });
  }
  return values;
}

/**
 * Creates a tool of the current tenant and returns it (its id: an integer, as for global tools).
 * The tenant has a tool of that name already → ValidationError('name') and nothing is written
 * (the transaction stays usable); a global tool of the same name does not count.
 *
 * @example
 * const tool = await withTenant(db, tenantId, (tx) =>
 *   createTool(tx, { name: 'crm-lookup', type: 'http', endpoint: 'https://crm.example.com/api', customConfig: { timeoutMs: 5000 } }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function createTool(db: TenantTx, params: ToolFields): Promise<Tool> {
  assertRole(db, 'createTool');
  const tenantId = tenantOf(db);
  const values = toolValues(params, false);
  const created = await db
    .insertInto('tools')
    .values({ ...values, tenantId, name: params.name })
    .onConflict((oc) => oc.columns(['scope', 'name']).doNothing())
    .returning(TOOL_COLUMNS)
    .executeTakeFirst();
  if (created === undefined) throw nameTaken(params.name);
  return created;
}

/**
 * Changes a tool of the current tenant: the fields given (at least one); returns it as it is now.
 * A global tool → ReadOnlyError('tool'); unknown or another tenant's → NotFoundError('tool'); a
 * name another of the tenant's tools has → ValidationError('name'), nothing written.
 *
 * @example
 * await withTenant(db, tenantId, (tx) => updateTool(tx, { toolId, endpoint: 'https://crm.example.com/v2' }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function updateTool(db: TenantTx, params: { toolId: number } & Partial<ToolFields>): Promise<Tool> {
  assertRole(db, 'updateTool');
  const tenantId = tenantOf(db);
  assertInt('toolId', params.toolId, 1);
  const { toolId, ...fields } = params;
  const values = toolValues(fields, true);
  if (Object.keys(values).length === 0) {
    throw new ValidationError('changes', 'name at least one of name, description, type, authenticationType, endpoint, transportType, customConfig');
  }
  let updated: Tool | undefined;
  try {
    updated = await db
      .updateTable('tools')
      .set(values)
      .where('id', '=', toolId)
      .where('tenantId', '=', tenantId)
      // A name another of the tenant's tools has: write nothing (a concurrent rename can still
      // meet the unique key: that 23505 is reported the same way, and aborts the transaction).
      .$if(fields.name !== undefined, (qb) =>
        qb.where(({ not, exists, selectFrom }) =>
          not(
            exists(
              selectFrom('tools as other')
                .select(sql.lit(1).as('one'))
                .where('other.scope', '=', tenantId)
                .where('other.name', '=', fields.name!)
                .where('other.id', '<>', toolId),
            ),
          ),
        ),
      )
      .returning(TOOL_COLUMNS)
      .executeTakeFirst();
  } catch (error) {
    if (sqlState(error) === '23505' && fields.name !== undefined) throw nameTaken(fields.name);
    throw error;
  }
  if (updated !== undefined) return updated;
  const tool = await findTool(db, tenantId, toolId);
  if (tool === undefined) throw new NotFoundError('tool', toolId);
  if (tool.tenantId === null) throw new ReadOnlyError('tool', toolId);
  throw nameTaken(fields.name ?? tool.name);
}

/** The tool `toolId` if it is global or the current tenant's; NotFoundError('tool') otherwise. Roles: app_cms. */
export async function getTool(db: TenantTx, params: { toolId: number }): Promise<Tool> {
  assertRole(db, 'getTool');
  const tenantId = tenantOf(db);
  assertInt('toolId', params.toolId, 1);
  const tool = await findTool(db, tenantId, params.toolId);
  if (tool === undefined) throw new NotFoundError('tool', params.toolId);
  return tool;
}

/**
 * One page of the tools the current tenant may give its agents, by id: the global tools and its
 * own (`owner: 'tenant'`: its own only; `'global'`: the global ones only). Keyset on id, `limit`
 * 1..200 (default 50); pass `nextCursor` back as `cursor`, with the same owner, for the next page.
 *
 * @example
 * const { items } = await withTenant(db, tenantId, (tx) => listTools(tx, { owner: 'tenant' }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function listTools(
  db: TenantTx,
  params: { owner?: 'any' | 'tenant' | 'global'; limit?: number; cursor?: string | null } = {},
): Promise<Page<Tool>> {
  assertRole(db, 'listTools');
  const tenantId = tenantOf(db);
  const owner = params.owner ?? 'any';
  if (owner !== 'any' && owner !== 'tenant' && owner !== 'global') throw new ValidationError('owner', "must be 'any', 'tenant' or 'global'");
  const limit = pageLimit(params.limit);
  const scope: CursorScope = { list: 'tools', tenantId, scope: owner };
  const after = params.cursor == null ? undefined : decodeIntCursor(params.cursor, scope);
  const rows = await db
    .selectFrom('tools')
    .select(TOOL_COLUMNS)
    .where((eb) =>
      owner === 'tenant'
        ? eb('tenantId', '=', tenantId)
        : owner === 'global'
          ? eb('tenantId', 'is', null)
          : eb.or([eb('tenantId', 'is', null), eb('tenantId', '=', tenantId)]),
    )
    .$if(after !== undefined, (qb) => qb.where('id', '>', after!))
    .orderBy('id')
    .limit(limit + 1)
    .execute();
  return toIntPage(rows, limit, scope, (row) => row.id);
}

/** The tool if it is global or tenantId's. */
async function findTool(db: Executor, tenantId: string, toolId: number): Promise<Tool | undefined> {
  return db
    .selectFrom('tools')
    .select(TOOL_COLUMNS)
    .where('id', '=', toolId)
    .where((eb) => eb.or([eb('tenantId', 'is', null), eb('tenantId', '=', tenantId)]))
    .executeTakeFirst();
}

function nameTaken(name: string): ValidationError {
  return new ValidationError('name', `the tenant has a tool named ${JSON.stringify(name)} already`);
}
