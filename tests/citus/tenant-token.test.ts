/**
 * The tenant token on Citus (migration 0020): the policies run on the workers, which learn the
 * transaction's tenant from `app.tenant_token`, a SET LOCAL setting that Citus sends with the
 * transaction. SQL run inside withTenant can read and set that setting: these attacks try to make
 * the workers believe in another tenant. Every attack runs as a login role made as the README says
 * (noinherit in role app_user, the union of the services' rights) over a pool of one connection,
 * never as a superuser. Runs only on a Citus coordinator (TEST_DATABASE_URL; README "Citus").
 */
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DB } from '../../src/db/schema.generated.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { appendMessage } from '../../src/queries/messages.ts';
import { createConversation } from '../../src/queries/conversations.ts';
import { insertChatWorld, type ChatWorld } from '../support/conversation-fixtures.ts';
import { attempt } from '../support/attempt.ts';
import { createLoginRole, type LoginRole } from '../support/login-role.ts';
import { onCitus, openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let w: ChatWorld;
let login: LoginRole;
/** The attacker's handle: one connection, so every transaction is the same coordinator session. */
let db: Kysely<DB>;
/** A second session of the same login: another gpid. */
let other: Kysely<DB>;

beforeAll(async () => {
  if (!onCitus) return;
  t = await openTestDb();
  w = await insertChatWorld(t.db);
  const convo = await withTenant(t.db, w.b.tenantId, (tx) =>
    createConversation(tx, { userId: w.b.userId, agentId: w.globalAgentId, title: 'B secret plans' }),
  );
  await withTenant(t.db, w.b.tenantId, (tx) => appendMessage(tx, { conversationId: convo.id, role: 'user', content: { text: 'the launch code is 0000' } }));
  login = await createLoginRole(t, 'app_user');
  db = login.open(1);
  other = login.open(1);
});
afterAll(async () => {
  await login?.drop();
  await t?.close();
});

/** Tenant B's rows as counted on the workers (distributed tables) and the tenant the nodes believe in. */
async function seenWithToken(tx: Kysely<DB>, token: string) {
  await sql`select set_config('app.tenant_token', ${token}, true)`.execute(tx);
  await sql.raw(`set local app.tenant_token = '${token.replaceAll("'", "''")}'`).execute(tx);
  const count = async (table: string) => {
    const rows = await attempt(tx, sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)} where tenant_id = ${w.b.tenantId}`);
    return typeof rows === 'string' ? rows : rows[0]!.n;
  };
  const tenant = await attempt(tx, sql<{ id: string | null }>`select app.current_tenant_id() as id`);
  return {
    current: typeof tenant === 'string' ? tenant : tenant[0]!.id,
    conversations: await count('conversations'),
    messages: await count('messages'),
    users: await count('users'),
  };
}

const nothingOfB = { current: null, conversations: 0, messages: 0, users: 0 };

/** The token withTenant gave this transaction (SQL inside can read it: it is its own tenant's). */
async function ownToken(tx: Kysely<DB>): Promise<string> {
  const { rows } = await sql<{ token: string }>`select current_setting('app.tenant_token') as token`.execute(tx);
  return rows[0]!.token;
}

describe.runIf(onCitus)('the tenant token on Citus', () => {
  it('is set by withTenant and names the transaction tenant; tenant A sees none of B’s rows on the workers', async () => {
    const seen = await withTenant(db, w.a.tenantId, async (tx) => {
      const token = await ownToken(tx);
      expect(token.split('.')[0]).toBe(w.a.tenantId);
      return seenWithToken(tx, token);
    });
    expect(seen).toEqual({ ...nothingOfB, current: w.a.tenantId });
    // B itself sees its rows through the same path (the counts above are not zero for want of data).
    const own = await withTenant(db, w.b.tenantId, async (tx) => seenWithToken(tx, await ownToken(tx)));
    expect(own).toMatchObject({ current: w.b.tenantId, conversations: 1, messages: 1 });
    expect(own.users).toBeGreaterThan(0);
  });

  it('refuses a token whose tenant was swapped for another, keeping the mac', async () => {
    const seen = await withTenant(db, w.a.tenantId, async (tx) => {
      const [, gpid, mac] = (await ownToken(tx)).split('.');
      return seenWithToken(tx, `${w.b.tenantId}.${gpid}.${mac}`);
    });
    expect(seen).toEqual(nothingOfB);
  });

  it('refuses a token made up by SQL (any mac), and one without a mac', async () => {
    const seen = await withTenant(db, w.a.tenantId, async (tx) => {
      const [, gpid] = (await ownToken(tx)).split('.');
      return [await seenWithToken(tx, `${w.b.tenantId}.${gpid}.${'0'.repeat(64)}`), await seenWithToken(tx, `${w.b.tenantId}.${gpid}`)];
    });
    expect(seen).toEqual([nothingOfB, nothingOfB]);
  });

  it("refuses another session's valid token of tenant B (its gpid is not this session's)", async () => {
    const stolen = await withTenant(other, w.b.tenantId, (tx) => ownToken(tx));
    const seen = await withTenant(db, w.a.tenantId, (tx) => seenWithToken(tx, stolen));
    expect(seen).toEqual(nothingOfB);
  });

  it('leaves no token behind: after the transaction the session has none, and a plain transaction sees nothing', async () => {
    await withTenant(db, w.b.tenantId, (tx) => ownToken(tx));
    const { rows } = await sql<{ token: string | null; n: number }>`
      select current_setting('app.tenant_token', true) as token,
             (select count(*)::int from conversations) as n`.execute(db);
    expect(rows[0]!.token ?? '').toBe('');
    expect(rows[0]!.n).toBe(0);
  });

  it('keeps the key out of reach of the service roles', async () => {
    const read = await withTenant(db, w.a.tenantId, (tx) => attempt(tx, sql`select key from app.tenant_token_keys`));
    expect(read).toMatch(/^42501: permission denied/);
  });
});
