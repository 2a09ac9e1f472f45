/**
 * The tenant wall against SQL run inside it. The threat: a bug in a service (a raw `sql` fragment
 * built from input, a library running its own SQL) hands an attacker arbitrary SQL inside a
 * withTenant transaction, with the service's credentials. On the server every attack runs as a
 * login role made exactly as the README says (`create role … login password … noinherit in role
 * app_user`, DB_APP_ROLE=app_user: every service's rights at once) over a pool of ONE connection, so that "A then B" is the same
 * backend; never as a superuser. PGlite has no login roles (its one session is a superuser): the
 * attacks that do not need one run there too.
 */
import { CompiledQuery, sql, type Kysely } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DB } from '../../src/db/schema.generated.ts';
import { NotFoundError } from '../../src/db/errors.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { ENTER_CONTEXT_SQL } from '../../src/db/tenant-context.ts';
import { getUser } from '../../src/queries/users.ts';
import { appendMessage, listMessages } from '../../src/queries/messages.ts';
import { createConversation } from '../../src/queries/conversations.ts';
import { listModels } from '../../src/queries/models.ts';
import { insertChatWorld, type ChatWorld } from '../support/conversation-fixtures.ts';
import { attempt } from '../support/attempt.ts';
import { createLoginRole, type LoginRole } from '../support/login-role.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let w: ChatWorld;
let login: LoginRole | undefined;
/** The database the attacks go through: a cms login with one connection (server), or PGlite. */
let db: Kysely<DB>;
let bConversationId: string;
const ADVISORY_KEY = 5_123_456_789;

