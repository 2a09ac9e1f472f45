/**
 * The database package: the data layer of the multi-tenant chat platform.
 * Services import everything from here; see README.md for the configuration.
 */

// Connections, tenant context, health.
export { createDb, type CreateDbOptions, type Executor, type Tx } from './db/create-db.ts';
export { getDb, closeDb, syncDatabase } from './lifecycle/get-db.ts';
export { withTenant, tenantOf, isUuid } from './db/tenant.ts';
export type { TenantTx } from './db/tenant-tx.ts';
export { checkHealth, type Health } from './db/health.ts';
export { loadConfig, type DbConfig, type PostgresConfig, type PgliteConfig } from './db/config.ts';
export { describeTarget, resolveTarget, type Target } from './db/target.ts';
export { toVectorSql, toVectorBinary, fromVectorSql, vectorValue } from './db/vector.ts';
export type { DB } from './db/schema.generated.ts';

// Migrations and seed data.
export {
  migrate,
  migrateDown,
  migrationStatus,
  readMigrationFiles,
  type MigrationFile,
  type MigrationStatus,
  type MigratorOptions,
  type MigrateOptions,
  type MigrateDownOptions,
} from './db/migrator.ts';
export {
  seed,
  formatSeedSummary,
  DEFAULT_DATA_DIR,
  SEED_FILES,
  type SeedOptions,
  type SeedSummary,
  type SeedFileSummary,
  type SeedRowRef,
} from './seed/seed.ts';

