/**
 * A process using getDb(), for the graceful-shutdown test: it starts a slow query, says `ready`,
 * and prints the query's result when it completes. The test sends SIGTERM in between.
 */
import { sql } from 'kysely';
import { getDb } from '../../src/lifecycle/get-db.ts';

const db = await getDb();
const inFlight = sql<{ done: string }>`select pg_sleep(0.5)::text || 'slept' as done`.execute(db);
console.log('ready');
const { rows } = await inFlight;
console.log(`in-flight call finished: ${rows[0]!.done}`);
// Keep the process alive as a service would; only the signal ends it.
setInterval(() => {}, 1_000);
