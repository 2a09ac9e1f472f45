import { randomUUID } from 'node:crypto';
import type { Insertable, Kysely } from 'kysely';
import type { DB, Usage } from '../../src/db/schema.generated.ts';

/** Per-1k-token prices of a test model, as exact decimal text. */
export interface Prices {
  input?: string;
  output?: string;
  cacheRead?: string;
  cacheWrite?: string;
}

/** Inserts (as the owner) a provider and a chat model with these prices; returns the model id. */
export async function insertModel(db: Kysely<DB>, prices: Prices): Promise<number> {
  const provider = await db.insertInto('providers').values({ name: `provider-${randomUUID()}` }).returning('id').executeTakeFirstOrThrow();
  const model = await db
    .insertInto('models')
    .values({
      providerId: provider.id,
      name: 'Priced model',
      internalName: `model-${randomUUID()}`,
      type: 'chat',
      cost1kInput: prices.input ?? '0',
      cost1kOutput: prices.output ?? '0',
      cost1kCacheRead: prices.cacheRead ?? '0',
      cost1kCacheWrite: prices.cacheWrite ?? '0',
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return model.id;
}

/** Inserts (as the owner) a user of `tenantId` whose remaining budget is `budget` (null: unlimited). */
export async function insertUser(db: Kysely<DB>, tenantId: string, roleId: number, budget: string | null): Promise<string> {
  const user = await db
    .insertInto('users')
    .values({ tenantId, email: `u-${randomUUID()}@example.com`, roleId, budget, remaining: budget })
    .returning('id')
    .executeTakeFirstOrThrow();
  return user.id;
}

/** Inserts (as the owner) usage rows as they are, explicit created_at and cost included. */
export async function insertUsageRows(db: Kysely<DB>, rows: Insertable<Usage>[]): Promise<void> {
  await db.insertInto('usage').values(rows).execute();
}

/** The user's remaining budget as the owner sees it, trailing zeros kept. */
export async function remainingOf(db: Kysely<DB>, userId: string): Promise<string | null> {
  const row = await db.selectFrom('users').select('remaining').where('id', '=', userId).executeTakeFirstOrThrow();
  return row.remaining;
}

/** Usage rows of a user, as the owner sees them, oldest first. */
export async function usageOf(db: Kysely<DB>, userId: string) {
  return db
    .selectFrom('usage')
    .select(['id', 'cost', 'idempotencyKey', 'inputTokens', 'outputTokens'])
    .where('userId', '=', userId)
    .orderBy('createdAt')
    .orderBy('id')
    .execute();
}