// Queries: one module per aggregate.
export type { Page } from './queries/cursor.ts';
export {
  DEFAULT_PAGE_SIZE,
  MAX_PAGE_SIZE,
  MAX_SEARCH_K,
  MAX_TEXT_CANDIDATES,
  DEFAULT_PAGE_BYTES,
  MAX_PAGE_BYTES,
  MAX_RESOURCE_CONTENT_BYTES,
  MAX_CONTENT_BYTES_CEILING,
  MAX_METADATA_BYTES,
  MAX_CHUNK_CONTENT_BYTES,
  TSVECTOR_MAX_BYTES,
  MAX_COST_SUMMARY_ROWS,
  MAX_COST_SUMMARY_ROWS_CEILING,
  MIN_DATE,
  MAX_DATE,
} from './queries/limits.ts';
export { createTenant, getCurrentTenant, updateTenant, type Tenant } from './queries/tenants.ts';
export { TENANT_SETTING_KEYS, type TenantSettings, type TenantSettingsPatch } from './queries/tenant-settings.ts';
export {
  createUser,
  findUser,
  getUser,
  authenticateApiKey,
  hashApiKey,
  tenantOfApiKey,
  type User,
  type ApiKeyOwner,
} from './queries/users.ts';
export {
  updateUser,
  setUserStatus,
  setUserRole,
  setBudget,
  topUpBudget,
  listUsers,
  rotateApiKey,
  revokeApiKey,
  USER_STATUSES,
  type UserStatus,
  type ListUsersParams,
} from './queries/user-admin.ts';
export { can } from './queries/authz.ts';
export { listModels, getModelByInternalName, type Model, type ModelType } from './queries/models.ts';
export { getProviderCredentials, type ProviderCredentials } from './queries/providers.ts';
export {
  setUserToolCredential,
  getUserToolCredential,
  deleteUserToolCredential,
  listUserTools,
  MAX_CREDENTIAL_BYTES,
  type UserTool,
} from './queries/user-tools.ts';
export {
  createAgent,
  getAgent,
  listAgentsForUser,
  shareAgent,
  resolveAgent,
  type Agent,
  type UserAgent,
  type AgentRole,
  type ResolvedAgent,
  type AgentModel,
  type AgentPrompt,
  type AgentProvider,
  type AgentTool,
} from './queries/agents.ts';
// The cms's catalog writes (issue 15, part A): agents changed, retired, their tools and shares; prompt versions; tools.
export { updateAgent, deleteAgent, setAgentTools, type AgentChanges } from './queries/agent-edits.ts';
export { unshareAgent, listAgentShares } from './queries/agent-shares.ts';
export { MAX_TOOLS } from './queries/agents.ts';
export {
  createPromptVersion,
  getPrompt,
  listPromptVersions,
  MAX_PROMPT_CONTENT_BYTES,
  MAX_PROMPT_NAME_LENGTH,
  type Prompt,
  type PromptVersion,
} from './queries/prompts.ts';
export { createTool, updateTool, getTool, listTools, type Tool, type ToolFields } from './queries/tools.ts';
export { AgentRetiredError, ReadOnlyError } from './db/errors.ts';
// End of the cms's catalog writes.
export {
  createConversation,
  getConversation,
  listConversations,
  renameConversation,
  softDeleteConversation,
  restoreConversation,
  purgeDeletedConversations,
  MAX_TITLE_LENGTH,
  type Conversation,
} from './queries/conversations.ts';
export {
  appendMessage,
  listMessages,
  getThread,
  MESSAGE_ROLES,
  MAX_THREAD_DEPTH,
  MAX_MESSAGE_CONTENT_BYTES,
  type Message,
  type MessageRole,
  type MessageContent,
} from './queries/messages.ts';
export { createResource, getResource, listResources, type Resource } from './queries/resources.ts';
// Issue 15 part B: edits as branches, resource updates and re-indexing.
export { editMessage, listBranches, deleteMessageBranch, setConversationSummary } from './queries/message-branches.ts';
export { updateResource, deleteResource } from './queries/resources.ts';
export { replaceResourceChunks, deleteChunks, type ChunkFilter } from './queries/vectors.ts';
export {
  recordUsage,
  costSummary,
  type UsageRow,
  type RecordUsageParams,
  type CostSummaryParams,
  type CostSummaryRow,
  type CostPeriod,
  type CostGrouping,
} from './queries/usage.ts';
export { listUsage, type ListUsageParams } from './queries/usage-log.ts';
export { listBudgetAlerts, resolveBudgetAlert, type BudgetAlert, type ListBudgetAlertsParams } from './queries/budget-alerts.ts';
export {
  getUserBudget,
  getTenantSpend,
  reserveBudget,
  settleUsage,
  releaseReservation,
  BUDGET_PERIODS,
  DEFAULT_RESERVATION_SECONDS,
  MAX_RESERVATION_SECONDS,
  type BudgetPeriod,
  type UserBudget,
  type TenantSpend,
  type Reservation,
  type SettleUsageParams,
} from './queries/budgets.ts';
export {
  addChunks,
  similaritySearch,
  hybridSearch,
  EMBEDDING_DIMENSIONS,
  type ChunkSource,
  type NewChunk,
  type SimilarChunk,
  type HybridChunk,
} from './queries/vectors.ts';

// Secrets at rest.
export { rotateSecrets, type RotateSecretsOptions, type SecretRotation, type ColumnRotation } from './db/rotate-secrets.ts';
export { SecretKeyRing, parseSecretKeys, generateSecretKey } from './db/secrets.ts';

// Tenant offboarding (the owner path).
export { exportTenant, EXPORT_FORMAT, MANIFEST_FILE, type ExportTenantOptions, type TenantExportManifest, type ExportedTable } from './db/export-tenant.ts';
export { importTenant, type ImportTenantOptions, type TenantImport } from './db/import-tenant.ts';
export { deleteTenant, type DeleteTenantOptions, type TenantDeletion } from './db/delete-tenant.ts';

// Errors.
export {
  BudgetExceededError,
  ConfigError,
  ConnectionError,
  IdempotencyConflictError,
  MigrationError,
  NotFoundError,
  PermissionError,
  SecretError,
  StoreLockedError,
  StoreOpenError,
  TenantContextError,
  TenantTransferError,
  UserDisabledError,
  ValidationError,
  sqlState,
} from './db/errors.ts';
export { SeedError, type SeedProblem } from './seed/errors.ts';
