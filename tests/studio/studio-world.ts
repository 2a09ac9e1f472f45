/**
 * The database the studio's tests (and bench/studio.ts) browse: the seed data, and two tenants
 * made with the package's own functions under withTenant, each with users and budgets, a
 * conversation whose message tree branches, usage charged for its messages and spread over
 * several days, and chunks with embeddings. Every name and text carries its tenant's marker, so a
 * page can be checked for rows of the other tenant.
 */
import { sql, type Kysely } from 'kysely';
import type { DB } from '../../src/db/schema.generated.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { createConversation } from '../../src/queries/conversations.ts';
import { appendMessage } from '../../src/queries/messages.ts';
import { createResource } from '../../src/queries/resources.ts';
import { createTenant } from '../../src/queries/tenants.ts';
import { recordUsage } from '../../src/queries/usage.ts';
import { createUser } from '../../src/queries/users.ts';
import { addChunks } from '../../src/queries/vectors.ts';
import { seed } from '../../src/seed/seed.ts';
import { clusteredPoints } from '../support/clustered-vectors.ts';

/** The seed's global "Standard Chat" agent and its `user` role. */
const GLOBAL_AGENT = '00000000-0000-4000-8000-000000000001';
const USER_ROLE = 3;

/** One tenant of the world, with the ids and texts the tests look for. */
export interface WorldTenant {
  tenantId: string;
  name: string;
  /** A word only this tenant's rows contain (emails, titles, messages, chunks). */
  marker: string;
  emails: string[];
  userIds: string[];
  conversationId: string;
  conversationTitle: string;
  /** The message with two answers (a regenerated reply): the branch point. */
  branchParentId: string;
  /** The two answers to it. */
  branchIds: [string, string];
  messageIds: string[];
  chunkIds: string[];
  /** Cost of the usage charged through the conversation's messages, exact. */
  conversationCost: string;
  /** Usage rows of the tenant (through messages and not). */
  usageRows: number;
}

/** The two tenants. */
export interface StudioWorld {
  a: WorldTenant;
  b: WorldTenant;
}

/** Seeds `db` and builds the two tenants (as the owner, with the package's functions under withTenant). */
export async function buildStudioWorld(db: Kysely<DB>): Promise<StudioWorld> {
  await seed(db);
  const points = clusteredPoints({ clusters: 6, seed: 7 });
  const a = await buildTenant(db, { name: 'Acme Research', slug: 'acme', marker: 'acmeonly', models: [2, 3], points, cluster: 0 });
  const b = await buildTenant(db, { name: 'Borealis Labs', slug: 'borealis', marker: 'borealisonly', models: [1, 4], points, cluster: 3 });
  // recordUsage stamps now(): spread the usage over the last days so that the spend chart has
  // several bars (as the owner: usage is append-only for every app role).
  await sql`
    update usage set created_at = now() - (((abs(hashtext(id::text)) % 6)) || ' days')::interval
    where message_id is null`.execute(db);
  return { a, b };
}

