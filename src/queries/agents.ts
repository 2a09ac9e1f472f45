import { sql, type Expression, type ExpressionBuilder, type Kysely, type Selectable, type SelectQueryBuilder, type SqlBool } from 'kysely';
import type { Executor } from '../db/create-db.ts';
import type { TenantTx } from '../db/tenant-tx.ts';
import { AgentRetiredError, NotFoundError, ValidationError, foreignKeyViolated } from '../db/errors.ts';
import type { Agents, DB, Models, Prompts, Providers, Tools, UserAgents } from '../db/schema.generated.ts';
import { tenantOf } from '../db/tenant.ts';
import { decimalText } from './decimal.ts';
import { cursorTimestamp, decodeCursor, toPage, type CursorScope, type Page, keysetPast } from './cursor.ts';
import { assertInt, assertOptionalText, assertText, assertUuid, jsonObject, pageLimit } from './validate.ts';
import { assertRole } from '../db/service-roles.ts';
import { statementTemplate } from '../db/statement-template.ts';
import { MAX_METADATA_BYTES } from './limits.ts';

/**
 * An agent: global (`tenantId` null, from the seed) or the current tenant's (`userId` null:
 * tenant-wide). `promptFollowsLatest` false (the default): the agent runs exactly `promptId`;
 * true: the latest version of that prompt's name. `retiredAt` is set once deleteAgent retired it.
 */
export type Agent = Pick<
  Selectable<Agents>,
  | 'id' | 'tenantId' | 'userId' | 'modelId' | 'promptId' | 'promptFollowsLatest' | 'name' | 'description' | 'modelParameters'
  | 'retiredAt' | 'createdAt' | 'updatedAt'
>;

/** An agent shared with a user, and the user's role on it. */
export type UserAgent = Pick<Selectable<UserAgents>, 'id' | 'userId' | 'agentId' | 'role' | 'createdAt' | 'updatedAt'>;

/** A user's role on an agent shared with them. */
export type AgentRole = 'owner' | 'editor' | 'viewer';

/** The model an agent runs on. Prices are exact decimal text without trailing zeros ('0.003'). */
export type AgentModel = Pick<
  Selectable<Models>,
  | 'id' | 'providerId' | 'name' | 'internalName' | 'type' | 'description' | 'maxContext' | 'maxOutput' | 'maxReasoning'
  | 'cost1kInput' | 'cost1kOutput' | 'cost1kCacheRead' | 'cost1kCacheWrite' | 'defaultParameters'
>;

/** The system prompt of an agent. */
export type AgentPrompt = Pick<Selectable<Prompts>, 'id' | 'name' | 'version' | 'content'>;

/** The provider of an agent's model: never its API key. */
export type AgentProvider = Pick<Selectable<Providers>, 'id' | 'name' | 'endpoint'>;

/** A tool an agent may call, with its configuration. */
export type AgentTool = Pick<
  Selectable<Tools>,
  'id' | 'name' | 'description' | 'type' | 'authenticationType' | 'endpoint' | 'transportType' | 'customConfig'
>;

/** Everything needed to run an agent, read in one statement (see {@link resolveAgent}). */
export interface ResolvedAgent {
  agent: Agent;
  /** Null when the agent has no system prompt. */
  prompt: AgentPrompt | null;
  model: AgentModel;
  provider: AgentProvider;
  /** Ordered by name. */
  tools: AgentTool[];
}

export const AGENT_COLUMNS = [
  'id', 'tenantId', 'userId', 'modelId', 'promptId', 'promptFollowsLatest', 'name', 'description', 'modelParameters',
  'retiredAt', 'createdAt', 'updatedAt',
] as const;
export const AGENT_COLUMNS_OF_A = [
  'a.id', 'a.tenantId', 'a.userId', 'a.modelId', 'a.promptId', 'a.promptFollowsLatest', 'a.name', 'a.description',
  'a.modelParameters', 'a.retiredAt', 'a.createdAt', 'a.updatedAt',
] as const;
const USER_AGENT_COLUMNS = ['id', 'userId', 'agentId', 'role', 'createdAt', 'updatedAt'] as const;
const AGENT_ROLES: readonly string[] = ['owner', 'editor', 'viewer'] satisfies AgentRole[];
/** The most tools an agent holds (createAgent, setAgentTools). */
export const MAX_TOOLS = 100;

