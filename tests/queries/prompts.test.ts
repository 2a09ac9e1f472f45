import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError } from '../../src/db/errors.ts';
import type { DB } from '../../src/db/schema.generated.ts';
import type { TenantTx } from '../../src/db/tenant-tx.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { updateAgent } from '../../src/queries/agent-edits.ts';
import { createAgent, resolveAgent } from '../../src/queries/agents.ts';
import { createPromptVersion, getPrompt, listPromptVersions, MAX_PROMPT_CONTENT_BYTES } from '../../src/queries/prompts.ts';
import { insertAgentCatalog, insertTenantWithUsers, type AgentCatalog } from '../support/agent-fixtures.ts';
import { holdTx, waitUntilBlocked } from '../support/hold-tx.ts';
import { onServer, openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let cat: AgentCatalog;
let a: { tenantId: string; userId: string; secondUserId: string };
let b: { tenantId: string; userId: string; secondUserId: string };

beforeAll(async () => {
  t = await openTestDb();
  cat = await insertAgentCatalog(t.db);
  a = await insertTenantWithUsers(t.db, cat.roleId, 'prompts-a');
  b = await insertTenantWithUsers(t.db, cat.roleId, 'prompts-b');
});
afterAll(() => t?.close());

const inA = <T>(fn: (tx: TenantTx) => Promise<T>) => withTenant(t.db, a.tenantId, fn);
const inB = <T>(fn: (tx: TenantTx) => Promise<T>) => withTenant(t.db, b.tenantId, fn);
const uniqueName = () => `prompt-${randomUUID().slice(0, 8)}`;

describe('createPromptVersion', () => {
  it('numbers the versions of a name 1, 2, 3 for the current tenant', async () => {
    const name = uniqueName();
    const v1 = await inA((tx) => createPromptVersion(tx, { name, content: 'one' }));
    const v2 = await inA((tx) => createPromptVersion(tx, { name, content: 'two' }));
    const v3 = await inA((tx) => createPromptVersion(tx, { name, content: 'three' }));
    expect([v1, v2, v3].map((p) => [p.version, p.content, p.tenantId])).toEqual([[1, 'one', a.tenantId], [2, 'two', a.tenantId], [3, 'three', a.tenantId]]);
    // Another tenant's versions of the same name are its own, from 1.
    expect((await inB((tx) => createPromptVersion(tx, { name, content: 'b one' }))).version).toBe(1);
  });

  it("a tenant's prompt named like a global one starts at 1 and never changes the global one", async () => {
    const v = await inA((tx) => createPromptVersion(tx, { name: 'standard', content: 'Our standard' }));
    expect(v).toMatchObject({ version: 1, tenantId: a.tenantId });
    const global = await t.db.selectFrom('prompts').select(['version', 'content']).where('id', '=', cat.promptId).executeTakeFirstOrThrow();
    expect(global).toEqual({ version: 2, content: 'You are a careful assistant.' });
  });

  it('validates name and content before any SQL', async () => {
    await expect(inA((tx) => createPromptVersion(tx, { name: '', content: 'x' }))).rejects.toMatchObject({ field: 'name' });
    await expect(inA((tx) => createPromptVersion(tx, { name: 'x', content: '  ' }))).rejects.toMatchObject({ field: 'content' });
    await expect(inA((tx) => createPromptVersion(tx, { name: 'x', content: 'a\u0000b' }))).rejects.toMatchObject({ field: 'content' });
    await expect(inA((tx) => createPromptVersion(tx, { name: 'x', content: 'x'.repeat(MAX_PROMPT_CONTENT_BYTES + 1) }))).rejects.toMatchObject({ field: 'content' });
  });

  describe.runIf(onServer)('concurrently, on the server', () => {
    let pool: Kysely<DB>;
    beforeAll(() => {
      pool = t.open(8);
    });

    it('writers racing on one name get distinct consecutive versions, none fails', async () => {
      const name = uniqueName();
      const writers = 16;
      const made = await Promise.all(
        Array.from({ length: writers }, (_, i) =>
          withTenant(pool, a.tenantId, (tx) => createPromptVersion(tx, { name, content: `writer ${i}` })),
        ),
      );
      expect(made.map((p) => p.version).sort((x, y) => x - y)).toEqual(Array.from({ length: writers }, (_, i) => i + 1));
      const stored = await t.db.selectFrom('prompts').select(['version', 'content']).where('tenantId', '=', a.tenantId).where('name', '=', name).orderBy('version').execute();
      expect(stored).toHaveLength(writers);
      for (const p of made) expect(stored).toContainEqual({ version: p.version, content: p.content });
    });

    it('a writer that meets an uncommitted version waits for it, then takes the next number (and the next after a rollback)', async () => {
      const name = uniqueName();
      const first = holdTx(pool, a.tenantId, (tx) => createPromptVersion(tx, { name, content: 'first' }));
      expect((await first.didWork).version).toBe(1);
      const second = holdTx(pool, a.tenantId, (tx) => createPromptVersion(tx, { name, content: 'second' }));
      await waitUntilBlocked(t.db, await second.pid, await first.pid);
      first.commit();
      await first.done;
      expect((await second.didWork).version).toBe(2);
      second.commit();
      await second.done;
      // A rolled-back writer leaves its number free: the waiting one takes it.
      const third = holdTx(pool, a.tenantId, (tx) => createPromptVersion(tx, { name, content: 'third, rolled back' }));
      expect((await third.didWork).version).toBe(3);
      const fourth = holdTx(pool, a.tenantId, (tx) => createPromptVersion(tx, { name, content: 'fourth' }));
      await waitUntilBlocked(t.db, await fourth.pid, await third.pid);
      third.rollback();
      await third.done;
      expect((await fourth.didWork).version).toBe(3);
      fourth.commit();
      await fourth.done;
      const stored = await t.db.selectFrom('prompts').select(['version', 'content']).where('tenantId', '=', a.tenantId).where('name', '=', name).orderBy('version').execute();
      expect(stored).toEqual([{ version: 1, content: 'first' }, { version: 2, content: 'second' }, { version: 3, content: 'fourth' }]);
    });
  });
});

describe('getPrompt', () => {
  it('reads the latest version by name, a given version, or one by id', async () => {
    const name = uniqueName();
    const v1 = await inA((tx) => createPromptVersion(tx, { name, content: 'one' }));
    const v2 = await inA((tx) => createPromptVersion(tx, { name, content: 'two' }));
    expect(await inA((tx) => getPrompt(tx, { name }))).toEqual(v2);
    expect(await inA((tx) => getPrompt(tx, { name, version: 1 }))).toEqual(v1);
    expect(await inA((tx) => getPrompt(tx, { promptId: v1.id }))).toEqual(v1);
    await expect(inA((tx) => getPrompt(tx, { name, version: 3 }))).rejects.toMatchObject({ name: 'NotFoundError', entity: 'prompt' });
  });

  it('reads global prompts; by name the tenant\'s own shadows a global one, and versions never mix', async () => {
    const name = uniqueName();
    // Global versions 1..3 of `name`, as the seed writes them.
    await t.db.insertInto('prompts').values([1, 2, 3].map((version) => ({ name, version, content: `global ${version}` }))).execute();
    expect((await inB((tx) => getPrompt(tx, { name }))).content).toBe('global 3');
    expect((await inB((tx) => getPrompt(tx, { promptId: cat.promptId }))).tenantId).toBeNull();
    await inA((tx) => createPromptVersion(tx, { name, content: 'ours 1' }));
    expect((await inA((tx) => getPrompt(tx, { name }))).content).toBe('ours 1');
    // Version 3 exists only globally: A's name means A's prompt, which has no version 3.
    await expect(inA((tx) => getPrompt(tx, { name, version: 3 }))).rejects.toBeInstanceOf(NotFoundError);
    expect((await inB((tx) => getPrompt(tx, { name, version: 3 }))).content).toBe('global 3');
  });

  it("never reads another tenant's prompt: by id or by name, it is not found", async () => {
    const name = uniqueName();
    const theirs = await inB((tx) => createPromptVersion(tx, { name, content: 'B secret' }));
    await expect(inA((tx) => getPrompt(tx, { promptId: theirs.id }))).rejects.toMatchObject({ entity: 'prompt', id: String(theirs.id) });
    await expect(inA((tx) => getPrompt(tx, { name }))).rejects.toBeInstanceOf(NotFoundError);
  });
});

describe('listPromptVersions', () => {
  it('pages through the versions newest first without their content; a cursor is bound to its name', async () => {
    const name = uniqueName();
    for (let i = 1; i <= 5; i++) await inA((tx) => createPromptVersion(tx, { name, content: `v${i} ✓` }));
    const first = await inA((tx) => listPromptVersions(tx, { name, limit: 2 }));
    expect(first.items.map((p) => p.version)).toEqual([5, 4]);
    expect(first.items[0]).not.toHaveProperty('content');
    expect(first.items[0]!.contentBytes).toBe(Buffer.byteLength('v5 ✓'));
    const second = await inA((tx) => listPromptVersions(tx, { name, limit: 2, cursor: first.nextCursor }));
    expect(second.items.map((p) => p.version)).toEqual([3, 2]);
    const third = await inA((tx) => listPromptVersions(tx, { name, limit: 2, cursor: second.nextCursor }));
    expect(third).toMatchObject({ items: [{ version: 1 }], nextCursor: null });
    await expect(inA((tx) => listPromptVersions(tx, { name: 'other', cursor: first.nextCursor }))).rejects.toMatchObject({ field: 'cursor' });
    await expect(inB((tx) => listPromptVersions(tx, { name, cursor: first.nextCursor }))).rejects.toMatchObject({ field: 'cursor' });
    await expect(inA((tx) => listPromptVersions(tx, { name, limit: 201 }))).rejects.toMatchObject({ field: 'limit' });
    expect(await inB((tx) => listPromptVersions(tx, { name }))).toEqual({ items: [], nextCursor: null });
  });
});

describe('agents: a pinned prompt version, or the latest', () => {
  it('pinned (the default): resolveAgent runs exactly the version the agent names, whatever comes after', async () => {
    const name = uniqueName();
    const v1 = await inA((tx) => createPromptVersion(tx, { name, content: 'pinned text' }));
    const agent = await inA((tx) => createAgent(tx, { name: 'Pinned', modelId: cat.modelId, promptId: v1.id }));
    expect(agent.promptFollowsLatest).toBe(false);
    await inA((tx) => createPromptVersion(tx, { name, content: 'newer text' }));
    const { prompt } = await inA((tx) => resolveAgent(tx, { agentId: agent.id, userId: a.userId }));
    expect(prompt).toEqual({ id: v1.id, name, version: 1, content: 'pinned text' });
  });

  it('following the latest: resolveAgent runs the newest version of the name, in the same owner', async () => {
    const name = uniqueName();
    const v1 = await inA((tx) => createPromptVersion(tx, { name, content: 'first' }));
    const agent = await inA((tx) => createAgent(tx, { name: 'Follower', modelId: cat.modelId, promptId: v1.id, promptFollowsLatest: true }));
    const v2 = await inA((tx) => createPromptVersion(tx, { name, content: 'second' }));
    // Another tenant's version of the same name is not A's prompt.
    await inB((tx) => createPromptVersion(tx, { name, content: 'B' }));
    await inB((tx) => createPromptVersion(tx, { name, content: 'B again' }));
    await inB((tx) => createPromptVersion(tx, { name, content: 'B more' }));
    expect((await inA((tx) => resolveAgent(tx, { agentId: agent.id, userId: a.userId }))).prompt).toEqual({ id: v2.id, name, version: 2, content: 'second' });
    // Pinning it again.
    await inA((tx) => updateAgent(tx, { agentId: agent.id, promptFollowsLatest: false }));
    expect((await inA((tx) => resolveAgent(tx, { agentId: agent.id, userId: a.userId }))).prompt?.version).toBe(1);
  });

  it("a tenant's agent takes global prompts and its own, never another tenant's", async () => {
    const theirs = await inB((tx) => createPromptVersion(tx, { name: uniqueName(), content: 'B secret' }));
    await expect(inA((tx) => createAgent(tx, { name: 'Thief', modelId: cat.modelId, promptId: theirs.id }))).rejects.toMatchObject({
      name: 'NotFoundError', entity: 'prompt', id: String(theirs.id),
    });
    expect(await t.db.selectFrom('agents').select('id').where('name', '=', 'Thief').execute()).toEqual([]);
    const global = await inA((tx) => createAgent(tx, { name: 'Global prompt', modelId: cat.modelId, promptId: cat.promptId }));
    expect((await inA((tx) => resolveAgent(tx, { agentId: global.id, userId: a.userId }))).prompt?.content).toBe('You are a careful assistant.');
  });
});
