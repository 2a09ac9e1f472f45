import { sql, type Kysely } from 'kysely';
import { LEDGER_TABLE } from './migrator.ts';

/** One table of the public schema as {@link databaseStatus} reports it. */
export interface TableStatus {
  name: string;
  rows: number;
  rlsEnabled: boolean;
  rlsForced: boolean;
}

/** Tables with exact row counts and their row-level security flags. Run as the owner: counts see every tenant. */
export async function tableStatus(db: Kysely<any>): Promise<TableStatus[]> {
  const conn = db.withoutPlugins();
  const { rows: tables } = await sql<{ name: string; rls_enabled: boolean; rls_forced: boolean }>`
    select c.relname as name, c.relrowsecurity as rls_enabled, c.relforcerowsecurity as rls_forced
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public' and c.relkind in ('r', 'p') and c.relname <> ${LEDGER_TABLE}
    order by c.relname`.execute(conn);
  if (tables.length === 0) return [];
  const counts = sql.join(
    tables.map((t) => sql`select ${t.name}::text as name, count(*)::int as rows from ${sql.table(t.name)}`),
    sql` union all `,
  );
  const { rows } = await sql<{ name: string; rows: number }>`${counts}`.execute(conn);
  const byName = new Map(rows.map((r) => [r.name, r.rows]));
  return tables.map((t) => ({ name: t.name, rows: byName.get(t.name) ?? 0, rlsEnabled: t.rls_enabled, rlsForced: t.rls_forced }));
}
