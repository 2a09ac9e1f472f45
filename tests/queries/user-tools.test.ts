/**
 * A user's tool credentials: stored encrypted, bound to (tenant, user, tool), decrypted only for
 * the cms, listed without them.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError, PermissionError } from '../../src/db/errors.ts';
import { withTenant } from '../../src/db/tenant.ts';
import {
  deleteUserToolCredential,
  getUserToolCredential,
  listUserTools,
  setUserToolCredential,
} from '../../src/queries/user-tools.ts';
import { insertChatWorld, type ChatWorld } from '../support/conversation-fixtures.ts';
import { testRing } from '../support/secret-keys.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

const TOKEN = 'ghp_user-tool-token-0123456789abcdef';

let t: TestDb;
let w: ChatWorld;
let tools: number[];

const asCms = <T>(tenantId: string, fn: Parameters<typeof withTenant<T>>[2]) => withTenant(t.db, tenantId, fn, { role: 'app_cms' });

/** Every stored credential, as the owner sees it (no RLS for a superuser), as text. */
async function storedCredentials(): Promise<{ tenant_id: string; user_id: string; tool_id: number; credential: string }[]> {
  return (await sql<{ tenant_id: string; user_id: string; tool_id: number; credential: string }>`
    select tenant_id, user_id, tool_id, credential::text as credential from user_tools order by created_at, id`.execute(t.db.withoutPlugins())).rows;
}

beforeAll(async () => {
  t = await openTestDb({ secretKeys: testRing });
  w = await insertChatWorld(t.db);
  tools = (await t.db.insertInto('tools').values(['github', 'jira', 'slack', 'drive', 'mail'].map((name) => ({ name, type: 'mcp' }))).returning('id').execute()).map((r) => r.id);
});
afterAll(() => t?.close());

