import { sql, type Kysely } from 'kysely';

/** What {@link checkHealth} found. */
export type Health =
  | { ok: true; latencyMs: number; serverVersion: string; pgvector: string | null }
  | { ok: false; latencyMs: number; error: string };

/** One round trip to the database: is it reachable, which PostgreSQL, which pgvector. Never throws. */
export async function checkHealth(db: Kysely<any>): Promise<Health> {
  const started = performance.now();
  try {
    const { rows } = await sql<{ server_version: string; pgvector: string | null }>`
      select current_setting('server_version') as server_version,
             (select extversion from pg_extension where extname = 'vector') as pgvector`.execute(db.withoutPlugins());
    const row = rows[0]!;
    return { ok: true, latencyMs: performance.now() - started, serverVersion: row.server_version, pgvector: row.pgvector };
  } catch (error) {
    return { ok: false, latencyMs: performance.now() - started, error: error instanceof Error ? error.message : String(error) };
  }
}
