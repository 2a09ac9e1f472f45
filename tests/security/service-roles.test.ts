/**
 * Every function of the package under every service role (README, "Production roles"): the roles
 * it is for can call it (the grants suffice), the others get a PermissionError naming the role and
 * the operation before any SQL, and — with the package's check out of the way (the transaction
 * entered as app_user, then switched to the role) — the database's grants refuse them too, except
 * where a role's grants are broader than its functions need for a reason written below. On PGlite
 * too: SET LOCAL ROLE works there like on a server.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PermissionError } from '../../src/db/errors.ts';
import { FUNCTION_ROLES, type Operation, type ServiceRole } from '../../src/db/service-roles.ts';
import type { TenantTx } from '../../src/db/tenant-tx.ts';
import { withTenant } from '../../src/db/tenant.ts';
import * as api from '../../src/index.ts';
import { insertChatWorld, type ChatWorld } from '../support/conversation-fixtures.ts';
import { createLoginRole } from '../support/login-role.ts';
import { testRing } from '../support/secret-keys.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

const ROLES: ServiceRole[] = ['app_server', 'app_gateway', 'app_cms'];

let t: TestDb;
let w: ChatWorld;
let internalName: string;
let apiKey: string;
let conversationId: string;
let messageId: string;
let resourceId: string;
let providerId: number;
let toolId: number;
let otherToolId: number;
/** A tool of tenant A (updateTool) and an agent of A that deleteAgent retires. */
let tenantToolId: number;
let retiringAgentId: string;
/** A user of tenant A with a budget, whose budget and key the admin functions change. */
let adminUserId: string;
/** Holds of adminUserId for settleUsage (one per call) and releaseReservation, inserted by the owner. */
let holdIds: string[];
let releasedHoldId: string;
/** An alert of tenant A, inserted by the owner, for resolveBudgetAlert. */
let alertIdForRoles: string;
const embedding = Array.from({ length: 1536 }, (_, i) => (i === 0 ? 1 : 0.001));

