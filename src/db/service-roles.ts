import type { Kysely } from 'kysely';
import type { AppRole } from './config.ts';
import { appRoleOf } from './create-db.ts';
import { PermissionError } from './errors.ts';
import { roleOf } from './tenant.ts';

/** The three service roles of seed 000's data-ownership matrix (app_user, for development, is all three). */
export type ServiceRole = Exclude<AppRole, 'app_user'>;

/**
 * Which service role may call each function of the package: the README's "Production roles"
 * table, as data. The database's grants (migration 0009) are the wall; this table lets a call
 * under the wrong role fail before any SQL with an error that says so. app_user, the
 * development role, may call them all; so may the owner (no DB_APP_ROLE, outside withTenant).
 */
export const FUNCTION_ROLES = {
  // Users and roles, authorization, usage analytics: the server.
  createUser: ['app_server'],
  findUser: ['app_server', 'app_gateway'],
  getUser: ['app_server', 'app_gateway'],
  authenticateApiKey: ['app_server', 'app_gateway'],
  can: ['app_server'],
  costSummary: ['app_server'],
  getUserBudget: ['app_server', 'app_gateway'],
  getTenantSpend: ['app_server', 'app_gateway'],
  listUsage: ['app_server'],
  listBudgetAlerts: ['app_server'],
  resolveBudgetAlert: ['app_server'],
  getCurrentTenant: ['app_server', 'app_gateway', 'app_cms'],
  // The admin path (migration 0014): identity, rank, money and the tenant's own row.
  updateUser: ['app_server'],
  setUserStatus: ['app_server'],
  setUserRole: ['app_server'],
  setBudget: ['app_server'],
  topUpBudget: ['app_server'],
  listUsers: ['app_server'],
  rotateApiKey: ['app_server'],
  revokeApiKey: ['app_server'],
  updateTenant: ['app_server'],
  // Model lookups and charges: the gateway (the cms resolves agents with their models).
  listModels: ['app_gateway', 'app_cms'],
  getModelByInternalName: ['app_gateway', 'app_cms'],
  recordUsage: ['app_gateway'],
  reserveBudget: ['app_gateway'],
  settleUsage: ['app_gateway'],
  releaseReservation: ['app_gateway'],
  // The key the gateway calls a provider with, decrypted: the gateway only.
  getProviderCredentials: ['app_gateway'],
  // Agents, conversations, messages, resources, vectors: the cms.
  createAgent: ['app_cms'],
  getAgent: ['app_cms'],
  listAgentsForUser: ['app_cms'],
  shareAgent: ['app_cms'],
  resolveAgent: ['app_cms'],
  // The cms's catalog writes (issue 15, part A): agents, prompts, tools.
  updateAgent: ['app_cms'],
  deleteAgent: ['app_cms'],
  setAgentTools: ['app_cms'],
  unshareAgent: ['app_cms'],
  listAgentShares: ['app_cms'],
  createPromptVersion: ['app_cms'],
  getPrompt: ['app_cms'],
  listPromptVersions: ['app_cms'],
  createTool: ['app_cms'],
  updateTool: ['app_cms'],
  getTool: ['app_cms'],
  listTools: ['app_cms'],
  createConversation: ['app_cms'],
  getConversation: ['app_cms'],
  listConversations: ['app_cms'],
  renameConversation: ['app_cms'],
  softDeleteConversation: ['app_cms'],
  restoreConversation: ['app_cms'],
  purgeDeletedConversations: ['app_cms'],
  appendMessage: ['app_cms'],
  listMessages: ['app_cms'],
  getThread: ['app_cms'],
  createResource: ['app_cms'],
  getResource: ['app_cms'],
  listResources: ['app_cms'],
  addChunks: ['app_cms'],
  similaritySearch: ['app_cms'],
  hybridSearch: ['app_cms'],
  // A user's tools and their credentials (decrypted for the cms, which runs the tools).
  setUserToolCredential: ['app_cms'],
  getUserToolCredential: ['app_cms'],
  deleteUserToolCredential: ['app_cms'],
  listUserTools: ['app_cms'],
  // Issue 15 part B: message branches, resource and chunk writes (the cms).
  editMessage: ['app_cms'],
  listBranches: ['app_cms'],
  deleteMessageBranch: ['app_cms'],
  setConversationSummary: ['app_cms'],
  updateResource: ['app_cms'],
  deleteResource: ['app_cms'],
  replaceResourceChunks: ['app_cms'],
  deleteChunks: ['app_cms'],
} as const satisfies Record<string, readonly ServiceRole[]>;

/** A function of the package that a service role calls. */
export type Operation = keyof typeof FUNCTION_ROLES;

/**
 * Throws a PermissionError, before any SQL, when `db` acts as a service role that may not call
 * `operation`: the role of the withTenant transaction, else the database's DB_APP_ROLE.
 */
export function assertRole(db: Kysely<any>, operation: Operation): void {
  const role = roleOf(db) ?? appRoleOf(db);
  if (role === undefined || role === 'app_user') return;
  const allowed: readonly ServiceRole[] = FUNCTION_ROLES[operation];
  if (!allowed.includes(role)) throw new PermissionError(role, operation, allowed);
}