/**
 * Creates an agent of the current tenant (tenant-wide, or a user's with `userId`) and attaches
 * `toolIds` to it. Unknown model/prompt/tool → NotFoundError('model'|'prompt'|'tool', id), a user
 * that is not the tenant's → NotFoundError('user', id); in every failure nothing is inserted.
 *
 * Two statements in the caller's transaction: the agent (inserted only when every tool exists),
 * then its agent_tools rows. One data-modifying CTE cannot do both: the agent_tools RLS check
 * looks the new agent up with the statement's snapshot, which does not contain it yet (42501).
 *
 * @example
 * const agent = await withTenant(db, tenantId, (tx) =>
 *   createAgent(tx, { name: 'Support', modelId: 2, promptId: 1, toolIds: [1, 3], modelParameters: { temperature: 0.2 } }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function createAgent(
  db: TenantTx,
  params: {
    name: string;
    modelId: number;
    promptId?: number | null;
    promptFollowsLatest?: boolean;
    userId?: string | null;
    description?: string | null;
    modelParameters?: Record<string, unknown>;
    toolIds?: number[];
  },
): Promise<Agent> {
  assertRole(db, 'createAgent');
  const tenantId = tenantOf(db);
  assertText('name', params.name, 200);
  assertInt('modelId', params.modelId, 1);
  const promptId = params.promptId ?? null;
  if (promptId !== null) assertInt('promptId', promptId, 1);
  const promptFollowsLatest = params.promptFollowsLatest ?? false;
  if (typeof promptFollowsLatest !== 'boolean') throw new ValidationError('promptFollowsLatest', 'must be a boolean');
  const userId = params.userId ?? null;
  if (userId !== null) assertUuid('userId', userId);
  const description = params.description ?? null;
  if (description !== null) assertOptionalText('description', description, 10_000);
  const modelParameters = jsonObject('modelParameters', params.modelParameters === undefined ? {} : params.modelParameters, {
    maxBytes: MAX_METADATA_BYTES,
    limitName: 'MAX_METADATA_BYTES',
  });
  const toolIds = toolIdList(params.toolIds);

  let agent: Agent | undefined;
  try {
    agent = await db
      .insertInto('agents')
      .columns(['tenantId', 'userId', 'modelId', 'promptId', 'promptFollowsLatest', 'name', 'description', 'modelParameters'])
      .expression(
        db
          .selectNoFrom((eb) => [
            eb.val(tenantId).as('tenantId'),
            eb.val(userId).as('userId'),
            eb.val(params.modelId).as('modelId'),
            eb.val(promptId).as('promptId'),
            eb.val(promptFollowsLatest).as('promptFollowsLatest'),
            eb.val(params.name).as('name'),
            eb.val(description).as('description'),
            eb.val(modelParameters).as('modelParameters'),
          ])
          // Insert nothing when a tool is unknown: then there is nothing to roll back.
          .where(({ exists, not }) => not(exists(missingTools(tenantId, toolIds))))
          // Nor when the prompt is another tenant's (its foreign key alone would accept it).
          .$if(promptId !== null, (qb) => qb.where(({ exists }) => exists(visiblePrompt(tenantId, promptId!)))),
      )
      .returning(AGENT_COLUMNS)
      .executeTakeFirst();
  } catch (error) {
    const constraint = foreignKeyViolated(error);
    if (constraint === 'agents_model_id_fkey') throw new NotFoundError('model', params.modelId);
    if (constraint === 'agents_prompt_id_fkey' && promptId !== null) throw new NotFoundError('prompt', promptId);
    if (constraint === 'agents_tenant_id_user_id_fkey' && userId !== null) throw new NotFoundError('user', userId);
    throw error;
  }
  if (agent === undefined) {
    if (promptId !== null && !(await promptVisible(db, tenantId, promptId))) throw new NotFoundError('prompt', promptId);
    throw new NotFoundError('tool', await firstMissingTool(db, tenantId, toolIds));
  }

  if (toolIds.length > 0) {
    const agentId = agent.id;
    try {
      await db.insertInto('agentTools').values(toolIds.map((toolId) => ({ agentId, toolId }))).execute();
    } catch (error) {
      // Only when a tool was deleted since the first statement; the error aborts the transaction.
      if (foreignKeyViolated(error) === 'agent_tools_tool_id_fkey') throw new NotFoundError('tool', toolIds.join(','));
      throw error;
    }
  }
  return agent;
}

/** The agent with this id if it is global or the current tenant's; NotFoundError('agent', id) otherwise. Roles: app_cms. */
export async function getAgent(db: TenantTx, params: { agentId: string }): Promise<Agent> {
  assertRole(db, 'getAgent');
  const tenantId = tenantOf(db);
  assertUuid('agentId', params.agentId);
  const agent = await db
    .selectFrom('agents as a')
    .select(AGENT_COLUMNS_OF_A)
    .where('a.id', '=', params.agentId)
    .where((eb) => visibleAgent(eb, tenantId, 'tenant'))
    .executeTakeFirst();
  if (agent === undefined) throw new NotFoundError('agent', params.agentId);
  return agent;
}