/** One call of each function, with parameters that work for the tenant A of the chat world. */
const calls: Record<Operation, (tx: TenantTx) => Promise<unknown>> = {
  createUser: (tx) => api.createUser(tx, { email: `u-${randomUUID()}@example.com`, roleId: w.roleId }),
  findUser: (tx) => api.findUser(tx, { userId: w.a.userId }),
  getUser: (tx) => api.getUser(tx, { userId: w.a.userId }),
  authenticateApiKey: (tx) => api.authenticateApiKey(tx, apiKey),
  can: (tx) => api.can(tx, { userId: w.a.userId, resource: 'users', action: 'manage' }),
  costSummary: (tx) => api.costSummary(tx, { from: new Date('2020-01-01'), to: new Date('2100-01-01'), groupBy: 'month' }),
  getUserBudget: (tx) => api.getUserBudget(tx, { userId: w.a.userId }),
  getTenantSpend: (tx) => api.getTenantSpend(tx),
  listUsage: (tx) => api.listUsage(tx, { userId: w.a.userId, limit: 5 }),
  listBudgetAlerts: (tx) => api.listBudgetAlerts(tx, { status: 'open', limit: 5 }),
  resolveBudgetAlert: (tx) => api.resolveBudgetAlert(tx, { alertId: alertIdForRoles }),
  reserveBudget: (tx) => api.reserveBudget(tx, { userId: adminUserId, amount: '0.01', ttlSeconds: 60 }),
  // A hold of its own per call (made by the owner in beforeAll): a settled hold cannot be settled again.
  settleUsage: (tx) => api.settleUsage(tx, { reservationId: holdIds.shift()!, modelId: w.modelId, type: 'chat', inputTokens: 10, outputTokens: 5 }),
  releaseReservation: (tx) => api.releaseReservation(tx, { reservationId: releasedHoldId }),
  getCurrentTenant: (tx) => api.getCurrentTenant(tx),
  listModels: (tx) => api.listModels(tx),
  getModelByInternalName: (tx) => api.getModelByInternalName(tx, internalName),
  recordUsage: (tx) => api.recordUsage(tx, { userId: w.a.userId, modelId: w.modelId, type: 'chat', inputTokens: 10, outputTokens: 5 }),
  createAgent: (tx) => api.createAgent(tx, { name: 'Role test', modelId: w.modelId }),
  getAgent: (tx) => api.getAgent(tx, { agentId: w.a.agentId }),
  listAgentsForUser: (tx) => api.listAgentsForUser(tx, { userId: w.a.userId }),
  shareAgent: (tx) => api.shareAgent(tx, { agentId: w.a.agentId, userId: w.a.otherUserId, role: 'viewer' }),
  resolveAgent: (tx) => api.resolveAgent(tx, { agentId: w.a.agentId, userId: w.a.userId }),
  createConversation: (tx) => api.createConversation(tx, { userId: w.a.userId, agentId: w.a.agentId }),
  getConversation: (tx) => api.getConversation(tx, { conversationId }),
  listConversations: (tx) => api.listConversations(tx, { userId: w.a.userId }),
  renameConversation: (tx) => api.renameConversation(tx, { conversationId, title: 'Renamed' }),
  softDeleteConversation: (tx) => api.softDeleteConversation(tx, { conversationId }),
  restoreConversation: (tx) => api.restoreConversation(tx, { conversationId }),
  purgeDeletedConversations: (tx) => api.purgeDeletedConversations(tx, { olderThan: new Date('2000-01-01') }),
  appendMessage: (tx) => api.appendMessage(tx, { conversationId, role: 'user', content: { text: 'hello' } }),
  listMessages: (tx) => api.listMessages(tx, { conversationId }),
  getThread: (tx) => api.getThread(tx, { messageId }),
  createResource: (tx) => api.createResource(tx, { name: 'notes.txt', type: 'text', content: 'notes' }),
  getResource: (tx) => api.getResource(tx, { resourceId }),
  listResources: (tx) => api.listResources(tx),
  addChunks: (tx) => api.addChunks(tx, { resourceId, chunks: [{ content: 'a chunk about roles', embedding }] }),
  similaritySearch: (tx) => api.similaritySearch(tx, { embedding, k: 3 }),
  hybridSearch: (tx) => api.hybridSearch(tx, { query: 'roles', embedding, k: 3 }),
  getProviderCredentials: (tx) => api.getProviderCredentials(tx, { providerId }),
  setUserToolCredential: (tx) => api.setUserToolCredential(tx, { userId: w.a.userId, toolId, credential: { token: 'role-test' } }),
  getUserToolCredential: (tx) => api.getUserToolCredential(tx, { userId: w.a.userId, toolId }),
  deleteUserToolCredential: (tx) => api.deleteUserToolCredential(tx, { userId: w.a.userId, toolId: otherToolId }),
  listUserTools: (tx) => api.listUserTools(tx, { userId: w.a.userId }),
  updateUser: (tx) => api.updateUser(tx, { userId: w.a.otherUserId, firstName: 'Role' }),
  setUserStatus: (tx) => api.setUserStatus(tx, { userId: w.a.otherUserId, status: 'active' }),
  setUserRole: (tx) => api.setUserRole(tx, { userId: w.a.otherUserId, roleId: w.roleId }),
  setBudget: (tx) => api.setBudget(tx, { userId: adminUserId, budget: '100' }),
  topUpBudget: (tx) => api.topUpBudget(tx, { userId: adminUserId, amount: '1' }),
  listUsers: (tx) => api.listUsers(tx, { limit: 5 }),
  rotateApiKey: (tx) => api.rotateApiKey(tx, { userId: adminUserId }),
  revokeApiKey: (tx) => api.revokeApiKey(tx, { userId: adminUserId }),
  updateTenant: (tx) => api.updateTenant(tx, { name: 'Tenant A', settings: { features: ['chat'] } }),
  // The cms's catalog writes (issue 15, part A).
  updateAgent: (tx) => api.updateAgent(tx, { agentId: w.a.agentId, description: 'changed by a role test' }),
  deleteAgent: (tx) => api.deleteAgent(tx, { agentId: retiringAgentId }),
  setAgentTools: (tx) => api.setAgentTools(tx, { agentId: w.a.agentId, toolIds: [toolId] }),
  unshareAgent: (tx) => api.unshareAgent(tx, { agentId: w.a.agentId, userId: w.a.otherUserId }),
  listAgentShares: (tx) => api.listAgentShares(tx, { agentId: w.a.agentId }),
  createPromptVersion: (tx) => api.createPromptVersion(tx, { name: 'role-prompt', content: 'You are tested.' }),
  getPrompt: (tx) => api.getPrompt(tx, { name: 'role-prompt' }),
  listPromptVersions: (tx) => api.listPromptVersions(tx, { name: 'role-prompt' }),
  createTool: (tx) => api.createTool(tx, { name: `role-tool-${randomUUID()}` }),
  updateTool: (tx) => api.updateTool(tx, { toolId: tenantToolId, description: 'changed by a role test' }),
  getTool: (tx) => api.getTool(tx, { toolId }),
  listTools: (tx) => api.listTools(tx),
  // Issue 15 part B.
  editMessage: (tx) => api.editMessage(tx, { messageId, content: { text: 'edited' } }),
  listBranches: (tx) => api.listBranches(tx, { messageId }),
  deleteMessageBranch: (tx) => api.deleteMessageBranch(tx, { messageId: randomUUID() }),
  setConversationSummary: (tx) => api.setConversationSummary(tx, { conversationId, messageId: null }),
  updateResource: (tx) => api.updateResource(tx, { resourceId, name: 'doc-v2.txt' }),
  deleteResource: (tx) => api.deleteResource(tx, { resourceId: randomUUID() }),
  replaceResourceChunks: (tx) => api.replaceResourceChunks(tx, { resourceId, chunks: [{ content: 'a re-indexed chunk', embedding }] }),
  deleteChunks: (tx) => api.deleteChunks(tx, { resourceId: randomUUID() }),
};

