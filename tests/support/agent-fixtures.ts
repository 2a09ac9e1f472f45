import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { DB } from '../../src/db/schema.generated.ts';
import { providerKeyBinding } from '../../src/db/secret-bindings.ts';
import { sealSecret } from '../../src/db/secrets.ts';
import { testRing } from './secret-keys.ts';
import { insertTenant } from './fixtures.ts';

/** The provider API key of the test catalog: it must never appear in a query result. */
export const SECRET_API_KEY = 'sk-test-SECRET-provider-key-0123456789';

/** What {@link insertAgentCatalog} inserted. */
export interface AgentCatalog {
  roleId: number;
  providerId: number;
  modelId: number;
  promptId: number;
  /** Tool ids by name: browse, code, search (inserted in that id order: code, search, browse). */
  tools: { code: number; search: number; browse: number };
  /** 'Standard Chat': global, with the prompt and the tools search, code, browse (attached in that order). */
  globalAgentId: string;
  /** 'FedPulse': global, no prompt, no tools. */
  plainGlobalAgentId: string;
}

/**
 * Inserts as the owner (RLS does not bind it) a small catalog for agent tests: a role, a provider
 * with an API key (sealed with the tests' ring) and an endpoint, a model, a prompt, three tools and two global agents.
 * Independent of the seed loader and of data/*.csv.
 */
export async function insertAgentCatalog(db: Kysely<DB>): Promise<AgentCatalog> {
  const role = await db.insertInto('roles').values({ name: 'user' }).returning('id').executeTakeFirstOrThrow();
  const provider = await db
    .insertInto('providers')
    .values({ name: 'google', endpoint: 'https://llm.example.com/v1' })
    .returning('id')
    .executeTakeFirstOrThrow();
  // Stored as the seed stores it: sealed (migration 0012 refuses plaintext).
  await db.updateTable('providers').set({ apiKey: sealSecret(testRing, SECRET_API_KEY, providerKeyBinding(provider.id)) }).where('id', '=', provider.id).execute();
  const model = await db
    .insertInto('models')
    .values({
      providerId: provider.id, name: 'Gemini Flash', internalName: 'gemini-flash', type: 'chat', description: 'Fast',
      // Written with trailing zeros: resolveAgent returns them without ('0.00015', '0.0006').
      maxContext: 1_000_000, maxOutput: 8192, cost1kInput: '0.000150', cost1kOutput: '0.00060',
      defaultParameters: JSON.stringify({ temperature: 1 }),
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  const prompt = await db
    .insertInto('prompts')
    .values({ name: 'standard', version: 2, content: 'You are a careful assistant.' })
    .returning('id')
    .executeTakeFirstOrThrow();
  const [code, search, browse] = await db
    .insertInto('tools')
    .values([
      { name: 'code', type: 'builtin', transportType: 'local', customConfig: JSON.stringify({ timeoutMs: 10000 }) },
      { name: 'search', type: 'builtin', authenticationType: 'api_key', customConfig: JSON.stringify({ maxResults: 10 }) },
      { name: 'browse', type: 'builtin', description: 'Fetch pages', endpoint: 'https://browse.example.com' },
    ])
    .returning('id')
    .execute();
  const tools = { code: code!.id, search: search!.id, browse: browse!.id };
  const global = await db
    .insertInto('agents')
    .values({
      tenantId: null, modelId: model.id, promptId: prompt.id, name: 'Standard Chat', description: 'General purpose',
      modelParameters: JSON.stringify({ temperature: 0.7 }),
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  await db
    .insertInto('agentTools')
    .values([tools.search, tools.code, tools.browse].map((toolId) => ({ agentId: global.id, toolId })))
    .execute();
  const plain = await db
    .insertInto('agents')
    .values({ tenantId: null, modelId: model.id, name: 'FedPulse' })
    .returning('id')
    .executeTakeFirstOrThrow();
  return {
    roleId: role.id, providerId: provider.id, modelId: model.id, promptId: prompt.id, tools,
    globalAgentId: global.id, plainGlobalAgentId: plain.id,
  };
}

/** A tenant (inserted as the owner) with two users. */
export async function insertTenantWithUsers(db: Kysely<DB>, roleId: number, slug: string) {
  const { tenantId, userId } = await insertTenant(db, roleId, slug);
  const second = await db
    .insertInto('users')
    .values({ tenantId, email: `second@${slug}.example.com`, roleId })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { tenantId, userId, secondUserId: second.id };
}

/**
 * Agents of every kind as seen by user `userId` of tenant `tenantId`, inserted as the owner
 * (`shared` shared with the user through user_agents). `usable` are those the user may use, with
 * the global agent `globalAgentId`; `unusable` are those that must behave as if they did not
 * exist, with an id that exists nowhere.
 */
export async function insertAgentsOfEveryKind(
  db: Kysely<DB>,
  w: { modelId: number; globalAgentId: string; tenantId: string; userId: string; otherUserId: string; otherTenantId: string },
): Promise<{
  usable: { global: string; tenantWide: string; own: string; shared: string };
  unusable: { othersPrivate: string; otherTenants: string; otherTenantsPrivate: string; unknown: string };
}> {
  const agent = (tenantId: string | null, userId: string | null, name: string) =>
    db.insertInto('agents').values({ tenantId, userId, modelId: w.modelId, name }).returning('id').executeTakeFirstOrThrow().then((r) => r.id);
  const tenantWide = await agent(w.tenantId, null, 'Tenant-wide');
  const own = await agent(w.tenantId, w.userId, 'Own');
  const shared = await agent(w.tenantId, w.otherUserId, 'Private of the other user, shared');
  const othersPrivate = await agent(w.tenantId, w.otherUserId, 'Private of the other user');
  const otherTenants = await agent(w.otherTenantId, null, "Other tenant's");
  const otherOwner = await db.selectFrom('users').select('id').where('tenantId', '=', w.otherTenantId).executeTakeFirstOrThrow();
  const otherTenantsPrivate = await agent(w.otherTenantId, otherOwner.id, "Other tenant's, private");
  await db.insertInto('userAgents').values({ tenantId: w.tenantId, userId: w.userId, agentId: shared, agentScope: w.tenantId, role: 'viewer' }).execute();
  return {
    usable: { global: w.globalAgentId, tenantWide, own, shared },
    unusable: { othersPrivate, otherTenants, otherTenantsPrivate, unknown: randomUUID() },
  };
}