/**
 * One page of the agents a user may use, newest first, each once: the global agents, the
 * tenant's tenant-wide agents (`userId` null), the user's own, and those shared with the user
 * (user_agents); never a retired agent (deleteAgent). Keyset on (created_at desc, id desc), `limit` rows (default 50, at most 200);
 * pass `nextCursor` back as `cursor` for the next page (null: no more). One statement. A user that
 * is not the tenant's → NotFoundError('user', id).
 *
 * (created_at, id) and not (name, id): created_at never changes, so a walk over pages returns
 * every agent that exists throughout it exactly once even while agents are renamed; agents
 * created during the walk sort above the cursor and appear in the next walk. The four sets are
 * disjoint branches of a UNION ALL, each an index range on agents (tenant_id, user_id, ...) or
 * the user's user_agents rows, merged in key order and cut at the limit.
 *
 * @example
 * let cursor: string | null = null;
 * do {
 *   const page = await withTenant(db, tenantId, (tx) => listAgentsForUser(tx, { userId, cursor }));
 *   show(page.items);
 *   cursor = page.nextCursor;
 * } while (cursor !== null);
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function listAgentsForUser(
  db: TenantTx,
  params: { userId: string; limit?: number; cursor?: string | null },
): Promise<Page<Agent>> {
  assertRole(db, 'listAgentsForUser');
  const tenantId = tenantOf(db);
  const { userId } = params;
  assertUuid('userId', userId);
  const limit = pageLimit(params.limit);
  const scope: CursorScope = { list: 'agents', tenantId, scope: userId.toLowerCase() };
  const after = params.cursor == null ? undefined : decodeCursor(params.cursor, scope);
  // Each branch: its rows after the cursor, in key order, at most a page: an index range read
  // in order and stopped (see below for why each branch is cut on its own).
  const page = <O>(qb: SelectQueryBuilder<DB & { a: Agents }, 'a', O>) =>
    qb
      // Retired agents take no new conversations: not offered (getAgent still reads them).
      .where('a.retiredAt', 'is', null)
      .$if(after !== undefined, (qb) =>
        qb.where(keysetPast(sql.ref('a.createdAt'), sql.ref('a.id'), after!)),
      )
      .orderBy('a.createdAt', 'desc')
      .orderBy('a.id', 'desc')
      .limit(limit + 1);
  // From the user, left-joined to the page: no row at all means no such user in this tenant;
  // one row with a null agent means a user without agents (on this page). The page is built in
  // the join's callback: a builder made from `db` would be a query of its own to the plugins.
  const rows = await db
    .selectFrom('users as u')
    .leftJoinLateral(
      (eb) =>
        eb
          .selectFrom((eb) =>
            // Disjoint: global agents (their user_id is null: a check constraint), tenant-wide
            // ones, the user's own, and agents of other users of the tenant shared with the user.
            // A shared global, tenant-wide or own agent is in its own branch already.
            eb
              .selectFrom((eb) =>
                page(eb.selectFrom('agents as a').select(AGENT_COLUMNS_OF_A).where('a.tenantId', 'is', null).where('a.userId', 'is', null)).as('global'),
              )
              .selectAll('global')
              .unionAll((eb) =>
                eb
                  .selectFrom((eb) =>
                    page(eb.selectFrom('agents as a').select(AGENT_COLUMNS_OF_A).where('a.tenantId', '=', tenantId).where('a.userId', 'is', null)).as('tenantWide'),
                  )
                  .selectAll('tenantWide'),
              )
              .unionAll((eb) =>
                eb
                  .selectFrom((eb) =>
                    page(eb.selectFrom('agents as a').select(AGENT_COLUMNS_OF_A).where('a.tenantId', '=', tenantId).where('a.userId', '=', userId)).as('own'),
                  )
                  .selectAll('own'),
              )
              .unionAll((eb) =>
                eb
                  .selectFrom((eb) =>
                    page(
                      eb
                        .selectFrom('agents as a')
                        .innerJoin('userAgents as ua', 'ua.agentId', 'a.id')
                        .select(AGENT_COLUMNS_OF_A)
                        .where('ua.tenantId', '=', tenantId)
                        .where('ua.userId', '=', userId)
                        .where('a.tenantId', '=', tenantId)
                        .where('a.userId', '<>', userId),
                    ).as('shared'),
                  )
                  .selectAll('shared'),
              )
              .as('visible'),
          )
          // Why every branch has its own ORDER BY and LIMIT: PostgreSQL 15 plans the branches of
          // a UNION ALL that have a WHERE clause as subqueries of their own (it cannot make them
          // members of one append relation), so an ORDER BY over the whole union would read and
          // sort every visible agent. Cut per branch, each reads at most limit + 1 rows in index
          // order, and only those few are merged here. Each branch is a subquery (`select * from
          // (...) as global`) because Kysely 0.29 does not parenthesize a union member's ORDER BY
          // and LIMIT: `.orderBy().limit().unionAll(...)` compiles to invalid SQL.
          .selectAll('visible')
          .orderBy('visible.createdAt', 'desc')
          .orderBy('visible.id', 'desc')
          .limit(limit + 1)
          .as('v'),
      (join) => join.onTrue(),
    )
    .select([
      'v.id', 'v.tenantId', 'v.userId', 'v.modelId', 'v.promptId', 'v.promptFollowsLatest', 'v.name', 'v.description',
      'v.modelParameters', 'v.retiredAt', 'v.createdAt', 'v.updatedAt',
    ])
    .select((eb) => cursorTimestamp(eb.ref('v.createdAt')).as('cursorAt'))
    .where('u.tenantId', '=', tenantId)
    .where('u.id', '=', userId)
    .orderBy('v.createdAt', 'desc')
    .orderBy('v.id', 'desc')
    .execute();
  if (rows.length === 0) throw new NotFoundError('user', userId);
  // The left join types every agent column as nullable; a row with an id is a whole agent.
  const agents = rows.filter((row) => row.id !== null) as (Agent & { cursorAt: string })[];
  return toPage(agents, limit, scope);
}

/**
 * Shares an agent (global or the tenant's) with a user of the tenant as `role`. Idempotent on
 * (user, agent): sharing again returns the same row, with the new role if it changed.
 * Unknown or another tenant's agent → NotFoundError('agent', id); user → NotFoundError('user', id);
 * a retired agent (deleteAgent) → AgentRetiredError.
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function shareAgent(
  db: TenantTx,
  params: { agentId: string; userId: string; role: AgentRole },
): Promise<UserAgent> {
  assertRole(db, 'shareAgent');
  const tenantId = tenantOf(db);
  assertUuid('agentId', params.agentId);
  assertUuid('userId', params.userId);
  if (typeof params.role !== 'string' || !AGENT_ROLES.includes(params.role)) {
    throw new ValidationError('role', `must be one of ${AGENT_ROLES.join(', ')}`);
  }
  const { agentId, userId, role } = params;
  let shared: UserAgent | undefined;
  try {
    shared = await db
      .insertInto('userAgents')
      .columns(['tenantId', 'userId', 'agentId', 'agentScope', 'role'])
      // From the agent, so that an agent the tenant cannot see inserts nothing (and the row gets
      // the agent's scope: the key (agent_scope, agent_id) refuses another tenant's agent too).
      .expression((eb) =>
        eb
          .selectFrom('agents as a')
          .select([eb.val(tenantId).as('tenantId'), eb.val(userId).as('userId'), 'a.id', 'a.scope', eb.val(role).as('role')])
          .where('a.id', '=', agentId)
          .where('a.retiredAt', 'is', null)
          .where((eb) => visibleAgent(eb, tenantId, 'tenant')),
      )
      .onConflict((oc) =>
        oc
          .columns(['tenantId', 'userId', 'agentId'])
          .doUpdateSet((eb) => ({ role: eb.ref('excluded.role') }))
          .where('userAgents.role', 'is distinct from', (eb) => eb.ref('excluded.role')),
      )
      .returning(USER_AGENT_COLUMNS)
      .executeTakeFirst();
  } catch (error) {
    if (foreignKeyViolated(error) === 'user_agents_tenant_id_user_id_fkey') throw new NotFoundError('user', userId);
    if (foreignKeyViolated(error) === 'user_agents_agent_id_fkey') throw new NotFoundError('agent', agentId);
    throw error;
  }
  if (shared !== undefined) return shared;
  // Nothing written: the agent is not visible or retired, or it is shared with the user in this role already.
  const agent = await db
    .selectFrom('agents as a')
    .leftJoin('userAgents as ua', (join) =>
      join.onRef('ua.agentId', '=', 'a.id').on('ua.tenantId', '=', tenantId).on('ua.userId', '=', userId),
    )
    .select(['a.retiredAt', 'ua.id', 'ua.agentId', 'ua.role', 'ua.createdAt', 'ua.updatedAt'])
    .where('a.id', '=', agentId)
    .where((eb) => visibleAgent(eb, tenantId, 'tenant'))
    .executeTakeFirst();
  if (agent === undefined) throw new NotFoundError('agent', agentId);
  if (agent.retiredAt !== null) throw new AgentRetiredError(agentId);
  const { id, agentId: sharedAgentId, role: sharedRole, createdAt, updatedAt } = agent;
  if (id === null || sharedAgentId === null || sharedRole === null || createdAt === null || updatedAt === null) {
    // Not reachable: a visible, active agent that inserted nothing has this share already.
    throw new NotFoundError('agent', agentId);
  }
  return { id, userId, agentId: sharedAgentId, role: sharedRole, createdAt, updatedAt };
}

/**
 * An agent with its prompt, model, provider (never the API key) and tools ordered by name, resolved
 * for user `userId` (whom the service runs it for), in ONE statement: joins, and a JSON aggregate
 * of the tools. The agent must be one the user may use (global, tenant-wide, the user's own or
 * shared with the user: see listAgentsForUser); any other agent, another user's private one
 * included, → NotFoundError('agent', id), exactly as an id that does not exist. A user that is
 * not the tenant's → NotFoundError('user', id) (a second statement, only then). A retired agent
 * (deleteAgent) is still resolved, for the conversations made with it (`agent.retiredAt` says so).
 * `prompt` is the version the agent runs: `promptId` itself (pinned, the default), or the latest
 * version of that prompt's name and owner when `promptFollowsLatest`.
 *
 * @example
 * const { agent, prompt, model, provider, tools } = await withTenant(db, tenantId, (tx) => resolveAgent(tx, { agentId, userId }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function resolveAgent(db: TenantTx, params: { agentId: string; userId: string }): Promise<ResolvedAgent> {
  assertRole(db, 'resolveAgent');
  const tenantId = tenantOf(db);
  assertUuid('agentId', params.agentId);
  assertUuid('userId', params.userId);
  const { userId } = params;
  const { rows } = await resolveAgentStatement(db, { tenantId, userId, agentId: params.agentId }, null).execute(db);
  const row = rows[0];
  if (row === undefined) {
    if (!(await userExists(db, tenantId, userId))) throw new NotFoundError('user', userId);
    throw new NotFoundError('agent', params.agentId);
  }
  const agent: Agent = {
    id: row.id, tenantId: row.tenantId, userId: row.userId, modelId: row.modelId, promptId: row.promptId,
    promptFollowsLatest: row.promptFollowsLatest, name: row.name, description: row.description,
    modelParameters: row.modelParameters, retiredAt: row.retiredAt, createdAt: row.createdAt, updatedAt: row.updatedAt,
  };
  const prompt: AgentPrompt | null =
    row.resolvedPromptId === null || row.promptName === null || row.promptVersion === null || row.promptContent === null
      ? null
      : { id: row.resolvedPromptId, name: row.promptName, version: row.promptVersion, content: row.promptContent };
  const model: AgentModel = {
    id: row.modelId, providerId: row.providerId, name: row.modelName, internalName: row.modelInternalName,
    type: row.modelType, description: row.modelDescription, maxContext: row.modelMaxContext,
    maxOutput: row.modelMaxOutput, maxReasoning: row.modelMaxReasoning, cost1kInput: row.modelCost1kInput,
    cost1kOutput: row.modelCost1kOutput, cost1kCacheRead: row.modelCost1kCacheRead,
    cost1kCacheWrite: row.modelCost1kCacheWrite, defaultParameters: row.modelDefaultParameters,
  };
  const provider: AgentProvider = { id: row.providerId, name: row.providerName, endpoint: row.providerEndpoint };
  return { agent, prompt, model, provider, tools: row.tools };
}

/** resolveAgent's one statement, compiled once (statementTemplate): its tree is the biggest of the lookups. */
const resolveAgentStatement = statementTemplate((db: Kysely<DB>, v: { tenantId: string; userId: string; agentId: string }, _shape: null) =>
  db
    .selectFrom('agents as a')
    .innerJoin('models as m', 'm.id', 'a.modelId')
    .innerJoin('providers as p', 'p.id', 'm.providerId')
    // The agent's prompt row (the pinned version), global or the tenant's...
    .leftJoin('prompts as pin', (join) =>
      join
        .onRef('pin.id', '=', 'a.promptId')
        .on((eb) => eb.or([eb('pin.tenantId', 'is', null), eb('pin.tenantId', '=', v.tenantId)])),
    )
    // ...and the version it runs: that one, or the latest of its name and scope when the agent
    // follows the latest (one backward step on prompts (scope, name, version)).
    .leftJoinLateral(
      (eb) =>
        eb
          .selectFrom('prompts as p2')
          .select(['p2.id', 'p2.name', 'p2.version', 'p2.content'])
          .whereRef('p2.scope', '=', 'pin.scope')
          .whereRef('p2.name', '=', 'pin.name')
          .where((eb) => eb.or([eb('a.promptFollowsLatest', '=', sql.lit(true)), eb('p2.id', '=', eb.ref('pin.id'))]))
          .orderBy('p2.version', 'desc')
          .limit(sql.lit(1))
          .as('pr'),
      (join) => join.onTrue(),
    )
    .select(AGENT_COLUMNS_OF_A)
    .select([
      'm.name as modelName', 'm.internalName as modelInternalName', 'm.type as modelType',
      'm.description as modelDescription', 'm.maxContext as modelMaxContext', 'm.maxOutput as modelMaxOutput',
      'm.maxReasoning as modelMaxReasoning', 'm.defaultParameters as modelDefaultParameters',
      'p.id as providerId', 'p.name as providerName', 'p.endpoint as providerEndpoint',
      'pr.id as resolvedPromptId', 'pr.name as promptName', 'pr.version as promptVersion', 'pr.content as promptContent',
    ])
    .select((eb) => [
      decimalText(eb.ref('m.cost1kInput')).as('modelCost1kInput'),
      decimalText(eb.ref('m.cost1kOutput')).as('modelCost1kOutput'),
      decimalText(eb.ref('m.cost1kCacheRead')).as('modelCost1kCacheRead'),
      decimalText(eb.ref('m.cost1kCacheWrite')).as('modelCost1kCacheWrite'),
      toolsOf(eb.ref('a.id'), v.tenantId).as('tools'),
    ])
    .where('a.id', '=', v.agentId)
    .where((eb) => visibleAgent(eb, v.tenantId, { userId: v.userId }))
    // The user must be the tenant's: a global or tenant-wide agent is not resolved for nobody.
    .where(({ exists, selectFrom }) =>
      exists(selectFrom('users as u').select(sql.lit(1).as('one')).where('u.tenantId', '=', v.tenantId).where('u.id', '=', v.userId)),
    ),
);

