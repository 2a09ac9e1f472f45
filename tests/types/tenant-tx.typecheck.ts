/**
 * Checked by `npm run typecheck`, never run: tenant-scoped functions accept only the transaction
 * withTenant hands to its callback (TenantTx). Each function is called three times with the same
 * params object: inside withTenant (must compile), with the bare database and with a plain
 * Transaction<DB> (each must NOT compile). If a function ever took the bare database again, its
 * `@ts-expect-error` would be unused, which is itself a compile error (TS2578): the typecheck fails.
 * The params are shared, so the executor is the only thing that differs between the lines.
 *
 * Owner and catalog functions (createTenant, listModels, getModelByInternalName,
 * authenticateApiKey) take the bare database, and a TenantTx too.
 */
import type { Kysely, Transaction } from 'kysely';
import {
  addChunks,
  appendMessage,
  authenticateApiKey,
  can,
  costSummary,
  createAgent,
  createConversation,
  createResource,
  createTenant,
  createUser,
  findUser,
  getAgent,
  getConversation,
  getCurrentTenant,
  getModelByInternalName,
  getResource,
  getThread,
  getUser,
  getUserBudget,
  hybridSearch,
  listAgentsForUser,
  listConversations,
  listMessages,
  listModels,
  listResources,
  purgeDeletedConversations,
  recordUsage,
  renameConversation,
  resolveAgent,
  restoreConversation,
  shareAgent,
  similaritySearch,
  softDeleteConversation,
  withTenant,
  type DB,
  type TenantTx,
} from '../../src/index.ts';

