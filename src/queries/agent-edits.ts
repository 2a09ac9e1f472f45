/**
 * The cms's changes to an agent after createAgent: its fields (updateAgent), its tools
 * (setAgentTools) and its retirement (deleteAgent). Only the tenant's own agents change: a global
 * agent (from the seed) → ReadOnlyError, another tenant's → NotFoundError, exactly as an id that
 * does not exist; a retired agent → AgentRetiredError.
 */
import { sql } from 'kysely';
import type { Executor } from '../db/create-db.ts';
import { AgentRetiredError, NotFoundError, ReadOnlyError, ValidationError } from '../db/errors.ts';
import { assertRole } from '../db/service-roles.ts';
import { tenantOf } from '../db/tenant.ts';
import type { TenantTx } from '../db/tenant-tx.ts';
import {
  AGENT_COLUMNS,
  firstMissingTool,
  missingTools,
  promptVisible,
  toolIdList,
  visibleAgent,
  visiblePrompt,
  type Agent,
  type AgentTool,
} from './agents.ts';
import { MAX_METADATA_BYTES } from './limits.ts';
import { assertInt, assertOptionalText, assertText, assertUuid, jsonObject } from './validate.ts';

/** What updateAgent changes: any of these, at least one. */
export interface AgentChanges {
  name?: string;
  /** null removes the description. */
  description?: string | null;
  modelId?: number;
  /** null: no system prompt. A prompt global or the tenant's own. */
  promptId?: number | null;
  /** false: run exactly `promptId` (pinned, the default); true: the latest version of its name. */
  promptFollowsLatest?: boolean;
  /** Replaces the whole object (no merge): what the agent passes to the model. */
  modelParameters?: Record<string, unknown>;
}

/**
 * Changes an agent of the current tenant: any of name, description, model, prompt (and whether it
 * follows the prompt's latest version) and model parameters; the others stay. Returns the agent
 * as it is now. A global agent → ReadOnlyError('agent'); an unknown or another tenant's agent →
 * NotFoundError('agent'); a retired one → AgentRetiredError; an unknown model or a prompt that is
 * neither global nor the tenant's → NotFoundError('model'|'prompt'). One UPDATE guarded by those
 * checks (a refused change writes nothing and leaves the transaction usable); a second statement
 * only to say why nothing was written.
 *
 * @example
 * const agent = await withTenant(db, tenantId, (tx) =>
 *   updateAgent(tx, { agentId, name: 'Support (v2)', modelParameters: { temperature: 0.1 } }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function updateAgent(db: TenantTx, params: { agentId: string } & AgentChanges): Promise<Agent> {
  assertRole(db, 'updateAgent');
  const tenantId = tenantOf(db);
  assertUuid('agentId', params.agentId);
  const set: Record<string, unknown> = {};
  if (params.name !== undefined) {
    assertText('name', params.name, 200);
    set.name = params.name;
  }
  if (params.description !== undefined) {
    if (params.description !== null) assertOptionalText('description', params.description, 10_000);
    set.description = params.description;
  }
  if (params.modelId !== undefined) {
    assertInt('modelId', params.modelId, 1);
    set.modelId = params.modelId;
  }
  const promptId = params.promptId;
  if (promptId !== undefined) {
    if (promptId !== null) assertInt('promptId', promptId, 1);
    set.promptId = promptId;
  }
  if (params.promptFollowsLatest !== undefined) {
    if (typeof params.promptFollowsLatest !== 'boolean') throw new ValidationError('promptFollowsLatest', 'must be a boolean');
    set.promptFollowsLatest = params.promptFollowsLatest;
  }
  if (params.modelParameters !== undefined) {
    set.modelParameters = jsonObject('modelParameters', params.modelParameters, { maxBytes: MAX_METADATA_BYTES, limitName: 'MAX_METADATA_BYTES' });
  }
  if (Object.keys(set).length === 0) {
    throw new ValidationError('changes', 'name at least one of name, description, modelId, promptId, promptFollowsLatest, modelParameters');
  }
  const modelId = params.modelId;
  const updated = await db
    .updateTable('agents')
    .set(set)
    .where('id', '=', params.agentId)
    .where('tenantId', '=', tenantId)
    .where('retiredAt', 'is', null)
    // Write nothing when the model or prompt is not one the agent may use (the foreign keys
    // would abort the transaction, and the prompt's would accept another tenant's).
    .$if(modelId !== undefined, (qb) =>
      qb.where(({ exists, selectFrom }) => exists(selectFrom('models').select(sql.lit(1).as('one')).where('models.id', '=', modelId!))),
    )
    .$if(promptId != null, (qb) => qb.where(({ exists }) => exists(visiblePrompt(tenantId, promptId!))))
    .returning(AGENT_COLUMNS)
    .executeTakeFirst();
  if (updated !== undefined) return updated;
  await explainRefusal(db, tenantId, params.agentId);
  if (modelId !== undefined) {
    const model = await db.selectFrom('models').select('id').where('id', '=', modelId).executeTakeFirst();
    if (model === undefined) throw new NotFoundError('model', modelId);
  }
  if (promptId != null && !(await promptVisible(db, tenantId, promptId))) throw new NotFoundError('prompt', promptId);
  // Not reachable: the agent is the tenant's and active, and the model and prompt exist.
  throw new NotFoundError('agent', params.agentId);
}

/**
 * Retires an agent of the current tenant (a soft delete): it leaves listAgentsForUser, and
 * createConversation and shareAgent refuse it (AgentRetiredError), while every conversation made
 * with it keeps working with its whole history (messages, usage, resources keep naming it; getAgent
 * and resolveAgent still read it, with `retiredAt` set). Its shares and tools stay, as records.
 * Retiring a retired agent returns it unchanged. Global → ReadOnlyError('agent'); unknown or
 * another tenant's → NotFoundError('agent').
 *
 * Why not a hard delete: conversations, usage and resources reference the agent, and their
 * foreign keys would set it to null (or cascade, for shares), so a conversation would lose the
 * agent it runs on and cost reports the agent they were charged for.
 *
 * @example
 * const retired = await withTenant(db, tenantId, (tx) => deleteAgent(tx, { agentId }));
 * // retired.retiredAt: Date
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function deleteAgent(db: TenantTx, params: { agentId: string }): Promise<Agent> {
  assertRole(db, 'deleteAgent');
  const tenantId = tenantOf(db);
  assertUuid('agentId', params.agentId);
  const retired = await db
    .updateTable('agents')
    .set({ retiredAt: sql<Date>`now()` })
    .where('id', '=', params.agentId)
    .where('tenantId', '=', tenantId)
    .where('retiredAt', 'is', null)
    .returning(AGENT_COLUMNS)
    .executeTakeFirst();
  if (retired !== undefined) return retired;
  const agent = await db
    .selectFrom('agents')
    .select(AGENT_COLUMNS)
    .where('id', '=', params.agentId)
    .where('tenantId', '=', tenantId)
    .executeTakeFirst();
  if (agent !== undefined) return agent;
  await explainRefusal(db, tenantId, params.agentId);
  throw new NotFoundError('agent', params.agentId);
}

/**
 * Replaces the tools of an agent of the current tenant with `toolIds` (at most MAX_TOOLS, each
 * once; [] removes them all), atomically: a reader sees the old set or the new one, never a mix,
 * and concurrent calls for one agent run one after the other (the first statement locks the
 * agent's row). Returns the agent's tools as resolveAgent does, ordered by name. A tool that is
 * neither global nor the tenant's → NotFoundError('tool') and nothing changes; global agent →
 * ReadOnlyError('agent'); unknown or another tenant's → NotFoundError('agent'); retired →
 * AgentRetiredError. Also touches the agent's updatedAt.
 *
 * @example
 * const tools = await withTenant(db, tenantId, (tx) => setAgentTools(tx, { agentId, toolIds: [searchToolId] }));
 *
 * Roles: app_cms (README, "Production roles").
 */
