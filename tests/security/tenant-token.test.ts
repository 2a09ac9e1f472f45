/**
 * The tenant of a transaction, as PostgreSQL learns it (migration 0024): app.enter_tenant_context
 * verifies the signed request, uses up its counter in the connection's sequence and sets
 * `app.tenant_token` = '<tenant>.<mac>' for the transaction; every policy's app.current_tenant_id()
 * believes the token only if its mac verifies for this backend and this transaction. SQL inside
 * withTenant can read and write that setting: these attacks try to make it name another tenant.
 * And since nothing is written per transaction, an old snapshot held open elsewhere cannot make
 * the context grow. As a login role made as the README says (app_user: the union of the services'
 * rights) over a pool of one connection on the server; on PGlite as its one connection.
 */
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DB } from '../../src/db/schema.generated.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { appendMessage } from '../../src/queries/messages.ts';
import { createConversation } from '../../src/queries/conversations.ts';
import { insertChatWorld, type ChatWorld } from '../support/conversation-fixtures.ts';
import { attempt } from '../support/attempt.ts';
import { createLoginRole, type LoginRole } from '../support/login-role.ts';
import { onCitus, onServer, openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let w: ChatWorld;
let login: LoginRole | undefined;
/** The attacker's handle: one connection. */
let db: Kysely<DB>;

beforeAll(async () => {
  t = await openTestDb();
  w = await insertChatWorld(t.db);
  const convo = await withTenant(t.db, w.b.tenantId, (tx) =>
    createConversation(tx, { userId: w.b.userId, agentId: w.globalAgentId, title: 'B secret plans' }),
  );
  await withTenant(t.db, w.b.tenantId, (tx) => appendMessage(tx, { conversationId: convo.id, role: 'user', content: { text: 'the launch code is 0000' } }));
  if (onServer) {
    login = await createLoginRole(t, 'app_user');
    db = login.open(1);
  } else {
    db = t.db;
  }
});
afterAll(async () => {
  await login?.drop();
  await t?.close();
});

/** The token withTenant gave this transaction (SQL inside can read it: it is its own tenant's). */
async function ownToken(tx: Kysely<DB>): Promise<string> {
  const { rows } = await sql<{ token: string }>`select current_setting('app.tenant_token') as token`.execute(tx);
  return rows[0]!.token;
}

/** With `token` set as SQL inside the transaction would set it: the tenant the policies believe, and B's rows seen. */
async function seenWithToken(tx: Kysely<DB>, token: string) {
  await sql`select set_config('app.tenant_token', ${token}, true)`.execute(tx);
  const { rows } = await sql<{ current: string | null; conversations: number; messages: number; users: number }>`
    select app.current_tenant_id() as current,
           (select count(*)::int from conversations where tenant_id = ${w.b.tenantId}) as conversations,
           (select count(*)::int from messages where tenant_id = ${w.b.tenantId}) as messages,
           (select count(*)::int from users where tenant_id = ${w.b.tenantId}) as users`.execute(tx);
  return rows[0]!;
}

const nothingOfB = { current: null, conversations: 0, messages: 0, users: 0 };

// On Citus the token is 0020's (bound to the coordinator session, verified on the workers):
// tests/citus/tenant-token.test.ts.
describe.skipIf(onCitus)('the tenant token', () => {
  it('names the transaction tenant, and B itself sees its rows through it', async () => {
    const a = await withTenant(db, w.a.tenantId, async (tx) => seenWithToken(tx, await ownToken(tx)));
    expect(a).toEqual({ ...nothingOfB, current: w.a.tenantId });
    const b = await withTenant(db, w.b.tenantId, async (tx) => seenWithToken(tx, await ownToken(tx)));
    expect(b).toMatchObject({ current: w.b.tenantId, conversations: 1, messages: 1 });
    expect(b.users).toBeGreaterThan(0);
  });

  it('refuses a token whose tenant was swapped for B, keeping the mac', async () => {
    const seen = await withTenant(db, w.a.tenantId, async (tx) => {
      const mac = (await ownToken(tx)).slice(37);
      return seenWithToken(tx, `${w.b.tenantId}.${mac}`);
    });
    expect(seen).toEqual(nothingOfB);
  });

  it('refuses a token made up by SQL, and one with nothing but a tenant', async () => {
    const seen = await withTenant(db, w.a.tenantId, async (tx) => [
      await seenWithToken(tx, `${w.b.tenantId}.${'0'.repeat(64)}`),
      await seenWithToken(tx, w.b.tenantId),
      await seenWithToken(tx, `${w.b.tenantId.toUpperCase()}.${(await ownToken(tx)).slice(37)}`),
    ]);
    expect(seen).toEqual([nothingOfB, nothingOfB, nothingOfB]);
  });

  it("refuses B's valid token of an earlier transaction on the same connection", async () => {
    const earlier = await withTenant(db, w.b.tenantId, (tx) => ownToken(tx));
    const seen = await withTenant(db, w.a.tenantId, (tx) => seenWithToken(tx, earlier));
    expect(seen).toEqual(nothingOfB);
  });

  it.runIf(onServer)("refuses another session's valid token of B", async () => {
    const other = login!.open(1);
    try {
      const stolen = await withTenant(other, w.b.tenantId, async (tx) => {
        const token = await ownToken(tx);
        // While the other session's transaction is still open, so that only the backend differs.
        const seen = await withTenant(db, w.a.tenantId, (attacker) => seenWithToken(attacker, token));
        return seen;
      });
      expect(stolen).toEqual(nothingOfB);
    } finally {
      await other.destroy();
    }
  });

  it('holds whatever TimeZone or DateStyle the transaction sets (the mac binds the instant, not its text)', async () => {
    const seen = await withTenant(db, w.b.tenantId, async (tx) => {
      await sql`set local timezone = 'Pacific/Kiritimati'`.execute(tx);
      await sql`set local datestyle = 'SQL, DMY'`.execute(tx);
      await sql`set local extra_float_digits = -15`.execute(tx);
      return seenWithToken(tx, await ownToken(tx));
    });
    expect(seen).toMatchObject({ current: w.b.tenantId, conversations: 1 });
  });

  it('leaves no token behind: after the transaction a plain one has none and sees nothing', async () => {
    await withTenant(db, w.b.tenantId, (tx) => ownToken(tx));
    const { rows } = await sql<{ token: string | null; n: number }>`
      select current_setting('app.tenant_token', true) as token, (select count(*)::int from conversations) as n`.execute(db);
    expect(rows[0]!.token ?? '').toBe('');
    // PGlite's session outside withTenant is its superuser, whom row-level security does not bind.
    if (onServer) expect(rows[0]!.n).toBe(0);
  });

  it('keeps the key, the counters and the verification out of reach of the app roles', async () => {
    const tried = await withTenant(db, w.a.tenantId, async (tx) => {
      const outcomes: string[] = [];
      for (const statement of [
        'select key from app.tenant_token_keys',
        `select app.tenant_token_mac('\\x00'::bytea, 'x')`,
        `select app.check_tenant_request(gen_random_uuid(), 1, '')`,
        `select setval(c.counter_seq, 0) from app.tenant_contexts c`,
        `select nextval((select format('app_tenant_counters.%I', 'backend_' || pg_backend_pid())))`,
      ]) {
        const outcome = await attempt(tx, statement);
        outcomes.push(typeof outcome === 'string' ? outcome.split(':')[0]! : 'ran');
      }
      return outcomes;
    });
    // PGlite's session is a superuser: there only the app role of the transaction stands in between.
    expect(tried).toEqual(Array(5).fill('42501'));
  });
});

describe.skipIf(onCitus)('a tenant transaction writes nothing to enter its tenant', () => {
  it('a read-only tenant transaction gets no transaction id', async () => {
    const xid = await withTenant(db, w.a.tenantId, async (tx) => {
      await sql`select count(*) from conversations`.execute(tx);
      const { rows } = await sql<{ xid: string | null }>`select pg_current_xact_id_if_assigned()::text as xid`.execute(tx);
      return rows[0]!.xid;
    });
    expect(xid).toBeNull();
  });

  it.runIf(onServer)('a counter is used up even when its transaction rolls back', async () => {
    // Capture what withTenant(B) sent, as an attacker reading it somewhere would have it; then B's
    // transaction rolls back.
    const seen: string[][] = [];
    const query = pg.Client.prototype.query;
    pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
      const entered = typeof args[0] === 'string' ? /enter_tenant_context\('([0-9a-f-]+)'::uuid, (\d+)::bigint, '([0-9a-f]+)'\)/.exec(args[0]) : null;
      if (entered !== null) seen.push(entered.slice(1));
      // A new connection's first entry goes alone, after the key's registration, with bound values.
      else if (typeof args[0] === 'string' && args[0].includes('app.enter_tenant_context') && Array.isArray(args[1])) seen.push(args[1] as string[]);
      return (query as (...a: unknown[]) => unknown).apply(this, args);
    } as typeof query;
    const one = login!.open(1);
    try {
      const rolledBack = await withTenant(one, w.b.tenantId, async () => {
        throw new Error('rolled back on purpose');
      }).catch((error: Error) => error.message);
      pg.Client.prototype.query = query;
      expect(rolledBack).toBe('rolled back on purpose');
      const [tenant, counter, signature] = seen.at(-1)!;
      expect(tenant).toBe(w.b.tenantId);
      const attempted = await withTenant(one, w.a.tenantId, (tx) =>
        attempt(tx, sql`select app.enter_tenant_context(${tenant}::uuid, ${counter}::bigint, ${signature})`),
      );
      const outcome = typeof attempted === 'string' ? attempted.slice(attempted.indexOf(': ') + 2) : 'entered B';
      expect(outcome).toMatch(/^tenant context refused: counter \d+ was used already/);
    } finally {
      pg.Client.prototype.query = query;
      await one.destroy();
    }
  });

  it.runIf(onServer)("a connection's key and counter go once it has ended and another connection registers", async () => {
    const pidOf = async (handle: Kysely<DB>) =>
      withTenant(handle, w.a.tenantId, async (tx) => (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(tx)).rows[0]!.pid);
    const left = async (pid: number) =>
      (await sql<{ sequence: string | null; rows: number }>`
        select to_regclass(${`app_tenant_counters.backend_${pid}`})::text as sequence,
               (select count(*)::int from app.tenant_contexts where pid = ${pid}) as rows`.execute(t.db)).rows[0];
    const first = login!.open(1);
    const gone = await pidOf(first);
    expect(await left(gone)).toEqual({ sequence: `app_tenant_counters.backend_${gone}`, rows: 1 });
    await first.destroy();
    // The backend ends shortly after its client closes the connection.
    for (let i = 0; i < 200; i++) {
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity where pid = ${gone}`.execute(t.db);
      if (rows[0]!.n === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    const second = login!.open(1);
    try {
      const now = await pidOf(second);
      // (A new backend may get the ended one's pid: then what is left is its own, new registration.)
      expect(await left(gone)).toEqual(now === gone ? { sequence: `app_tenant_counters.backend_${gone}`, rows: 1 } : { sequence: null, rows: 0 });
    } finally {
      await second.destroy();
    }
  });

  it.runIf(onServer)('with a snapshot held open by another session, 300 tenant transactions leave app.tenant_contexts as it was', async () => {
    const size = async () => {
      const { rows } = await sql<{ bytes: string }>`select pg_relation_size('app.tenant_contexts')::text as bytes`.execute(t.db);
      return Number(rows[0]!.bytes);
    };
    await withTenant(db, w.a.tenantId, async () => {}); // the connection has registered its key
    const holder = new pg.Client({ connectionString: t.url });
    await holder.connect();
    try {
      await holder.query('begin isolation level repeatable read');
      await holder.query('select 1');
      const before = await size();
      for (let i = 0; i < 300; i += 1) {
        await withTenant(db, i % 2 === 0 ? w.a.tenantId : w.b.tenantId, (tx) => sql`select count(*) from users`.execute(tx));
      }
      // 0010's design rewrote the connection's row each time: ~200 bytes a version, 8 pages here.
      expect(await size()).toBe(before);
    } finally {
      await holder.query('rollback');
      await holder.end();
    }
  });
});
