import { sql, type Kysely, type RawBuilder } from 'kysely';

/**
 * Runs `statement` in a savepoint inside the caller's transaction: its rows, or `SQLSTATE: message`
 * when it fails (rolled back to the savepoint, so the transaction goes on). The attacks of the
 * security tests run one after another in one transaction this way.
 */
export async function attempt<R>(tx: Kysely<any>, statement: string | RawBuilder<R>): Promise<R[] | string> {
  await sql`savepoint attempt`.execute(tx);
  try {
    const { rows } = await (typeof statement === 'string' ? sql.raw<R>(statement) : statement).execute(tx);
    await sql`release savepoint attempt`.execute(tx);
    return rows;
  } catch (error) {
    await sql`rollback to savepoint attempt`.execute(tx);
    return `${(error as { code?: string }).code}: ${(error as Error).message}`;
  }
}