/**
 * Whom an agent must be visible to (see {@link visibleAgent}):
 * - `'tenant'`: the tenant itself, as its CMS manages agents: global agents and every agent of
 *   the tenant, users' private ones included (the agents_select policy);
 * - `{ userId }`: a user, when an agent is used on the user's behalf: global agents, the
 *   tenant's tenant-wide ones (`userId` null), the user's own and those shared with the user
 *   (user_agents): exactly what listAgentsForUser lists;
 * - `'everyUser'`: every user of the tenant: global and tenant-wide agents only.
 */
export type AgentViewer = 'tenant' | 'everyUser' | { userId: string };

/**
 * The one SQL condition for "agent `a` is visible to `viewer` in tenant `tenantId`" (see
 * AgentViewer), for a query over `agents as a`. An agent that fails it is to be reported exactly
 * like one that does not exist. Global agents have no user (a check constraint), so
 * `a.tenant_id is null` is the whole test for them.
 */
export function visibleAgent(
  eb: ExpressionBuilder<DB & { a: Agents }, 'a'>,
  tenantId: string,
  viewer: AgentViewer,
): Expression<SqlBool> {
  const global = eb('a.tenantId', 'is', null);
  const tenants = eb('a.tenantId', '=', tenantId);
  if (viewer === 'tenant') return eb.or([global, tenants]);
  const tenantWide = eb('a.userId', 'is', null);
  if (viewer === 'everyUser') return eb.or([global, eb.and([tenants, tenantWide])]);
  const { userId } = viewer;
  return eb.or([
    global,
    eb.and([
      tenants,
      eb.or([
        tenantWide,
        eb('a.userId', '=', userId),
        // Shared with the user: a user_agents row of this tenant (its unique key
        // (tenant_id, user_id, agent_id) is the index).
        eb.exists(
          eb
            .selectFrom('userAgents as ua')
            .select(sql.lit(1).as('one'))
            .where('ua.tenantId', '=', tenantId)
            .where('ua.userId', '=', userId)
            .whereRef('ua.agentId', '=', 'a.id'),
        ),
      ]),
    ]),
  ]);
}

