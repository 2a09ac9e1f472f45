/**
 * The exact SQL a package function sends: a plugin, added last, sees each query after the
 * package's own plugins, and the executor compiles it to the text and parameters the driver
 * gets. The baselines replay that text through a bare driver connection.
 */
import type { CompiledQuery, Kysely } from 'kysely';
import type { TenantTx } from '../src/db/tenant-tx.ts';
import type { DB } from '../src/db/schema.generated.ts';
import { withTenant } from '../src/db/tenant.ts';
import { QueryRecorder } from '../tests/support/query-recorder.ts';

/** A statement as sent: its text and parameters. */
export interface Statement {
  sql: string;
  parameters: unknown[];
}

/**
 * Runs `fn` under withTenant once and returns every statement `fn` sent. withTenant's own set-up
 * (the signed tenant context) is sent with `executeQuery` past the plugins, and `begin`/`commit`
 * are not statements of Kysely's: none of them is listed (tenantTransaction makes its own).
 */
export async function captureStatements(db: Kysely<DB>, tenantId: string, fn: (tx: TenantTx) => Promise<unknown>): Promise<Statement[]> {
  const capture = new QueryRecorder();
  const spy = db.withPlugin(capture);
  await withTenant(spy, tenantId, fn);
  return capture.queries
    .map((q) => spy.getExecutor().compileQuery(q.node, q.queryId) as CompiledQuery)
    .filter((q) => !/^select rolsuper, rolbypassrls/.test(q.sql.trim()))
    .map((q) => ({ sql: q.sql, parameters: [...q.parameters] }));
}
