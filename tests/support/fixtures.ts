import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { DB } from '../../src/db/schema.generated.ts';

/** Inserts as the owner (RLS does not bind a superuser): a role, a provider and a model. */
export async function insertCatalog(db: Kysely<DB>): Promise<{ roleId: number; modelId: number }> {
  const role = await db.insertInto('roles').values({ name: `role-${randomUUID()}` }).returning('id').executeTakeFirstOrThrow();
  const provider = await db.insertInto('providers').values({ name: `provider-${randomUUID()}` }).returning('id').executeTakeFirstOrThrow();
  const model = await db
    .insertInto('models')
    .values({ providerId: provider.id, name: 'Test model', internalName: `model-${randomUUID()}`, type: 'chat', cost1kInput: '0.003', cost1kOutput: '0.015' })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { roleId: role.id, modelId: model.id };
}

/** Inserts (as the owner) a tenant with one user, and returns their ids. */
export async function insertTenant(db: Kysely<DB>, roleId: number, slug = `t-${randomUUID().slice(0, 8)}`) {
  const tenant = await db.insertInto('tenants').values({ name: slug, slug }).returning('id').executeTakeFirstOrThrow();
  const user = await db
    .insertInto('users')
    .values({ tenantId: tenant.id, email: `${slug}@example.com`, roleId })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { tenantId: tenant.id, userId: user.id };
}

/** Names of the tables of the public schema, except the migrator's ledger. */
export async function publicTables(db: Kysely<any>): Promise<string[]> {
  const { rows } = await sql<{ relname: string }>`
    select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public' and c.relkind in ('r', 'p') and c.relname <> 'schema_migrations'
    order by 1`.execute(db);
  return rows.map((r) => r.relname);
}