/** Whether `userId` is a user of tenant `tenantId`. */
async function userExists(db: Executor, tenantId: string, userId: string): Promise<boolean> {
  const user = await db.selectFrom('users').select('id').where('tenantId', '=', tenantId).where('id', '=', userId).executeTakeFirst();
  return user !== undefined;
}

/**
 * `(select 1 from <requested ids> where <not a tool of tenantId's>)`: the subquery of a NOT EXISTS
 * guard. A tool of tenantId's is global or the tenant's own (migration 0016): the foreign key
 * alone would accept another tenant's, so the guard says so itself (RLS says the same).
 */
export function missingTools(tenantId: string, toolIds: readonly number[]) {
  return sql<number>`(select 1 from unnest(${toolIds}::int[]) as requested (id)
    where not exists (select 1 from tools where tools.id = requested.id
                        and (tools.tenant_id is null or tools.tenant_id = ${tenantId}::uuid)))`;
}

/** The first of `toolIds` that is not a tool of tenantId's (global or its own). */
export async function firstMissingTool(db: Executor, tenantId: string, toolIds: readonly number[]): Promise<string> {
  const { rows } = await sql<{ id: number }>`
    select requested.id from unnest(${toolIds}::int[]) with ordinality as requested (id, n)
    where not exists (select 1 from tools where tools.id = requested.id
                        and (tools.tenant_id is null or tools.tenant_id = ${tenantId}::uuid))
    order by requested.n limit 1`.execute(db);
  return rows[0] === undefined ? toolIds.join(',') : String(rows[0].id);
}