async function buildTenant(
  db: Kysely<DB>,
  spec: { name: string; slug: string; marker: string; models: [number, number]; points: ReturnType<typeof clusteredPoints>; cluster: number },
): Promise<WorldTenant> {
  const { marker } = spec;
  const tenant = await createTenant(db, { name: spec.name, slug: spec.slug });
  const tenantId = tenant.id;
  const users = await withTenant(
    db,
    tenantId,
    async (tx) => [
      await createUser(tx, { email: `ada.${marker}@example.com`, firstName: 'Ada', roleId: USER_ROLE, budget: '25.00' }),
      await createUser(tx, { email: `bob.${marker}@example.com`, firstName: 'Bob', roleId: USER_ROLE, budget: '2' }),
      await createUser(tx, { email: `cy.${marker}@example.com`, firstName: 'Cy', roleId: USER_ROLE }),
    ],
    { role: 'app_server' },
  );
  const userIds = users.map((u) => u.user.id);
  const title = `Quarterly report ${marker}`;
  const chat = await withTenant(
    db,
    tenantId,
    async (tx) => {
      const conversation = await createConversation(tx, { userId: userIds[0]!, agentId: GLOBAL_AGENT, title });
      const say = (role: 'user' | 'assistant' | 'system', text: string, parentId: string | null) =>
        appendMessage(tx, { conversationId: conversation.id, role, content: { text }, parentId });
      const system = await say('system', 'You are a careful analyst.', null);
      const ask = await say('user', `Summarize the ${marker} quarterly report in three bullet points.`, system.id);
      const first = await say('assistant', `Revenue grew 12%; costs fell; the ${marker} outlook is stable.`, ask.id);
      const regenerated = await say('assistant', `- Revenue +12%\n- Costs -3%\n- Outlook stable (${marker})`, ask.id);
      const follow = await say('user', 'Which risk matters most?', regenerated.id);
      const answer = await say('assistant', `Currency exposure, for ${marker}.`, follow.id);
      // A second conversation without branches, so the list has more than one.
      const other = await createConversation(tx, { userId: userIds[1]!, agentId: GLOBAL_AGENT, title: `Travel plans ${marker}` });
      await appendMessage(tx, { conversationId: other.id, role: 'user', content: { text: `Book a train for ${marker}.` } });
      return { conversation, ids: [system.id, ask.id, first.id, regenerated.id, follow.id, answer.id], ask, first, regenerated, answer };
    },
    { role: 'app_cms' },
  );
  const [modelA, modelB] = spec.models;
  const { charged, usageRows } = await withTenant(
    db,
    tenantId,
    async (tx) => {
      const costs: string[] = [];
      for (const [messageId, modelId, inputTokens, outputTokens] of [
        [chat.first.id, modelA, 1200, 300],
        [chat.regenerated.id, modelB, 1250, 280],
        [chat.answer.id, modelA, 1800, 120],
      ] as const) {
        const row = await recordUsage(tx, { userId: userIds[0]!, modelId, type: 'chat', inputTokens, outputTokens, messageId });
        costs.push(row.cost);
      }
      let rows = 3;
      for (let i = 0; i < 18; i += 1) {
        await recordUsage(tx, { userId: userIds[i % 3]!, modelId: i % 2 === 0 ? modelA : modelB, type: 'chat', inputTokens: 400 + 50 * i, outputTokens: 90 + 10 * i });
        rows += 1;
      }
      return { charged: costs, usageRows: rows };
    },
    { role: 'app_gateway' },
  );
  const chunkIds = await withTenant(
    db,
    tenantId,
    async (tx) => {
      const resource = await createResource(tx, { name: `Handbook ${marker}`, type: 'text' });
      const topics = ['budget planning', 'invoice approval', 'travel policy', 'security training'];
      const chunks = Array.from({ length: 12 }, (_, i) => ({
        content: `${marker} handbook section ${i + 1}: ${topics[i % topics.length]} for the team.`,
        embedding: spec.points.point(spec.cluster + (i % 3)),
      }));
      await addChunks(tx, { resourceId: resource.id, chunks });
      const { rows } = await sql<{ id: string }>`select id from vectors where resource_id = ${resource.id} order by position`.execute(tx);
      return rows.map((r) => r.id);
    },
    { role: 'app_cms' },
  );
  return {
    tenantId,
    name: spec.name,
    marker,
    emails: users.map((u) => u.user.email),
    userIds,
    conversationId: chat.conversation.id,
    conversationTitle: title,
    branchParentId: chat.ask.id,
    branchIds: [chat.first.id, chat.regenerated.id],
    messageIds: chat.ids,
    chunkIds,
    conversationCost: sumCosts(charged),
    usageRows,
  };
}

/** Exact sum of decimal texts with at most 12 decimals (the test's own arithmetic, not the studio's). */
function sumCosts(costs: string[]): string {
  const units = costs.reduce((n, c) => {
    const [whole, fraction = ''] = c.split('.');
    return n + BigInt(whole! + fraction.padEnd(12, '0'));
  }, 0n);
  const text = units.toString().padStart(13, '0');
  const fraction = text.slice(-12).replace(/0+$/, '');
  return `${text.slice(0, -12)}${fraction === '' ? '' : `.${fraction}`}`;
}
