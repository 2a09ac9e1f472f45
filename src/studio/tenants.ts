/** The tenant picker's data, read as the owner. */
import { sql, type Kysely } from 'kysely';

/** Most tenants listed at once (the picker narrows by name or slug beyond that). */
export const MAX_TENANTS_LISTED = 200;

/** A tenant in the picker. */
export interface TenantSummary {
  id: string;
  name: string;
  slug: string;
  plan: string;
  users: number;
}

/** Tenants by name, optionally those whose name or slug contains `search` (case-insensitive). */
export async function listTenants(db: Kysely<any>, search = ''): Promise<{ tenants: TenantSummary[]; more: boolean }> {
  const pattern = `%${search.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
  const { rows } = await sql<{ id: string; name: string; slug: string; plan: string; users: number }>`
    select t.id, t.name, t.slug, t.plan,
           (select count(*)::int from users u where u.tenant_id = t.id) as users
    from tenants t
    where ${search === '' ? sql`true` : sql`(t.name ilike ${pattern} or t.slug ilike ${pattern})`}
    order by t.name, t.id
    limit ${MAX_TENANTS_LISTED + 1}`.execute(db.withoutPlugins());
  return { tenants: rows.slice(0, MAX_TENANTS_LISTED), more: rows.length > MAX_TENANTS_LISTED };
}

/** One tenant's name, as the owner sees it (for the page titles of the tenant pages). */
export async function findTenantName(db: Kysely<any>, tenantId: string): Promise<string | undefined> {
  const { rows } = await sql<{ name: string }>`select name from tenants where id = ${tenantId}::uuid`.execute(db.withoutPlugins());
  return rows[0]?.name;
}
