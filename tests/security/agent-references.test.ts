/**
 * Tenant rows reference agents by (agent_scope, agent_id) -> agents (scope, id) (migration 0011),
 * tried as an attacker who runs raw SQL inside withTenant(db, A, …) with a service's credentials:
 * the cms (conversations, resources, user_agents) and the gateway (usage). On the server through a
 * login role made as the README says, over one connection; on PGlite (no login roles) through
 * withTenant's role. A row of A can point at a global agent or one of A's, never at B's, and the
 * error for B's agent is the error for an agent id that exists nowhere: the key does not tell
 * whether an id exists in another tenant. (Which of A's agents a given user may use is the query
 * functions' rule, visibleAgent; the key only keeps rows inside their tenant.)
 */
import { randomUUID } from 'node:crypto';
import { sql, type Kysely, type RawBuilder } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppRole } from '../../src/db/config.ts';
import type { DB } from '../../src/db/schema.generated.ts';
import { constraintOf } from '../../src/db/errors.ts';
import { withTenant } from '../../src/db/tenant.ts';
import type { TenantTx } from '../../src/db/tenant-tx.ts';
import { insertChatWorld, type ChatWorld } from '../support/conversation-fixtures.ts';
import { createLoginRole, type LoginRole } from '../support/login-role.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

const NIL = '00000000-0000-0000-0000-000000000000';

let t: TestDb;
let w: ChatWorld;
const logins: LoginRole[] = [];
const handles = new Map<AppRole, Kysely<DB>>();
/** B's agents: tenant-wide (w.b.agentId) and a user's private one. */
let bPrivateAgentId: string;
/** A conversation of A whose agent the update attacks try to change. */
let aConversationId: string;

beforeAll(async () => {
  t = await openTestDb();
  w = await insertChatWorld(t.db);
  bPrivateAgentId = (
    await t.db.insertInto('agents').values({ tenantId: w.b.tenantId, userId: w.b.userId, modelId: w.modelId, name: 'B private' }).returning('id').executeTakeFirstOrThrow()
  ).id;
  aConversationId = (
    await t.db.insertInto('conversations').values({ tenantId: w.a.tenantId, userId: w.a.userId, title: 'A' }).returning('id').executeTakeFirstOrThrow()
  ).id;
  for (const role of ['app_cms', 'app_gateway'] as const) {
    if (onServer) {
      const login = await createLoginRole(t, role);
      logins.push(login);
      handles.set(role, login.open(1));
    } else {
      handles.set(role, t.db);
    }
  }
});
afterAll(async () => {
  for (const login of logins) await login.drop();
  await t?.close();
});

/** A row of A naming agent `agentId` with scope `scope`, as raw SQL, and the service that may write it. */
const WRITES: Record<string, { role: AppRole; statement: (agentId: string, scope: string | null) => RawBuilder<unknown> }> = {
  'insert into conversations': {
    role: 'app_cms',
    statement: (agentId, scope) => sql`insert into conversations (tenant_id, user_id, agent_id, agent_scope, title)
      values (${w.a.tenantId}, ${w.a.userId}, ${agentId}, ${scope}, 'planted')`,
  },
  'update conversations': {
    role: 'app_cms',
    statement: (agentId, scope) => sql`update conversations set agent_id = ${agentId}, agent_scope = ${scope}
      where tenant_id = ${w.a.tenantId} and id = ${aConversationId}`,
  },
  'insert into resources': {
    role: 'app_cms',
    statement: (agentId, scope) => sql`insert into resources (tenant_id, name, type, agent_id, agent_scope)
      values (${w.a.tenantId}, 'planted', 'text', ${agentId}, ${scope})`,
  },
  'insert into user_agents': {
    role: 'app_cms',
    statement: (agentId, scope) => sql`insert into user_agents (tenant_id, user_id, agent_id, agent_scope, role)
      values (${w.a.tenantId}, ${w.a.otherUserId}, ${agentId}, ${scope}, 'viewer')`,
  },
  'insert into usage': {
    role: 'app_gateway',
    statement: (agentId, scope) => sql`insert into usage (tenant_id, user_id, model_id, type, cost, agent_id, agent_scope)
      values (${w.a.tenantId}, ${w.a.userId}, ${w.modelId}, 'planted', 0, ${agentId}, ${scope})`,
  },
};

