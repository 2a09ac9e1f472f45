import type pg from 'pg';
import { ConnectionError } from './errors.ts';

/**
 * Makes every failure of `pool.connect()` a {@link ConnectionError} naming `target` (host, port,
 * database, role), with the driver's error as `cause` and its `code` kept. node-postgres's own
 * errors do not say where they tried ("Connection terminated due to connection timeout").
 * pg-pool's query() goes through connect(callback), Kysely through connect(): both are covered.
 */
export function nameConnectErrors(pool: pg.Pool, target: string): void {
  const connect = pool.connect.bind(pool) as (callback?: ConnectCallback) => Promise<pg.PoolClient> | undefined;
  const wrap = (error: Error) => (error instanceof ConnectionError ? error : new ConnectionError(target, error));
  pool.connect = ((callback?: ConnectCallback) => {
    if (typeof callback === 'function') {
      return connect((error, client, release) => callback(error ? wrap(error) : error, client, release));
    }
    return connect()!.catch((error: Error) => {
      throw wrap(error);
    });
  }) as typeof pool.connect;
}

type ConnectCallback = (error: Error | undefined, client: pg.PoolClient | undefined, release: (release?: unknown) => void) => void;