/**
 * (operation, role) pairs the database allows although the package does not, because the role's
 * grants are broader than its functions: the gateway reads usage (recordUsage reads back the row
 * of a repeated idempotency key), so it could list it too; the package keeps analytics to the
 * server (costSummary reads usage_rollups, which only the server may read: migration 0021).
 * It reads users (budgets and status of the users it charges), so it could list them too.
 */
const BROADER_GRANTS = new Set(['listUsers app_gateway', 'listUsage app_gateway', 'listBudgetAlerts app_gateway']);

beforeAll(async () => {
  t = await openTestDb({ secretKeys: testRing });
  w = await insertChatWorld(t.db);
  ({ internalName, providerId } = await t.db.selectFrom('models').select(['internalName', 'providerId']).where('id', '=', w.modelId).executeTakeFirstOrThrow());
  [toolId, otherToolId] = (await t.db.insertInto('tools').values([{ name: 'role-tool', type: 'builtin' }, { name: 'other-role-tool', type: 'builtin' }]).returning('id').execute()).map((r) => r.id) as [number, number];
  ({ apiKey } = await withTenant(t.db, w.a.tenantId, (tx) => api.createUser(tx, { email: 'keyed@example.com', roleId: w.roleId })));
  adminUserId = (await withTenant(t.db, w.a.tenantId, (tx) => api.createUser(tx, { email: 'admin-target@example.com', roleId: w.roleId, budget: '10' }))).user.id;
  const holds = await t.db
    .insertInto('budgetHolds')
    .values(Array.from({ length: 12 }, () => ({ tenantId: w.a.tenantId, userId: adminUserId, amount: '0.01', expiresAt: new Date(Date.now() + 3_600_000) })))
    .returning('id')
    .execute();
  [releasedHoldId, ...holdIds] = holds.map((h) => h.id) as [string, ...string[]];
  const charged = await withTenant(t.db, w.a.tenantId, (tx) => api.recordUsage(tx, { userId: adminUserId, modelId: w.modelId, type: 'chat', inputTokens: 1, outputTokens: 0 }));
  alertIdForRoles = (
    await t.db
      .insertInto('budgetAlerts')
      .values({ tenantId: w.a.tenantId, userId: adminUserId, scope: 'user', windowStart: new Date(0), threshold: 50, severity: 'warning', budget: '10', spent: '5', usageId: charged.id })
      .returning('id')
      .executeTakeFirstOrThrow()
  ).id;
  await withTenant(t.db, w.a.tenantId, async (tx) => {
    conversationId = (await api.createConversation(tx, { userId: w.a.userId, agentId: w.a.agentId })).id;
    messageId = (await api.appendMessage(tx, { conversationId, role: 'user', content: { text: 'first' } })).id;
    resourceId = (await api.createResource(tx, { name: 'doc.txt', type: 'text', content: 'doc' })).id;
    await api.setUserToolCredential(tx, { userId: w.a.userId, toolId, credential: { token: 'fixture' } });
    tenantToolId = (await api.createTool(tx, { name: 'tenant-role-tool' })).id;
    retiringAgentId = (await api.createAgent(tx, { name: 'Retired by a role test', modelId: w.modelId })).id;
    await api.createPromptVersion(tx, { name: 'role-prompt', content: 'You are a fixture.' });
  });
});
afterAll(() => t?.close());

it('the table names every tenant-facing function the package exports', () => {
  const exported = Object.entries(api)
    .filter(([, value]) => typeof value === 'function' && value.constructor.name === 'AsyncFunction')
    .map(([name]) => name);
  const owner = new Set(['createTenant', 'migrate', 'migrateDown', 'migrationStatus', 'seed', 'syncDatabase', 'getDb', 'closeDb', 'withTenant', 'checkHealth', 'rotateSecrets', 'exportTenant', 'importTenant', 'deleteTenant']);
  const missing = exported.filter((name) => !owner.has(name) && !(name in FUNCTION_ROLES));
  expect(missing).toEqual([]);
  expect(Object.keys(calls).sort()).toEqual(Object.keys(FUNCTION_ROLES).sort());
});

