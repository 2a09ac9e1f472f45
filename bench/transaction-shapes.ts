/**
 * What a tenant transaction's shape costs, client and server, one lookup (getUser's statement) per
 * transaction, each variant on a connection of its own, interleaved round by round:
 *
 *   unsigned       before the tenant wall: begin, set_config('app.tenant_id') (named), the lookup,
 *                  commit, as the owner (no row-level security: a floor under the old cost)
 *   signed+cleanup begin with the signed context, the lookup under row-level security, commit with
 *                  the cleanup and its check of the prepared statements (what the guard sends after
 *                  any statement that is not the package's own)
 *   signed         the same, commit alone (what the guard sends after only the package's statements)
 *   package        withTenant(getUser) on a pool of one connection
 *   package, no I/O  the same over a stand-in pool that answers at once: the package's own code
 *
 * Server CPU is read from /proc for each variant's backend (the server must run on this machine).
 * Runs on the server of DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) in a
 * database of its own, created, migrated and dropped here.
 *
 * `--hold`: a transaction with a transaction id stays open in the server's other database (the
 * one of DATABASE_URL) while the shapes run, as a long report or a dump would. Until migration
 * 0024 every tenant transaction rewrote its connection's row of app.tenant_contexts; while the old
 * transaction held the horizon back, the row's old versions could not be pruned, and each look-up
 * of the tenant context walked them (174 pages after 6,000 transactions). Now entering writes no
 * row; the size of app.tenant_contexts is printed at the end to show it.
 *
 *   node bench/transaction-shapes.ts [ROUNDS] [--hold]
 */
import { readFileSync } from 'node:fs';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { SnakeCamelPlugin } from '../src/db/camel-case.ts';
import { postgresConfig } from '../src/db/config.ts';
import { createDb } from '../src/db/create-db.ts';
import { guardClient, releaseOf } from '../src/db/guard-pg-client.ts';
import { nameStatements } from '../src/db/prepared-statements.ts';
import { beginAndEnterSql, CLEANUP_SQL, ConnectionContext, ENTER_CONTEXT_SQL, OPEN_CONTEXT_SQL } from '../src/db/tenant-context.ts';
import { withTenant } from '../src/db/tenant.ts';
import { VectorPlugin } from '../src/db/vector.ts';
import { getUser } from '../src/queries/users.ts';
import { captureStatements } from './capture.ts';
import { openScratchDatabase } from './scratch-db.ts';

const hold = process.argv.includes('--hold');
const rounds = Number(process.argv.slice(2).find((a) => !a.startsWith('--')) ?? 8);
const PER_ROUND = 500;