export async function tenantScopedFunctionsTakeOnlyTenantTx(db: Kysely<DB>, plain: Transaction<DB>, tenantId: string): Promise<void> {
  const id = '00000000-0000-4000-8000-000000000001';
  const embedding = [1, 0, 0];

  // users
  const newUser = { email: 'ada@example.com', roleId: 3, budget: '25' };
  await withTenant(db, tenantId, (tx) => createUser(tx, newUser));
  // @ts-expect-error the bare database is not a TenantTx
  await createUser(db, newUser);
  // @ts-expect-error a plain transaction is not a TenantTx
  await createUser(plain, newUser);

  const user = { userId: id };
  await withTenant(db, tenantId, (tx) => getUser(tx, user));
  // @ts-expect-error the bare database is not a TenantTx
  await getUser(db, user);
  // @ts-expect-error a plain transaction is not a TenantTx
  await getUser(plain, user);
  await withTenant(db, tenantId, (tx) => findUser(tx, user));
  // @ts-expect-error the bare database is not a TenantTx
  await findUser(db, user);
  // @ts-expect-error a plain transaction is not a TenantTx
  await findUser(plain, user);

  // tenants
  await withTenant(db, tenantId, (tx) => getCurrentTenant(tx));
  // @ts-expect-error the bare database is not a TenantTx
  await getCurrentTenant(db);
  // @ts-expect-error a plain transaction is not a TenantTx
  await getCurrentTenant(plain);

  // authz
  const permission = { userId: id, resource: 'users', action: 'manage' };
  await withTenant(db, tenantId, (tx) => can(tx, permission));
  // @ts-expect-error the bare database is not a TenantTx
  await can(db, permission);
  // @ts-expect-error a plain transaction is not a TenantTx
  await can(plain, permission);

  // agents
  const newAgent = { name: 'Support', modelId: 2, toolIds: [1] };
  await withTenant(db, tenantId, (tx) => createAgent(tx, newAgent));
  // @ts-expect-error the bare database is not a TenantTx
  await createAgent(db, newAgent);
  // @ts-expect-error a plain transaction is not a TenantTx
  await createAgent(plain, newAgent);

  const agent = { agentId: id };
  await withTenant(db, tenantId, (tx) => getAgent(tx, agent));
  // @ts-expect-error the bare database is not a TenantTx
  await getAgent(db, agent);
  // @ts-expect-error a plain transaction is not a TenantTx
  await getAgent(plain, agent);
  const resolvable = { agentId: id, userId: id };
  await withTenant(db, tenantId, (tx) => resolveAgent(tx, resolvable));
  // @ts-expect-error the bare database is not a TenantTx
  await resolveAgent(db, resolvable);
  // @ts-expect-error a plain transaction is not a TenantTx
  await resolveAgent(plain, resolvable);
  await withTenant(db, tenantId, (tx) => listAgentsForUser(tx, user));
  // @ts-expect-error the bare database is not a TenantTx
  await listAgentsForUser(db, user);
  // @ts-expect-error a plain transaction is not a TenantTx
  await listAgentsForUser(plain, user);

  const share = { agentId: id, userId: id, role: 'viewer' } as const;
  await withTenant(db, tenantId, (tx) => shareAgent(tx, share));
  // @ts-expect-error the bare database is not a TenantTx
  await shareAgent(db, share);
  // @ts-expect-error a plain transaction is not a TenantTx
  await shareAgent(plain, share);

  // conversations
  const newConversation = { userId: id, agentId: id, title: 'Trip plans' };
  await withTenant(db, tenantId, (tx) => createConversation(tx, newConversation));
  // @ts-expect-error the bare database is not a TenantTx
  await createConversation(db, newConversation);
  // @ts-expect-error a plain transaction is not a TenantTx
  await createConversation(plain, newConversation);

  const conversation = { conversationId: id };
  await withTenant(db, tenantId, (tx) => getConversation(tx, conversation));
  // @ts-expect-error the bare database is not a TenantTx
  await getConversation(db, conversation);
  // @ts-expect-error a plain transaction is not a TenantTx
  await getConversation(plain, conversation);
  await withTenant(db, tenantId, (tx) => softDeleteConversation(tx, conversation));
  // @ts-expect-error the bare database is not a TenantTx
  await softDeleteConversation(db, conversation);
  // @ts-expect-error a plain transaction is not a TenantTx
  await softDeleteConversation(plain, conversation);
  await withTenant(db, tenantId, (tx) => restoreConversation(tx, conversation));
  // @ts-expect-error the bare database is not a TenantTx
  await restoreConversation(db, conversation);
  // @ts-expect-error a plain transaction is not a TenantTx
  await restoreConversation(plain, conversation);

  const conversationPage = { userId: id, limit: 10, cursor: null };
  await withTenant(db, tenantId, (tx) => listConversations(tx, conversationPage));
  // @ts-expect-error the bare database is not a TenantTx
  await listConversations(db, conversationPage);
  // @ts-expect-error a plain transaction is not a TenantTx
  await listConversations(plain, conversationPage);

  const rename = { conversationId: id, title: 'New title' };
  await withTenant(db, tenantId, (tx) => renameConversation(tx, rename));
  // @ts-expect-error the bare database is not a TenantTx
  await renameConversation(db, rename);
  // @ts-expect-error a plain transaction is not a TenantTx
  await renameConversation(plain, rename);

  const purge = { olderThan: new Date() };
  await withTenant(db, tenantId, (tx) => purgeDeletedConversations(tx, purge));
  // @ts-expect-error the bare database is not a TenantTx
  await purgeDeletedConversations(db, purge);
  // @ts-expect-error a plain transaction is not a TenantTx
  await purgeDeletedConversations(plain, purge);

  // messages
  const newMessage = { conversationId: id, role: 'user', content: { text: 'Hi' } } as const;
  await withTenant(db, tenantId, (tx) => appendMessage(tx, newMessage));
  // @ts-expect-error the bare database is not a TenantTx
  await appendMessage(db, newMessage);
  // @ts-expect-error a plain transaction is not a TenantTx
  await appendMessage(plain, newMessage);

  const messagePage = { conversationId: id, limit: 10 };
  await withTenant(db, tenantId, (tx) => listMessages(tx, messagePage));
  // @ts-expect-error the bare database is not a TenantTx
  await listMessages(db, messagePage);
  // @ts-expect-error a plain transaction is not a TenantTx
  await listMessages(plain, messagePage);

  const message = { messageId: id };
  await withTenant(db, tenantId, (tx) => getThread(tx, message));
  // @ts-expect-error the bare database is not a TenantTx
  await getThread(db, message);
  // @ts-expect-error a plain transaction is not a TenantTx
  await getThread(plain, message);

  // resources
  const newResource = { name: 'handbook.pdf', type: 'pdf', s3Uri: 's3://docs/handbook.pdf' };
  await withTenant(db, tenantId, (tx) => createResource(tx, newResource));
  // @ts-expect-error the bare database is not a TenantTx
  await createResource(db, newResource);
  // @ts-expect-error a plain transaction is not a TenantTx
  await createResource(plain, newResource);

  const resource = { resourceId: id };
  await withTenant(db, tenantId, (tx) => getResource(tx, resource));
  // @ts-expect-error the bare database is not a TenantTx
  await getResource(db, resource);
  // @ts-expect-error a plain transaction is not a TenantTx
  await getResource(plain, resource);

  const resourcePage = { agentId: id, limit: 10 };
  await withTenant(db, tenantId, (tx) => listResources(tx, resourcePage));
  // @ts-expect-error the bare database is not a TenantTx
  await listResources(db, resourcePage);
  // @ts-expect-error a plain transaction is not a TenantTx
  await listResources(plain, resourcePage);

  // usage
  const charge = { userId: id, modelId: 5, type: 'chat', inputTokens: 1234, outputTokens: 567 };
  await withTenant(db, tenantId, (tx) => recordUsage(tx, charge));
  // @ts-expect-error the bare database is not a TenantTx
  await recordUsage(db, charge);
  // @ts-expect-error a plain transaction is not a TenantTx
  await recordUsage(plain, charge);

  const summary = { from: new Date(0), to: new Date(), groupBy: 'day', by: 'model' } as const;
  await withTenant(db, tenantId, (tx) => costSummary(tx, summary));
  // @ts-expect-error the bare database is not a TenantTx
  await costSummary(db, summary);
  // @ts-expect-error a plain transaction is not a TenantTx
  await costSummary(plain, summary);

  await withTenant(db, tenantId, (tx) => getUserBudget(tx, user));
  // @ts-expect-error the bare database is not a TenantTx
  await getUserBudget(db, user);
  // @ts-expect-error a plain transaction is not a TenantTx
  await getUserBudget(plain, user);

  // vectors
  const chunks = { resourceId: id, chunks: [{ content: 'text', embedding }] };
  await withTenant(db, tenantId, (tx) => addChunks(tx, chunks));
  // @ts-expect-error the bare database is not a TenantTx
  await addChunks(db, chunks);
  // @ts-expect-error a plain transaction is not a TenantTx
  await addChunks(plain, chunks);

  const nearest = { embedding, k: 5, threshold: 0.75 };
  await withTenant(db, tenantId, (tx) => similaritySearch(tx, nearest));
  // @ts-expect-error the bare database is not a TenantTx
  await similaritySearch(db, nearest);
  // @ts-expect-error a plain transaction is not a TenantTx
  await similaritySearch(plain, nearest);

  const hybrid = { query: 'launch codes', embedding, k: 5 };
  await withTenant(db, tenantId, (tx) => hybridSearch(tx, hybrid));
  // @ts-expect-error the bare database is not a TenantTx
  await hybridSearch(db, hybrid);
  // @ts-expect-error a plain transaction is not a TenantTx
  await hybridSearch(plain, hybrid);

  // Owner and catalog functions: the bare database, and also a TenantTx.
  await createTenant(db, { name: 'Acme', slug: 'acme' });
  await authenticateApiKey(db, 'sk_example-key');
  await listModels(db, { type: 'chat' });
  await getModelByInternalName(db, 'gpt-4o');
  await withTenant(db, tenantId, async (tx) => {
    await listModels(tx);
    await getModelByInternalName(tx, 'gpt-4o');
  });
}

/** No value but withTenant's callback parameter has the brand: a plain transaction cannot be assigned to TenantTx. */
export function plainTransactionIsNotATenantTx(plain: Transaction<DB>, db: Kysely<DB>): void {
  // @ts-expect-error a plain transaction is not a TenantTx
  const fromPlain: TenantTx = plain;
  // @ts-expect-error the bare database is not a TenantTx
  const fromDb: TenantTx = db;
  void fromPlain;
  void fromDb;
}