describe('setUserToolCredential and getUserToolCredential', () => {
  it('round-trip the JSON object; the database holds only {"v":1,"enc":…}, never the token', async () => {
    const credential = { token: TOKEN, scopes: ['repo', 'read:org'], expires: 1767225600, nested: { ok: true, none: null } };
    const row = await asCms(w.a.tenantId, (tx) => setUserToolCredential(tx, { userId: w.a.userId, toolId: tools[0]!, credential }));
    expect(row).toEqual({ id: expect.any(String), userId: w.a.userId, toolId: tools[0], hasCredential: true, createdAt: expect.any(Date), updatedAt: expect.any(Date) });
    expect(await asCms(w.a.tenantId, (tx) => getUserToolCredential(tx, { userId: w.a.userId, toolId: tools[0]! }))).toEqual(credential);
    const stored = await storedCredentials();
    expect(stored).toHaveLength(1);
    expect(JSON.parse(stored[0]!.credential)).toEqual({ v: 1, enc: expect.stringMatching(/^v1\.test\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+$/) });
    expect(stored[0]!.credential).not.toContain(TOKEN.slice(0, 12));
    expect(stored[0]!.credential).not.toContain('repo');
  });

  it('replaces the credential of the same user and tool (one row)', async () => {
    await asCms(w.a.tenantId, (tx) => setUserToolCredential(tx, { userId: w.a.userId, toolId: tools[0]!, credential: { token: 'second' } }));
    expect(await asCms(w.a.tenantId, (tx) => getUserToolCredential(tx, { userId: w.a.userId, toolId: tools[0]! }))).toEqual({ token: 'second' });
    expect(await storedCredentials()).toHaveLength(1);
  });

  it('a ciphertext copied to another user, tool or tenant does not decrypt there', async () => {
    await asCms(w.a.tenantId, (tx) => setUserToolCredential(tx, { userId: w.a.otherUserId, toolId: tools[1]!, credential: { token: 'other-user' } }));
    await asCms(w.a.tenantId, (tx) => setUserToolCredential(tx, { userId: w.a.userId, toolId: tools[1]!, credential: { token: 'own' } }));
    await asCms(w.b.tenantId, (tx) => setUserToolCredential(tx, { userId: w.b.userId, toolId: tools[0]!, credential: { token: 'tenant-b' } }));
    // An attacker with the cms's SQL copies A's own sealed credential onto the other user's row…
    await asCms(w.a.tenantId, (tx) => sql`
      update user_tools set credential = (select credential from user_tools where user_id = ${w.a.userId} and tool_id = ${tools[0]!})
      where user_id = ${w.a.otherUserId} and tool_id = ${tools[1]!}`.execute(tx));
    await expect(asCms(w.a.tenantId, (tx) => getUserToolCredential(tx, { userId: w.a.otherUserId, toolId: tools[1]! }))).rejects.toMatchObject({
      name: 'SecretError', reason: 'undecryptable', binding: `user_tools.credential:${w.a.tenantId}:${w.a.otherUserId}:${tools[1]}`,
    });
    // …onto another tool of the same user, and (as the owner) into tenant B.
    await sql`update user_tools set credential = (select credential from user_tools where user_id = ${w.a.userId} and tool_id = ${tools[0]!})
      where user_id = ${w.a.userId} and tool_id = ${tools[1]!}`.execute(t.db);
    await sql`update user_tools set credential = (select credential from user_tools where user_id = ${w.a.userId} and tool_id = ${tools[0]!})
      where user_id = ${w.b.userId}`.execute(t.db);
    await expect(asCms(w.a.tenantId, (tx) => getUserToolCredential(tx, { userId: w.a.userId, toolId: tools[1]! }))).rejects.toMatchObject({ reason: 'undecryptable' });
    await expect(asCms(w.b.tenantId, (tx) => getUserToolCredential(tx, { userId: w.b.userId, toolId: tools[0]! }))).rejects.toMatchObject({ reason: 'undecryptable' });
  });

  it('a tampered ciphertext fails; plaintext cannot be written, even with the cms\'s raw SQL (23514)', async () => {
    await asCms(w.a.tenantId, (tx) => setUserToolCredential(tx, { userId: w.a.userId, toolId: tools[2]!, credential: { token: TOKEN } }));
    const stored = JSON.parse((await storedCredentials()).find((r) => r.tool_id === tools[2] && r.user_id === w.a.userId)!.credential) as { enc: string };
    const at = stored.enc.length - 5; // inside the ciphertext+tag
    const tampered = { v: 1, enc: stored.enc.slice(0, at) + (stored.enc[at] === 'A' ? 'B' : 'A') + stored.enc.slice(at + 1) };
    await asCms(w.a.tenantId, (tx) => sql`
      update user_tools set credential = ${JSON.stringify(tampered)}::jsonb where user_id = ${w.a.userId} and tool_id = ${tools[2]!}`.execute(tx));
    await expect(asCms(w.a.tenantId, (tx) => getUserToolCredential(tx, { userId: w.a.userId, toolId: tools[2]! }))).rejects.toMatchObject({
      name: 'SecretError', reason: 'undecryptable', keyId: 'test',
    });

    for (const value of ['{"token": "plain"}', '{"v": 1, "enc": "plain"}', '{"v": 1, "enc": "v1.test.x.y", "token": "x"}']) {
      const error = await asCms(w.a.tenantId, (tx) => sql`
        update user_tools set credential = ${value}::jsonb where user_id = ${w.a.userId} and tool_id = ${tools[2]!}`.execute(tx)).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: '23514', constraint: 'user_tools_credential_sealed' });
    }
  });

  it('a tool configured without a credential reads {}', async () => {
    await sql`insert into user_tools (tenant_id, user_id, tool_id) values (${w.a.tenantId}, ${w.a.userId}, ${tools[3]!})`.execute(t.db);
    expect(await asCms(w.a.tenantId, (tx) => getUserToolCredential(tx, { userId: w.a.userId, toolId: tools[3]! }))).toEqual({});
  });

  it('another tenant\'s row is like a missing one; unknown users and tools are NotFoundErrors', async () => {
    await expect(asCms(w.b.tenantId, (tx) => getUserToolCredential(tx, { userId: w.a.userId, toolId: tools[0]! }))).rejects.toEqual(
      new NotFoundError('user tool', `${w.a.userId}:${tools[0]}`),
    );
    await expect(asCms(w.b.tenantId, (tx) => setUserToolCredential(tx, { userId: w.a.userId, toolId: tools[0]!, credential: {} }))).rejects.toEqual(new NotFoundError('user', w.a.userId));
    await expect(asCms(w.a.tenantId, (tx) => setUserToolCredential(tx, { userId: w.a.userId, toolId: 999_999, credential: {} }))).rejects.toEqual(new NotFoundError('tool', 999_999));
    await expect(asCms(w.a.tenantId, (tx) => setUserToolCredential(tx, { userId: w.a.userId, toolId: tools[0]!, credential: ['x'] as never }))).rejects.toMatchObject({ name: 'ValidationError', field: 'credential' });
    await expect(asCms(w.a.tenantId, (tx) => setUserToolCredential(tx, { userId: w.a.userId, toolId: tools[0]!, credential: { big: 'x'.repeat(70_000) } }))).rejects.toMatchObject({ field: 'credential' });
  });

  it('only the cms may call them (PermissionError), and the database refuses the others (42501)', async () => {
    for (const role of ['app_server', 'app_gateway'] as const) {
      const error = await withTenant(t.db, w.a.tenantId, (tx) => getUserToolCredential(tx, { userId: w.a.userId, toolId: tools[0]! }), { role }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PermissionError);
      const denied = await withTenant(t.db, w.a.tenantId, (tx) => sql`select credential from user_tools`.execute(tx), { role }).catch((e: unknown) => e);
      expect(denied).toMatchObject({ code: '42501' });
    }
  });
});