/** `(select 1 from prompts where <promptId, global or tenantId's>)`: the subquery of an EXISTS guard. */
export function visiblePrompt(tenantId: string, promptId: number) {
  return sql<number>`(select 1 from prompts where prompts.id = ${promptId}
    and (prompts.tenant_id is null or prompts.tenant_id = ${tenantId}::uuid))`;
}

/** Whether prompt `promptId` is global or tenantId's. */
export async function promptVisible(db: Executor, tenantId: string, promptId: number): Promise<boolean> {
  const { rows } = await sql<{ one: number }>`select 1 as one from prompts
    where id = ${promptId} and (tenant_id is null or tenant_id = ${tenantId}::uuid)`.execute(db);
  return rows.length > 0;
}

/** The agent's tools as a JSON array ordered by name; keys spelled in camelCase here. */
function toolsOf(agentId: Expression<string>, tenantId: string) {
  return sql<AgentTool[]>`(
    select coalesce(json_agg(json_build_object(
      'id', t.id, 'name', t.name, 'description', t.description, 'type', t.type,
      'authenticationType', t.authentication_type, 'endpoint', t.endpoint,
      'transportType', t.transport_type, 'customConfig', t.custom_config
    ) order by t.name, t.id), '[]'::json)
    from agent_tools agt join tools t on t.id = agt.tool_id
    where agt.agent_id = ${agentId} and (t.tenant_id is null or t.tenant_id = ${tenantId}::uuid))`;
}

export function toolIdList(value: unknown): number[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new ValidationError('toolIds', 'must be an array of tool ids');
  if (value.length > MAX_TOOLS) throw new ValidationError('toolIds', `must hold at most ${MAX_TOOLS} tools`);
  const seen = new Set<number>();
  for (const id of value) {
    assertInt('toolIds', id, 1);
    if (seen.has(id)) throw new ValidationError('toolIds', `holds ${id} twice`);
    seen.add(id);
  }
  return value as number[];
}