const scratch = await openScratchDatabase('shapes');
const { adminUrl, url, tenantId, userId } = scratch;
const closers: (() => Promise<unknown>)[] = [];
try {

  const db = createDb(postgresConfig({ connectionString: url, poolMax: 1 }));
  closers.push(() => db.destroy());
  const lookup = (tx: Parameters<typeof getUser>[0]) => getUser(tx, { userId });
  const [statement] = await captureStatements(db, tenantId, lookup);
  const { sql: text, parameters } = statement!;

  /** A bare connection: its backend pid and a transaction function of the given shape. */
  const bare = async (shape: 'unsigned' | 'signed+cleanup' | 'signed') => {
    const client = new pg.Client({ connectionString: url, options: '-c search_path=public,pg_temp' });
    await client.connect();
    closers.push(() => client.end());
    const pid = (await client.query('select pg_backend_pid() as pid')).rows[0].pid as number;
    const context = new ConnectionContext();
    if (shape !== 'unsigned') {
      await client.query('begin');
      await client.query(OPEN_CONTEXT_SQL, context.openParameters());
      context.registered = true;
      await client.query(ENTER_CONTEXT_SQL, context.enterParameters(tenantId, 'app_user'));
      await client.query(`commit; ${CLEANUP_SQL}`);
    }
    const run = async () => {
      if (shape === 'unsigned') {
        await client.query('begin');
        await client.query({ name: 'context', text: `select set_config('app.tenant_id', $1, true)`, values: [tenantId] });
        await client.query({ name: 'lookup', text, values: parameters });
        await client.query('commit');
      } else {
        await client.query(beginAndEnterSql(context.enterParameters(tenantId, 'app_user')));
        await client.query({ name: 'lookup', text, values: parameters });
        await client.query(shape === 'signed' ? 'commit' : `commit; ${CLEANUP_SQL}`);
      }
    };
    return { pid, run };
  };

  const packagePid = await withTenant(db, tenantId, async (tx) => (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(tx)).rows[0]!.pid);
  const variants: { label: string; pid: number | undefined; run: () => Promise<unknown> }[] = [
    { label: 'unsigned (owner, no RLS)', ...(await bare('unsigned')) },
    { label: 'signed + cleanup', ...(await bare('signed+cleanup')) },
    { label: 'signed, commit alone', ...(await bare('signed')) },
    { label: 'package (withTenant)', pid: packagePid, run: () => withTenant(db, tenantId, lookup) },
    { label: 'package, stand-in pool (no I/O)', pid: undefined, run: standInPackage(tenantId, userId) },
  ];

  // The old transaction, elsewhere on the server (not in this database).
  const holder = new pg.Client({ connectionString: adminUrl });
  if (hold) {
    await holder.connect();
    closers.push(() => holder.end());
    await holder.query('begin');
    await holder.query('select txid_current()');
  }
  const spent = variants.map(() => ({ server: 0, client: 0, wall: 0, n: 0 }));
  for (const v of variants) for (let i = 0; i < 200; i += 1) await v.run();
  for (let round = 0; round < rounds; round += 1) {
    for (const [index, v] of variants.entries()) {
      const server = v.pid === undefined ? 0 : ticks(v.pid);
      const client = process.cpuUsage();
      const started = performance.now();
      for (let i = 0; i < PER_ROUND; i += 1) await v.run();
      const s = spent[index]!;
      s.wall += performance.now() - started;
      const used = process.cpuUsage(client);
      s.client += (used.user + used.system) / 1000;
      s.server += v.pid === undefined ? 0 : (ticks(v.pid) - server) * 10;
      s.n += PER_ROUND;
    }
  }
  if (hold) await holder.query('commit');
  const contexts = new pg.Client({ connectionString: url });
  await contexts.connect();
  const pages = (await contexts.query(`select pg_relation_size('app.tenant_contexts') / 8192 as pages`)).rows[0].pages as string;
  await contexts.end();
  console.log(`per transaction (one getUser lookup), ${rounds} rounds × ${PER_ROUND}, interleaved${hold ? ', a transaction held open in another database throughout' : ''}:`);
  console.log(`${'variant'.padEnd(34)}${'wall µs'.padStart(9)}${'client CPU µs'.padStart(15)}${'server CPU µs'.padStart(15)}`);
  for (const [index, v] of variants.entries()) {
    const s = spent[index]!;
    const server = v.pid === undefined ? '—' : ((s.server * 1000) / s.n).toFixed(0);
    console.log(`${v.label.padEnd(34)}${((s.wall * 1000) / s.n).toFixed(0).padStart(9)}${((s.client * 1000) / s.n).toFixed(0).padStart(15)}${server.padStart(15)}`);
  }
  console.log(`app.tenant_contexts: ${pages} pages of 8 kB for ${variants.length - 2} connections' rows`);
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  for (const close of closers) await close().catch(() => {});
  await scratch.drop();
}

/** utime + stime of a backend, in clock ticks (USER_HZ 100: 10 ms each). */
function ticks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/**
 * withTenant(getUser) over a pool whose one client answers every statement at once with what the
 * server would: the client CPU of the package's own code (Kysely, plugins, guard, the HMAC), no I/O.
 */
function standInPackage(tenantId: string, userId: string): () => Promise<unknown> {
  const user = { id: userId, email: 's@example.com', first_name: null, last_name: null, status: 'active', role_id: 1, budget: null, remaining: null, created_at: new Date(), updated_at: new Date() };
  const entered = { entered: '', role: 'app_user', searchPath: 'public, pg_temp' };
  const parsed: Record<string, string> = {};
  const answer = (text: string): unknown => {
    if (text.startsWith('begin; select app.enter')) return [{ command: 'BEGIN', rows: [] }, { command: 'SELECT', rows: [entered] }];
    if (text.startsWith('select rolsuper')) return { command: 'SELECT', rows: [{ rolsuper: false, rolbypassrls: false }] };
    if (text.startsWith('select app.')) return { command: 'SELECT', rows: [entered] };
    if (text === 'begin' || text === 'commit' || text === 'rollback') return { command: text.toUpperCase(), rows: [] };
    if (text.startsWith('commit; ')) {
      return [{ command: 'COMMIT', rows: [] }, ...Array.from({ length: 5 }, () => ({ rows: [] })), { rows: [{ unlocked: true, fromSql: 0, named: Object.keys(parsed).length }] }];
    }
    return { command: 'SELECT', rowCount: 1, rows: [user] };
  };
  const client = {
    connection: { parsedStatements: parsed },
    query(query: string | { name?: string; text: string }) {
      const text = typeof query === 'string' ? query : query.text;
      if (typeof query !== 'string' && query.name !== undefined) parsed[query.name] = text;
      return Promise.resolve(answer(text));
    },
    release() {},
    on() {},
  } as unknown as pg.PoolClient;
  guardClient(client, nameStatements);
  const pool = {
    options: {},
    Client: class {},
    connect: async () => {
      client.release = releaseOf(Object.assign(client, { release() {} }));
      return client;
    },
    end: async () => {},
  };
  const db = new Kysely<any>({ dialect: new PostgresDialect({ pool: pool as never }), plugins: [new SnakeCamelPlugin(), new VectorPlugin({ binary: true })] });
  return () => withTenant(db, tenantId, (tx) => getUser(tx, { userId }));
}