export async function setAgentTools(db: TenantTx, params: { agentId: string; toolIds: number[] }): Promise<AgentTool[]> {
  assertRole(db, 'setAgentTools');
  const tenantId = tenantOf(db);
  assertUuid('agentId', params.agentId);
  if (params.toolIds === undefined) throw new ValidationError('toolIds', 'must be an array of tool ids ([] removes every tool)');
  const toolIds = toolIdList(params.toolIds);
  const { agentId } = params;
  // Locks the agent (and marks it changed) only when every tool is one the tenant may use.
  const locked = await db
    .updateTable('agents')
    .set({ updatedAt: sql<Date>`now()` })
    .where('id', '=', agentId)
    .where('tenantId', '=', tenantId)
    .where('retiredAt', 'is', null)
    .where(({ exists, not }) => not(exists(missingTools(tenantId, toolIds))))
    .returning('id')
    .executeTakeFirst();
  if (locked === undefined) {
    await explainRefusal(db, tenantId, agentId);
    throw new NotFoundError('tool', await firstMissingTool(db, tenantId, toolIds));
  }
  await sql`delete from agent_tools where agent_id = ${agentId} and tool_id <> all(${toolIds}::int[])`.execute(db);
  if (toolIds.length > 0) {
    await db
      .insertInto('agentTools')
      .values(toolIds.map((toolId) => ({ agentId, toolId })))
      .onConflict((oc) => oc.columns(['agentId', 'toolId']).doNothing())
      .execute();
  }
  return toolsOfAgent(db, tenantId, agentId);
}

/** The agent's tools, ordered by name (as resolveAgent returns them). */
async function toolsOfAgent(db: Executor, tenantId: string, agentId: string): Promise<AgentTool[]> {
  return db
    .selectFrom('agentTools as agt')
    .innerJoin('tools as t', 't.id', 'agt.toolId')
    .select(['t.id', 't.name', 't.description', 't.type', 't.authenticationType', 't.endpoint', 't.transportType', 't.customConfig'])
    .where('agt.agentId', '=', agentId)
    .where((eb) => eb.or([eb('t.tenantId', 'is', null), eb('t.tenantId', '=', tenantId)]))
    .orderBy('t.name')
    .orderBy('t.id')
    .execute();
}

/**
 * Throws why agent `agentId` cannot be changed by the current tenant: ReadOnlyError for a global
 * agent, AgentRetiredError for a retired one of the tenant's, NotFoundError when the tenant
 * cannot see it. Returns when it is the tenant's and active.
 */
async function explainRefusal(db: Executor, tenantId: string, agentId: string): Promise<void> {
  const agent = await db
    .selectFrom('agents as a')
    .select(['a.tenantId', 'a.retiredAt'])
    .where('a.id', '=', agentId)
    .where((eb) => visibleAgent(eb, tenantId, 'tenant'))
    .executeTakeFirst();
  if (agent === undefined) throw new NotFoundError('agent', agentId);
  if (agent.tenantId === null) throw new ReadOnlyError('agent', agentId);
  if (agent.retiredAt !== null) throw new AgentRetiredError(agentId);
}
