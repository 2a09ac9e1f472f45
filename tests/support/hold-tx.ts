import { sql, type Kysely } from 'kysely';
import type { DB } from '../../src/db/schema.generated.ts';
import type { TenantTx } from '../../src/db/tenant-tx.ts';
import { withTenant } from '../../src/db/tenant.ts';

/** A transaction of its own, held open after `work` until released (commit or rollback). */
export function holdTx<T>(db: Kysely<DB>, tenantId: string, work: (tx: TenantTx) => Promise<T>) {
  let release!: (commit: boolean) => void;
  const gate = new Promise<boolean>((resolve) => (release = resolve));
  let started!: (pid: number) => void;
  const pid = new Promise<number>((resolve) => (started = resolve));
  let worked!: (value: T) => void;
  const didWork = new Promise<T>((resolve) => (worked = resolve));
  const done = withTenant(db, tenantId, async (tx) => {
    const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(tx);
    started(rows[0]?.pid ?? -1);
    const value = await work(tx);
    worked(value);
    if (!(await gate)) throw new RolledBack();
    return value;
  }).catch((error: unknown) => {
    if (error instanceof RolledBack) return undefined;
    throw error;
  });
  return { pid, didWork, done, commit: () => release(true), rollback: () => release(false) };
}
class RolledBack extends Error {}

/** Polls until backend `waiter` waits for a lock that backend `holder` holds. */
export async function waitUntilBlocked(db: Kysely<DB>, waiter: number, holder: number): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    const { rows } = await sql<{ blocked: boolean }>`select ${holder}::int = any(pg_blocking_pids(${waiter}::int)) as blocked`.execute(db);
    if (rows[0]?.blocked === true) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`backend ${waiter} never waited for ${holder}`);
}