describe('listUserTools and deleteUserToolCredential', () => {
  it('pages a user\'s tools newest first, never with their credentials', async () => {
    const user = w.a.otherUserId;
    for (const toolId of tools) {
      await asCms(w.a.tenantId, (tx) => setUserToolCredential(tx, { userId: user, toolId, credential: { token: `${TOKEN}-${toolId}` } }));
    }
    const seen: number[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page = await asCms(w.a.tenantId, (tx) => listUserTools(tx, { userId: user, limit: 2, cursor }));
      expect(page.items.length).toBeLessThanOrEqual(2);
      for (const item of page.items) {
        expect(Object.keys(item).sort()).toEqual(['createdAt', 'hasCredential', 'id', 'toolId', 'updatedAt', 'userId']);
        expect(item).toMatchObject({ userId: user, hasCredential: true });
      }
      expect(JSON.stringify(page)).not.toContain(TOKEN);
      expect(JSON.stringify(page)).not.toContain('v1.test.');
      seen.push(...page.items.map((i) => i.toolId));
      cursor = page.nextCursor;
      pages += 1;
    } while (cursor !== null);
    expect(pages).toBe(3);
    expect([...seen].sort((a, b) => a - b)).toEqual([...tools].sort((a, b) => a - b));
    const stored = await sql<{ tool_id: number }>`select tool_id from user_tools where user_id = ${user} order by created_at desc, id desc`.execute(t.db.withoutPlugins());
    expect(seen).toEqual(stored.rows.map((r) => r.tool_id));
    // A cursor is this user's: another user's list refuses it.
    const first = await asCms(w.a.tenantId, (tx) => listUserTools(tx, { userId: user, limit: 1 }));
    await expect(asCms(w.a.tenantId, (tx) => listUserTools(tx, { userId: w.a.userId, cursor: first.nextCursor }))).rejects.toMatchObject({ field: 'cursor' });
    expect((await asCms(w.b.tenantId, (tx) => listUserTools(tx, { userId: user }))).items).toEqual([]);
  });

  it('delete removes the row and its credential, once', async () => {
    const user = w.a.otherUserId;
    expect(await asCms(w.a.tenantId, (tx) => deleteUserToolCredential(tx, { userId: user, toolId: tools[4]! }))).toBe(true);
    expect(await asCms(w.a.tenantId, (tx) => deleteUserToolCredential(tx, { userId: user, toolId: tools[4]! }))).toBe(false);
    await expect(asCms(w.a.tenantId, (tx) => getUserToolCredential(tx, { userId: user, toolId: tools[4]! }))).rejects.toBeInstanceOf(NotFoundError);
    // Another tenant cannot delete A's rows.
    expect(await asCms(w.b.tenantId, (tx) => deleteUserToolCredential(tx, { userId: user, toolId: tools[3]! }))).toBe(false);
    expect(await asCms(w.a.tenantId, (tx) => getUserToolCredential(tx, { userId: user, toolId: tools[3]! }))).toEqual({ token: `${TOKEN}-${tools[3]}` });
  });
});

describe("another tenant's tool (tools are shared-or-owned since migration 0016)", () => {
  it('is not found: no credential is stored for it, and the transaction goes on', async () => {
    const theirs = (await t.db.insertInto('tools').values({ tenantId: w.b.tenantId, name: 'b-only', type: 'mcp' }).returning('id').executeTakeFirstOrThrow()).id;
    await asCms(w.a.tenantId, async (tx) => {
      await expect(setUserToolCredential(tx, { userId: w.a.userId, toolId: theirs, credential: { token: 'x' } })).rejects.toMatchObject({
        name: 'NotFoundError', entity: 'tool', id: String(theirs),
      });
      expect((await listUserTools(tx, { userId: w.a.userId, limit: 200 })).items.map((row) => row.toolId)).not.toContain(theirs);
    });
    const own = (await t.db.insertInto('tools').values({ tenantId: w.a.tenantId, name: 'a-only', type: 'mcp' }).returning('id').executeTakeFirstOrThrow()).id;
    await asCms(w.a.tenantId, (tx) => setUserToolCredential(tx, { userId: w.a.userId, toolId: own, credential: { token: 'ours' } }));
    expect(await asCms(w.a.tenantId, (tx) => getUserToolCredential(tx, { userId: w.a.userId, toolId: own }))).toEqual({ token: 'ours' });
  });
});