describe.each(ROLES)('as %s', (role) => {
  const operations = Object.keys(FUNCTION_ROLES) as Operation[];
  const allowed = operations.filter((op) => (FUNCTION_ROLES[op] as readonly string[]).includes(role));
  const refused = operations.filter((op) => !allowed.includes(op));

  it.each(allowed)('%s works', async (op) => {
    await expect(withTenant(t.db, w.a.tenantId, (tx) => calls[op](tx), { role })).resolves.not.toThrow();
  });

  it.each(refused)('%s fails with a PermissionError naming the role and the operation, before any SQL', async (op) => {
    const error = await withTenant(t.db, w.a.tenantId, (tx) => calls[op](tx), { role }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermissionError);
    expect(error).toMatchObject({ role, operation: op, allowed: FUNCTION_ROLES[op] });
    expect((error as Error).message).toContain(`role ${role} may not call ${op}`);
  });

  it.each(refused)('%s is refused by the database too when the package check is bypassed', async (op) => {
    let outcome = 'not run';
    await withTenant(t.db, w.a.tenantId, async (tx) => {
      await sql`select set_config('role', ${role}, true)`.execute(tx); // as app_user for the package, as `role` for the database
      outcome = await calls[op](tx).then(() => 'allowed', (error: { code?: string }) => error.code ?? String(error));
    }).catch(() => {}); // a refused statement aborts the transaction: its rollback is expected
    expect(outcome).toBe(BROADER_GRANTS.has(`${op} ${role}`) ? 'allowed' : '42501');
  });
});

// The documented login form, for each service: `create role X login password '…' noinherit in
// role app_<service>` with DB_APP_ROLE=app_<service>, over one connection, never a superuser.
describe.runIf(onServer)('each service logging in as the README says', () => {
  it('the gateway: API keys and models outside withTenant, charges inside', async () => {
    const login = await createLoginRole(t, 'app_gateway');
    try {
      const db = login.open(1);
      const owner = await api.authenticateApiKey(db, apiKey);
      expect(owner).toMatchObject({ tenantId: w.a.tenantId });
      expect((await api.listModels(db)).map((m) => m.id)).toContain(w.modelId);
      expect((await api.getModelByInternalName(db, internalName)).id).toBe(w.modelId);
      expect(await api.getProviderCredentials(db, { providerId })).toMatchObject({ providerId, apiKey: null });
      const usage = await withTenant(db, owner!.tenantId, (tx) =>
        api.recordUsage(tx, { userId: owner!.userId, modelId: w.modelId, type: 'chat', inputTokens: 1000, outputTokens: 0 }));
      expect(usage.cost).toBe('0.003'); // 1,000 input tokens at 0.003 per 1k
      await expect(withTenant(db, owner!.tenantId, (tx) => api.listConversations(tx, { userId: owner!.userId }))).rejects.toBeInstanceOf(PermissionError);
    } finally {
      await login.drop();
    }
  });

  it('the server: API keys outside withTenant, users inside', async () => {
    const login = await createLoginRole(t, 'app_server');
    try {
      const db = login.open(1);
      const owner = await api.authenticateApiKey(db, apiKey);
      const { user } = await withTenant(db, owner!.tenantId, (tx) => api.createUser(tx, { email: `s-${randomUUID()}@example.com`, roleId: w.roleId }));
      expect(await withTenant(db, owner!.tenantId, (tx) => api.getUser(tx, { userId: user.id }))).toMatchObject({ id: user.id });
      await expect(api.listModels(db)).rejects.toBeInstanceOf(PermissionError);
    } finally {
      await login.drop();
    }
  });

  it('the cms: models outside withTenant, conversations and search inside', async () => {
    const login = await createLoginRole(t, 'app_cms');
    try {
      const db = login.open(1);
      expect((await api.listModels(db)).map((m) => m.id)).toContain(w.modelId);
      const convo = await withTenant(db, w.a.tenantId, (tx) => api.createConversation(tx, { userId: w.a.userId, agentId: w.a.agentId }));
      await withTenant(db, w.a.tenantId, (tx) => api.appendMessage(tx, { conversationId: convo.id, role: 'user', content: { text: 'hi' } }));
      expect((await withTenant(db, w.a.tenantId, (tx) => api.hybridSearch(tx, { query: 'roles', embedding, k: 3 }))).length).toBeGreaterThanOrEqual(0);
      await expect(api.authenticateApiKey(db, apiKey)).rejects.toBeInstanceOf(PermissionError);
    } finally {
      await login.drop();
    }
  });
});