/**
 * Runs the write as `role` inside withTenant(A) and rolls it back: 'written', or the error as the
 * attacker sees it (SQLSTATE, constraint, message and detail) with the agent id replaced by
 * <agent>, so that errors about two different ids can be compared. A check or not-null violation's
 * "Failing row contains (…)" lists the attempted row itself (the attacker's values, a fresh id and
 * now()): it is shortened, as it differs between any two attempts and says nothing of agents.
 */
async function tryWrite(role: AppRole, statement: RawBuilder<unknown>, agentId: string): Promise<string> {
  const rollback = new Error('roll back');
  try {
    await withTenant(handles.get(role)!, w.a.tenantId, async (tx: TenantTx) => {
      const result = await statement.execute(tx);
      if (result.numAffectedRows !== 1n) throw new Error(`expected one row, got ${String(result.numAffectedRows)}`);
      throw rollback;
    }, { role });
  } catch (error) {
    if (error === rollback) return 'written';
    const e = error as { code?: string; message: string; detail?: string };
    return [e.code, constraintOf(error), e.message, e.detail]
      .filter((x) => x !== undefined)
      .join(' | ')
      .replaceAll(agentId, '<agent>')
      .replace(/Failing row contains \(.*\)\.?$/s, 'Failing row contains (…)')
      // On Citus the error comes from a shard: `conversations_102040`, `…_fkey_102040`.
      .replace(/\b([a-z_]+)_\d{6,}\b/g, '$1');
  }
  throw new Error('unreachable');
}

describe.each(Object.entries(WRITES))('%s, raw SQL as the service inside tenant A', (write, { role, statement }) => {
  const table = write.split(' ').at(-1)!;

  it("names a global agent (scope nil) or one of A's (scope A)", async () => {
    expect(await tryWrite(role, statement(w.globalAgentId, NIL), w.globalAgentId)).toBe('written');
    expect(await tryWrite(role, statement(w.a.agentId, w.a.tenantId), w.a.agentId)).toBe('written');
  });

  it("cannot name B's agent under any scope, and each refusal is the refusal of an id that exists nowhere", async () => {
    const unknown = randomUUID();
    for (const scope of [w.a.tenantId, NIL, w.b.tenantId, null]) {
      const refusals = [w.b.agentId, bPrivateAgentId, unknown].map((agentId) => tryWrite(role, statement(agentId, scope), agentId));
      const [tenantWide, privateOfB, nowhere] = await Promise.all(refusals);
      expect({ scope, tenantWide }).not.toEqual({ scope, tenantWide: 'written' });
      expect({ scope, tenantWide, privateOfB }).toEqual({ scope, tenantWide: nowhere, privateOfB: nowhere });
    }
    // The scopes the key accepts (A's, nil) fail on the foreign key itself, with a message that names
    // no tenant but A and the id that was asked for.
    expect(await tryWrite(role, statement(w.b.agentId, w.a.tenantId), w.b.agentId)).toMatch(new RegExp(`^23503 \\| ${table}_agent_id_fkey \\| `));
    expect(await tryWrite(role, statement(w.b.agentId, NIL), w.b.agentId)).toMatch(new RegExp(`^23503 \\| ${table}_agent_id_fkey \\| `));
    expect(await tryWrite(role, statement(w.b.agentId, w.b.tenantId), w.b.agentId)).toMatch(new RegExp(`^23514 \\| ${table}_agent_scope_check \\| `));
  });

  it("cannot name one of A's agents with the global scope, nor a global agent with A's scope", async () => {
    expect(await tryWrite(role, statement(w.a.agentId, NIL), w.a.agentId)).toMatch(/^23503 /);
    expect(await tryWrite(role, statement(w.globalAgentId, w.a.tenantId), w.globalAgentId)).toMatch(/^23503 /);
  });
});

it('nothing planted reached the tables', async () => {
  const planted = await t.db
    .selectFrom('conversations').select('agentId').where('title', '=', 'planted')
    .unionAll(t.db.selectFrom('resources').select('agentId').where('name', '=', 'planted'))
    .unionAll(t.db.selectFrom('usage').select('agentId').where('type', '=', 'planted'))
    .unionAll(t.db.selectFrom('userAgents').select('agentId').where('userId', '=', w.a.otherUserId))
    .execute();
  expect(planted).toEqual([]);
  const conversation = await t.db.selectFrom('conversations').select(['agentId', 'agentScope']).where('id', '=', aConversationId).executeTakeFirstOrThrow();
  expect(conversation).toEqual({ agentId: null, agentScope: null });
});