beforeAll(async () => {
  t = await openTestDb();
  w = await insertChatWorld(t.db);
  const convo = await withTenant(t.db, w.b.tenantId, (tx) => createConversation(tx, { userId: w.b.userId, agentId: w.globalAgentId, title: 'B secret plans' }));
  bConversationId = convo.id;
  await withTenant(t.db, w.b.tenantId, (tx) =>
    appendMessage(tx, { conversationId: bConversationId, role: 'user', content: { text: 'the launch code is 0000' } }),
  );
  if (onServer) {
    // app_user: the union of the three services' rights, the most an injection could have.
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

/** How many of tenant B's rows a transaction of tenant A sees after `attack` ran in it ('denied': the role may not read that table). */
async function bRowsSeenFromA(attack: string): Promise<Record<string, number | string>> {
  return withTenant(db, w.a.tenantId, async (tx) => {
    await attempt(tx, attack);
    const seen: Record<string, number | string> = {};
    for (const table of ['conversations', 'messages', 'users']) {
      const rows = await attempt(tx, sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)} where tenant_id = ${w.b.tenantId}`);
      seen[table] = typeof rows === 'string' ? 'denied' : rows[0]!.n;
    }
    const searched = await attempt(tx, sql<{ n: number }>`select count(*)::int as n from app.search_text(websearch_to_tsquery('english', 'launch code'), 10)`);
    seen.searched = typeof searched === 'string' ? 'denied' : searched[0]!.n;
    return seen;
  });
}

/** True when no count is above zero. */
function nothingSeen(seen: Record<string, number | string>): boolean {
  return Object.values(seen).every((v) => v === 0 || v === 'denied');
}

describe('the tenant cannot be switched from inside a withTenant transaction', () => {
  it("sanity: B's rows exist, and B sees them", async () => {
    const seen = await withTenant(db, w.b.tenantId, (tx) => listMessages(tx, { conversationId: bConversationId }));
    expect(seen.items.map((m) => m.content)).toEqual([{ text: 'the launch code is 0000' }]);
  });

  it.each([
    ["set_config('app.tenant_id', B, true)", (b: string) => `select set_config('app.tenant_id', '${b}', true)`],
    ["set_config('app.tenant_id', B, false)", (b: string) => `select set_config('app.tenant_id', '${b}', false)`],
    ['set local app.tenant_id = B', (b: string) => `set local app.tenant_id = '${b}'`],
    ['reset role', () => 'reset role'],
    ['set role app_user', () => 'set role app_user'],
    ['set role app_gateway', () => 'set role app_gateway'],
    ['a forged enter_tenant_context', (b: string) => `select app.enter_tenant_context('${b}', 9223372036854775807, repeat('0', 64))`],
    ['a second key for the connection', () => `select app.open_tenant_context(decode(repeat('00', 64), 'hex'), decode(repeat('00', 64), 'hex'))`],
  ])('%s: no row of B is visible, and search finds none', async (name, attack) => {
    // `reset role` on PGlite returns to its superuser session: that is why the wall needs a login role.
    if (!onServer && name.includes(' role')) return;
    const seen = await bRowsSeenFromA(attack(w.b.tenantId));
    expect(nothingSeen(seen), JSON.stringify(seen)).toBe(true);
    // The attack changed nothing for A: its own rows are still there.
    expect(await withTenant(db, w.a.tenantId, (tx) => sql<{ n: number }>`select count(*)::int as n from users`.execute(tx)).then((r) => r.rows[0]!.n)).toBe(2);
  });

  it("cannot write into B's tenant either", async () => {
    const code = await withTenant(db, w.a.tenantId, async (tx) => {
      await sql`select set_config('app.tenant_id', ${w.b.tenantId}, true)`.execute(tx);
      await sql`insert into conversations (tenant_id, user_id, title) values (${w.b.tenantId}, ${w.b.userId}, 'planted')`.execute(tx);
      return 'ok';
    }).catch((error: { code?: string }) => error.code);
    expect(code).toBe('42501'); // new row violates row-level security policy
  });

  it.runIf(onServer)("withTenant's own first statement, sent again inside A for B, is refused and the connection discarded", async () => {
    const one = login!.open(1);
    try {
      const outcome = await withTenant(one, w.a.tenantId, (tx) =>
        tx.executeQuery(CompiledQuery.raw(ENTER_CONTEXT_SQL, [w.b.tenantId, null, null, 'app_user'])).then(
          () => 'entered B',
          (error: Error) => error.name,
        ),
      );
      expect(outcome).toBe('ConnectionTamperedError');
      // The pool of one opened a new connection for the next transaction, which is A's as asked.
      const backends = await withTenant(one, w.a.tenantId, (tx) =>
        sql<{ n: number }>`select count(*)::int as n from users where tenant_id = ${w.b.tenantId}`.execute(tx));
      expect(backends.rows[0]!.n).toBe(0);
    } finally {
      await one.destroy();
    }
  });

  it.runIf(onServer)('a signature seen for B cannot be replayed on the same connection', async () => {
    // Capture what withTenant(B) sent, as an attacker reading it somewhere would have it. A fresh
    // pool of one: its connection is opened while the capture is in place.
    const seen: unknown[][] = [];
    const query = pg.Client.prototype.query;
    pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
      // Sent with BEGIN in one simple-protocol text (its values written in), or alone with bound values.
      const text = args[0];
      const inText = typeof text === 'string' ? /enter_tenant_context\('([0-9a-f-]+)'::uuid, (\d+)::bigint, '([0-9a-f]+)'\)/.exec(text) : null;
      if (inText !== null) seen.push(inText.slice(1));
      else if (typeof text === 'string' && text.includes('app.enter_tenant_context') && Array.isArray(args[1])) seen.push(args[1]);
      return (query as (...a: unknown[]) => unknown).apply(this, args);
    } as typeof query;
    const one = login!.open(1);
    try {
      await withTenant(one, w.b.tenantId, async () => {});
    } finally {
      pg.Client.prototype.query = query;
    }
    const [tenant, counter, signature] = seen.at(-1) as [string, string, string];
    expect(tenant).toBe(w.b.tenantId);
    const outcome = await withTenant(one, w.a.tenantId, (tx) =>
      attempt(tx, sql`select app.enter_tenant_context(${tenant}::uuid, ${counter}::bigint, ${signature})`));
    expect(outcome).toMatch(/^42501: tenant context refused: counter \d+ was used already/);
    // And B's rows stay B's: A, right after the refused replay, sees none.
    expect(await withTenant(one, w.a.tenantId, (tx) => sql<{ n: number }>`select count(*)::int as n from users where tenant_id = ${w.b.tenantId}`.execute(tx)).then((r) => r.rows[0]!.n)).toBe(0);
  });
});

describe('nothing crosses a pooled connection (one connection: A, then B)', () => {
  it('a temp table and view named like ours, made by A, do not take over B', async () => {
    await withTenant(db, w.a.tenantId, async (tx) => {
      await sql.raw('create temp table messages (like public.messages)').execute(tx);
      await sql.raw('create temp view conversations as select * from public.conversations where false').execute(tx);
    });
    await withTenant(db, w.b.tenantId, (tx) =>
      appendMessage(tx, { conversationId: bConversationId, role: 'user', content: { text: 'after A' } }),
    );
    const stored = await sql<{ n: number }>`select count(*)::int as n from public.messages where tenant_id = ${w.b.tenantId}`.execute(t.db);
    expect(stored.rows[0]!.n).toBe(2);
    const seen = await withTenant(db, w.b.tenantId, (tx) => listMessages(tx, { conversationId: bConversationId }));
    expect(seen.items).toHaveLength(2);
    const temp = await withTenant(db, w.b.tenantId, (tx) =>
      sql<{ n: number }>`select count(*)::int as n from pg_class where relpersistence = 't'`.execute(tx));
    expect(temp.rows[0]!.n).toBe(0);
  });

  it("session settings A makes do not reach B's transaction", async () => {
    const before = await withTenant(db, w.b.tenantId, (tx) =>
      sql<{ st: string; wm: string }>`select current_setting('statement_timeout') as st, current_setting('work_mem') as wm`.execute(tx));
    await withTenant(db, w.a.tenantId, async (tx) => {
      for (const statement of ['set statement_timeout = 0', "set work_mem = '1GB'", "set app.channel = 'from A'", 'set search_path = pg_temp, public']) {
        await sql.raw(statement).execute(tx);
      }
    });
    const after = await withTenant(db, w.b.tenantId, (tx) =>
      sql<{ st: string; wm: string; channel: string | null; path: string }>`
        select current_setting('statement_timeout') as st, current_setting('work_mem') as wm,
               nullif(current_setting('app.channel', true), '') as channel, current_setting('search_path') as path`.execute(tx));
    expect(after.rows[0]).toEqual({ ...before.rows[0], channel: null, path: 'public, pg_temp' });
  });

  it('a session advisory lock taken by A is released when its transaction ends', async () => {
    await withTenant(db, w.a.tenantId, async (tx) => {
      // (A key of its own: the migrator's would be taken by other test files' migrations too.)
      await sql`select pg_advisory_lock(${ADVISORY_KEY}::bigint)`.execute(tx);
    });
    const held = await sql<{ n: number }>`
      select count(*)::int as n from pg_locks
      where locktype = 'advisory' and objid = ${ADVISORY_KEY % 2 ** 32}
        and database = (select oid from pg_database where datname = current_database())`.execute(t.db);
    expect(held.rows[0]!.n).toBe(0);
  });

  it.runIf(onServer)('SQL run after A commits on its own does not reach the next caller', async () => {
    await withTenant(db, w.a.tenantId, async (tx) => {
      await sql.raw(`commit; set search_path = pg_temp, public; create temp table models (id int, name text)`).execute(tx);
    }).catch(() => {});
    const models = await listModels(db);
    expect(models.map((m) => m.id)).toContain(w.modelId);
  });

  it.runIf(onServer)("a temp table made outside withTenant is gone after the next tenant transaction, even one of the package's own statements", async () => {
    // The guard ends a transaction of the package's own statements with COMMIT alone, but only
    // when nothing else ran on the connection since its last cleanup: here something did.
    await withTenant(db, w.b.tenantId, (tx) => getUser(tx, { userId: w.b.userId }));
    await sql.raw('create temp table users (id uuid, email text)').execute(db);
    const user = await withTenant(db, w.b.tenantId, (tx) => getUser(tx, { userId: w.b.userId }));
    expect(user.email).toMatch(/@example\.com$/);
    const temp = await withTenant(db, w.b.tenantId, (tx) =>
      sql<{ n: number }>`select count(*)::int as n from pg_class where relpersistence = 't'`.execute(tx));
    expect(temp.rows[0]!.n).toBe(0);
  });

  it.runIf(onServer)("a transaction of only the package's own statements ends with COMMIT alone; any other statement brings the cleanup back", async () => {
    // What reaches the driver, on a pool of one opened while it is watched.
    const sent: string[] = [];
    const query = pg.Client.prototype.query;
    pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
      const a = args[0] as string | { text?: string };
      sent.push(typeof a === 'string' ? a : (a.text ?? ''));
      return (query as (...a: unknown[]) => unknown).apply(this, args);
    } as typeof query;
    const one = login!.open(1);
    const ends = async (fn: () => Promise<unknown>) => {
      sent.length = 0;
      await fn();
      const last = sent.at(-1)!;
      return last === 'commit' ? 'commit alone' : last.startsWith('commit; close all;') ? 'commit and cleanup' : last;
    };
    try {
      const lookup = () => withTenant(one, w.b.tenantId, (tx) => getUser(tx, { userId: w.b.userId }));
      expect(await ends(lookup)).toBe('commit and cleanup'); // the connection's first
      expect(await ends(lookup)).toBe('commit alone');
      expect(await ends(() => withTenant(one, w.b.tenantId, (tx) => sql`select 1`.execute(tx)))).toBe('commit and cleanup');
      expect(await ends(lookup)).toBe('commit alone');
      await sql`select 1`.execute(one); // outside withTenant
      expect(await ends(lookup)).toBe('commit and cleanup');
      expect(await ends(lookup)).toBe('commit alone');
    } finally {
      pg.Client.prototype.query = query;
      await one.destroy();
    }
  });

  it.runIf(onServer)('`deallocate all` by A: the connection is discarded, and B works', async () => {
    const pidOf = (k: Kysely<DB>, tenantId: string) =>
      withTenant(k, tenantId, (tx) => sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(tx)).then((r) => r.rows[0]!.pid);
    await withTenant(db, w.b.tenantId, (tx) => getUser(tx, { userId: w.b.userId }));
    const before = await pidOf(db, w.a.tenantId);
    await withTenant(db, w.a.tenantId, async (tx) => {
      await sql.raw('deallocate all').execute(tx);
    });
    const user = await withTenant(db, w.b.tenantId, (tx) => getUser(tx, { userId: w.b.userId }));
    expect(user.id).toBe(w.b.userId);
    expect(await pidOf(db, w.b.tenantId)).not.toBe(before);
  });

  it.runIf(onServer)("a statement re-prepared under the package's own name by A does not answer B", async () => {
    await withTenant(db, w.b.tenantId, (tx) => getUser(tx, { userId: w.b.userId }));
    await withTenant(db, w.a.tenantId, async (tx) => {
      const { rows } = await sql<{ name: string; parameter_types: string[] }>`
        select name, parameter_types::text[] from pg_prepared_statements where statement like '%from "users"%' limit 1`.execute(tx);
      const { name } = rows[0]!;
      await sql.raw(`deallocate ${name}; prepare ${name}(uuid, uuid) as
        select $2 as id, 'forged@evil.test' as email, null::text as first_name, null::text as last_name, 'active' as status,
               1 as role_id, '1000000'::numeric as budget, '1000000'::numeric as remaining, now() as created_at, now() as updated_at`).execute(tx);
    });
    const user = await withTenant(db, w.b.tenantId, (tx) => getUser(tx, { userId: w.b.userId }));
    expect(user.email).not.toBe('forged@evil.test');
    expect(user.email).toMatch(/@example\.com$/);
  });
});

describe('withTenant', () => {
  it('refuses a well-formed tenant id that does not exist, before fn runs', async () => {
    let ran = false;
    await expect(
      withTenant(db, '00000000-0000-4000-8000-000000000000', async () => {
        ran = true;
      }),
    ).rejects.toThrow(NotFoundError);
    expect(ran).toBe(false);
  });
});

describe('money and rank change only through the paths made for them (as every app role at once: app_user)', () => {
  it.each([
    ['raise its own budget', (a: ChatWorld['a']) => `update users set budget = 1000000 where id = '${a.userId}'`],
    ['raise its own remaining', (a: ChatWorld['a']) => `update users set remaining = coalesce(remaining, 0) + 1000 where id = '${a.userId}'`],
    ['remove its limit (remaining to NULL)', (a: ChatWorld['a']) => `update users set remaining = null where id = '${a.userId}'`],
    ['make itself an admin', (a: ChatWorld['a']) => `update users set role_id = 1 where id = '${a.userId}'`],
    ['re-enable a disabled user', (a: ChatWorld['a']) => `update users set status = 'active' where id = '${a.userId}'`],
    ['swap in a key it knows', (a: ChatWorld['a']) => `update users set api_key_hash = repeat('a', 64) where id = '${a.userId}'`],
    ['change its plan', () => `update tenants set plan = 'enterprise'`],
    ['rewrite its usage', () => `update usage set cost = 0`],
    ['delete its usage', () => `delete from usage`],
    ['truncate usage', () => `truncate usage`],
  ])('cannot %s', async (_, statement) => {
    await sql`update users set budget = 10, remaining = 5 where id = ${w.a.userId}`.execute(t.db);
    const outcome = await withTenant(db, w.a.tenantId, (tx) => attempt(tx, statement(w.a)));
    expect(outcome).toMatch(/^42501: /);
  });

  it('can lower remaining, as a charge does', async () => {
    await sql`update users set budget = 10, remaining = 5 where id = ${w.a.userId}`.execute(t.db);
    const outcome = await withTenant(db, w.a.tenantId, (tx) => attempt(tx, `update users set remaining = remaining - 1 where id = '${w.a.userId}'`));
    expect(outcome).toEqual([]);
  });
});

describe.runIf(onServer)("the login role's own defaults do not reach what the package relies on", () => {
  it('ALTER ROLE … SET default_transaction_read_only / search_path / role on the login changes nothing for the next connection', async () => {
    // As the login role itself (SET ROLE back to it), which PostgreSQL lets alter its own defaults.
    await withTenant(db, w.a.tenantId, async (tx) => {
      expect(await attempt(tx, `set role ${login!.name}`)).toEqual([]);
      for (const setting of ['default_transaction_read_only = on', 'search_path = pg_temp, public', 'statement_timeout = 1']) {
        expect(await attempt(tx, `alter role ${login!.name} set ${setting}`)).toEqual([]);
      }
    });
    const fresh = login!.open(1);
    const convo = await withTenant(fresh, w.a.tenantId, (tx) => createConversation(tx, { userId: w.a.userId, agentId: w.a.agentId, title: 'still writable' }));
    expect(convo.title).toBe('still writable');
    const settings = await withTenant(fresh, w.a.tenantId, (tx) =>
      sql<{ ro: string; path: string; st: string }>`select current_setting('default_transaction_read_only') as ro,
        current_setting('search_path') as path, current_setting('statement_timeout') as st`.execute(tx));
    expect(settings.rows[0]).toMatchObject({ ro: 'off', path: 'public, pg_temp' });
    expect(settings.rows[0]!.st).not.toBe('1ms');
  });
});
