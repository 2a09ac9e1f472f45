import { randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TenantTx } from '../../src/db/tenant-tx.ts';
import { NotFoundError, TenantContextError, ValidationError } from '../../src/db/errors.ts';
import type { DB } from '../../src/db/schema.generated.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { createAgent } from '../../src/queries/agents.ts';
import { createResource, getResource, listResources, type Resource } from '../../src/queries/resources.ts';
import { insertAgentCatalog, insertAgentsOfEveryKind, insertTenantWithUsers, type AgentCatalog } from '../support/agent-fixtures.ts';
import type { Page } from '../../src/queries/cursor.ts';
import { QueryRecorder } from '../support/query-recorder.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

interface TenantFixture {
  tenantId: string;
  userId: string;
  secondUserId: string;
  agentId: string;
  messageId: string;
}

let t: TestDb;
let cat: AgentCatalog;
let a: TenantFixture;
let b: TenantFixture;
const counter = new QueryRecorder();
let counted: Kysely<DB>;

/** A tenant (as the owner) with a user, a conversation with one message, and (as app_user) an agent. */
async function insertTenantFixture(slug: string): Promise<TenantFixture> {
  const { tenantId, userId, secondUserId } = await insertTenantWithUsers(t.db, cat.roleId, slug);
  const conversation = await t.db.insertInto('conversations').values({ tenantId, userId, title: 'c' }).returning('id').executeTakeFirstOrThrow();
  const message = await t.db
    .insertInto('messages')
    .values({ tenantId, conversationId: conversation.id, role: 'user', content: JSON.stringify({ text: 'see attached' }) })
    .returning('id')
    .executeTakeFirstOrThrow();
  const agent = await withTenant(t.db, tenantId, (tx) => createAgent(tx, { name: `${slug} agent`, modelId: cat.modelId }));
  return { tenantId, userId, secondUserId, agentId: agent.id, messageId: message.id };
}

beforeAll(async () => {
  t = await openTestDb();
  cat = await insertAgentCatalog(t.db);
  a = await insertTenantFixture('tenant-a');
  b = await insertTenantFixture('tenant-b');
  counted = t.db.withPlugin(counter);
});
afterAll(() => t?.close());

const inA = <T>(fn: (tx: TenantTx) => Promise<T>) => withTenant(t.db, a.tenantId, fn);
const inB = <T>(fn: (tx: TenantTx) => Promise<T>) => withTenant(t.db, b.tenantId, fn);

/** Every resource row, read as the owner: to prove that nothing changed. */
function snapshot() {
  return t.db.selectFrom('resources').select(['id', 'tenantId', 'agentId', 'messageId', 'name', 'metadata', 'updatedAt']).orderBy('id').execute();
}

describe('createResource', () => {
  it('creates a resource of the current tenant with content, S3 URI, metadata, agent and message', async () => {
    const resource = await inA((tx) =>
      createResource(tx, {
        name: 'handbook.pdf', type: 'pdf', content: 'Chapter 1', s3Uri: 's3://docs/handbook.pdf',
        metadata: { pages: 12, tags: ['hr'], source: { uploadedBy: 'alice' } }, agentId: a.agentId, messageId: a.messageId,
      }),
    );
    expect(resource).toEqual({
      id: expect.any(String), agentId: a.agentId, messageId: a.messageId, name: 'handbook.pdf', type: 'pdf', content: 'Chapter 1',
      s3Uri: 's3://docs/handbook.pdf', metadata: { pages: 12, tags: ['hr'], source: { uploadedBy: 'alice' } },
      createdAt: expect.any(Date), updatedAt: expect.any(Date),
    });
    const row = await t.db.selectFrom('resources').select(['tenantId']).where('id', '=', resource.id).executeTakeFirstOrThrow();
    expect(row.tenantId).toBe(a.tenantId);
  });

  it('attaches to a global agent, or to nothing', async () => {
    const global = await inA((tx) => createResource(tx, { name: 'faq', type: 'text', agentId: cat.globalAgentId }));
    expect(global).toMatchObject({ agentId: cat.globalAgentId, messageId: null });
    const bare = await inA((tx) => createResource(tx, { name: 'note', type: 'text' }));
    expect(bare).toMatchObject({ agentId: null, messageId: null, content: null, s3Uri: null, metadata: {} });
  });

  it('refuses bad parameters before any SQL, naming the field', async () => {
    const ok = { name: 'r', type: 'text' };
    const cases: Array<[string, Record<string, unknown>]> = [
      ['name', { ...ok, name: '' }],
      ['name', { ...ok, name: ' ' }],
      ['type', { ...ok, type: '' }],
      ['type', { ...ok, type: undefined }],
      ['content', { ...ok, content: 5 }],
      ['content', { ...ok, content: 'a\u0000b' }],
      ['s3Uri', { ...ok, s3Uri: 'https://bucket.example.com/key' }],
      ['s3Uri', { ...ok, s3Uri: 'S3://bucket/key' }],
      ['s3Uri', { ...ok, s3Uri: '' }],
      ['s3Uri', { ...ok, s3Uri: 42 }],
      ['metadata', { ...ok, metadata: [] }],
      ['metadata', { ...ok, metadata: null }],
      ['metadata', { ...ok, metadata: '{}' }],
      ['metadata', { ...ok, metadata: { at: new Date() } }],
      ['metadata', { ...ok, metadata: { n: Number.POSITIVE_INFINITY } }],
      ['agentId', { ...ok, agentId: 'agent-1' }],
      ['messageId', { ...ok, messageId: 123 }],
      ['userId', { ...ok, agentId: a.agentId, userId: 'alice' }],
    ];
    await withTenant(counted, a.tenantId, async (tx) => {
      counter.reset();
      for (const [field, params] of cases) {
        const attempt = createResource(tx, params as never);
        await expect(attempt, `${field}: ${JSON.stringify(params)}`).rejects.toBeInstanceOf(ValidationError);
        await expect(attempt).rejects.toMatchObject({ field });
      }
      expect(counter.kinds).toEqual([]);
    });
  });

  it("for a user: attaches to an agent the user may use (global, tenant-wide, own, shared); another user's private agent fails as an unknown one", async () => {
    const kinds = await insertAgentsOfEveryKind(t.db, {
      modelId: cat.modelId, globalAgentId: cat.globalAgentId, tenantId: a.tenantId, userId: a.userId, otherUserId: a.secondUserId, otherTenantId: b.tenantId,
    });
    for (const [kind, agentId] of Object.entries(kinds.usable)) {
      const resource = await inA((tx) => createResource(tx, { name: kind, type: 'text', agentId, userId: a.userId }));
      expect({ kind, agentId: resource.agentId }).toEqual({ kind, agentId });
    }
    const before = await snapshot();
    for (const [kind, agentId] of Object.entries(kinds.unusable)) {
      const error = await inA((tx) => createResource(tx, { name: kind, type: 'text', agentId, userId: a.userId })).catch((e: unknown) => e);
      expect({ kind, error }).toEqual({ kind, error: new NotFoundError('agent', agentId) });
    }
    expect(await snapshot()).toEqual(before);
    // Its owner may attach to it.
    const theirs = await inA((tx) => createResource(tx, { name: 'theirs', type: 'text', agentId: kinds.unusable.othersPrivate, userId: a.secondUserId }));
    expect(theirs.agentId).toBe(kinds.unusable.othersPrivate);
  });

  it('for no user in particular: attaches only to an agent every user may use (global, tenant-wide); a private agent fails as an unknown one', async () => {
    const kinds = await insertAgentsOfEveryKind(t.db, {
      modelId: cat.modelId, globalAgentId: cat.globalAgentId, tenantId: a.tenantId, userId: a.userId, otherUserId: a.secondUserId, otherTenantId: b.tenantId,
    });
    for (const agentId of [kinds.usable.global, kinds.usable.tenantWide]) {
      expect((await inA((tx) => createResource(tx, { name: 'everyone', type: 'text', agentId }))).agentId).toBe(agentId);
    }
    const before = await snapshot();
    for (const agentId of [kinds.usable.own, kinds.usable.shared, ...Object.values(kinds.unusable)]) {
      await expect(inA((tx) => createResource(tx, { name: 'private', type: 'text', agentId }))).rejects.toThrow(new NotFoundError('agent', agentId));
    }
    expect(await snapshot()).toEqual(before);
  });

  it("a userId that is not the tenant's user is NotFoundError('user'); nothing is inserted", async () => {
    const before = await snapshot();
    const stranger = randomUUID();
    await expect(inA((tx) => createResource(tx, { name: 'x', type: 'text', agentId: cat.globalAgentId, userId: stranger }))).rejects.toThrow(new NotFoundError('user', stranger));
    await expect(inA((tx) => createResource(tx, { name: 'x', type: 'text', userId: b.userId }))).rejects.toThrow(new NotFoundError('user', b.userId));
    expect(await snapshot()).toEqual(before);
  });

  it("another tenant's agent or message is NotFoundError, exactly like unknown ids; nothing is inserted", async () => {
    const before = await snapshot();
    const unknown = randomUUID();
    await expect(inA((tx) => createResource(tx, { name: 'x', type: 'text', agentId: b.agentId }))).rejects.toThrow(new NotFoundError('agent', b.agentId));
    await expect(inA((tx) => createResource(tx, { name: 'x', type: 'text', agentId: unknown }))).rejects.toThrow(new NotFoundError('agent', unknown));
    await expect(inA((tx) => createResource(tx, { name: 'x', type: 'text', messageId: b.messageId }))).rejects.toThrow(
      new NotFoundError('message', b.messageId),
    );
    await expect(inA((tx) => createResource(tx, { name: 'x', type: 'text', messageId: unknown }))).rejects.toThrow(new NotFoundError('message', unknown));
    expect(await snapshot()).toEqual(before);
  });

  it('keeps the keys inside metadata as given (content_type stays content_type)', async () => {
    const metadata = { content_type: 'application/pdf', page_count: 3, exif: { camera_model: 'x' } };
    const resource = await inA((tx) => createResource(tx, { name: 'scan', type: 'pdf', metadata }));
    expect(resource.metadata).toEqual(metadata);
    expect((await inA((tx) => getResource(tx, { resourceId: resource.id }))).metadata).toEqual(metadata);
    const stored = await t.db.withoutPlugins().selectFrom('resources').select(sql<unknown>`metadata`.as('m')).where('id', '=', resource.id).executeTakeFirstOrThrow();
    expect(stored.m).toEqual(metadata);
  });
});

describe('getResource', () => {
  it("returns the tenant's resource; another tenant's is NotFoundError, exactly like an unknown id", async () => {
    const mine = await inA((tx) => createResource(tx, { name: 'mine', type: 'text', content: 'secret of A' }));
    expect(await inA((tx) => getResource(tx, { resourceId: mine.id }))).toEqual(mine);
    await expect(inB((tx) => getResource(tx, { resourceId: mine.id }))).rejects.toThrow(new NotFoundError('resource', mine.id));
    const unknown = randomUUID();
    await expect(inB((tx) => getResource(tx, { resourceId: unknown }))).rejects.toThrow(new NotFoundError('resource', unknown));
    await expect(inB((tx) => getResource(tx, { resourceId: 'x' }))).rejects.toMatchObject({ name: 'ValidationError', field: 'resourceId' });
  });
});

describe('listResources', () => {
  // A tenant of its own, with rows inserted as the owner at given times, so the order is known.
  let c: TenantFixture;
  const names: Record<string, string> = {};
  const inC = <T>(fn: (tx: TenantTx) => Promise<T>) => withTenant(t.db, c.tenantId, fn);

  beforeAll(async () => {
    c = await insertTenantFixture('tenant-c');
    const rows = [
      { name: 'oldest', createdAt: '2026-01-01T00:00:00.000001Z', agentId: c.agentId, messageId: null },
      { name: 'middle', createdAt: '2026-01-02T00:00:00Z', agentId: null, messageId: c.messageId },
      { name: 'tie-1', createdAt: '2026-01-03T00:00:00Z', agentId: c.agentId, messageId: c.messageId },
      { name: 'tie-2', createdAt: '2026-01-03T00:00:00Z', agentId: c.agentId, messageId: null },
      { name: 'newest', createdAt: '2026-01-04T00:00:00Z', agentId: null, messageId: null },
    ];
    const inserted = await t.db
      .insertInto('resources')
      // c.agentId is a tenant agent: its scope is the tenant (agents.scope).
      .values(rows.map((r) => ({ tenantId: c.tenantId, type: 'text', ...r, agentScope: r.agentId === null ? null : c.tenantId })))
      .returning(['id', 'name'])
      .execute();
    for (const r of inserted) names[r.id] = r.name;
  });

  /** The names of listed resources, in the order listed. */
  function namesOf(page: Page<Resource>): string[] {
    return page.items.map((r) => names[r.id] ?? r.id);
  }
  /** The two rows with equal created_at, in the expected order: by id, descending. */
  const tieOrder = () => {
    const [t1, t2] = Object.entries(names).filter(([, n]) => n.startsWith('tie-')).map(([id, n]) => ({ id, n }));
    return t1!.id > t2!.id ? [t1!.n, t2!.n] : [t2!.n, t1!.n];
  };
  /** Every page of a list with these filters, walked with `limit`: the names per page, and the last cursor. */
  async function walk(filters: { agentId?: string; messageId?: string }, limit: number): Promise<{ pages: string[][]; last: string | null }> {
    const pages: string[][] = [];
    let cursor: string | null = null;
    let last: string | null = null;
    do {
      const page: Page<Resource> = await inC((tx) => listResources(tx, { ...filters, limit, cursor }));
      pages.push(namesOf(page));
      last = page.nextCursor;
      cursor = page.nextCursor;
    } while (cursor !== null && pages.length < 100);
    return { pages, last };
  }

  it("lists the tenant's resources newest first, then by id, in one statement with explicit columns", async () => {
    const page = await withTenant(counted, c.tenantId, async (tx) => {
      counter.reset();
      const l = await listResources(tx);
      expect(counter.count).toBe(1);
      return l;
    });
    expect(namesOf(page)).toEqual(['newest', ...tieOrder(), 'middle', 'oldest']);
    expect(page.nextCursor).toBeNull();
    expect(Object.keys(page.items[0]!).sort()).toEqual(['agentId', 'content', 'createdAt', 'id', 'messageId', 'metadata', 'name', 's3Uri', 'type', 'updatedAt']);
  });

  it('filters by agent, by message, by both; limit is 1..200', async () => {
    expect(namesOf(await inC((tx) => listResources(tx, { agentId: c.agentId })))).toEqual([...tieOrder(), 'oldest']);
    expect(namesOf(await inC((tx) => listResources(tx, { messageId: c.messageId })))).toEqual(['tie-1', 'middle']);
    expect(namesOf(await inC((tx) => listResources(tx, { agentId: c.agentId, messageId: c.messageId })))).toEqual(['tie-1']);
    expect(namesOf(await inC((tx) => listResources(tx, { limit: 2 })))).toEqual(['newest', tieOrder()[0]]);
    expect(namesOf(await inC((tx) => listResources(tx, { limit: 200 })))).toHaveLength(5);
    await expect(inC((tx) => listResources(tx, { limit: 0 }))).rejects.toMatchObject({ name: 'ValidationError', field: 'limit' });
    await expect(inC((tx) => listResources(tx, { limit: 201 }))).rejects.toMatchObject({ name: 'ValidationError', field: 'limit' });
    await expect(inC((tx) => listResources(tx, { agentId: 'x' }))).rejects.toMatchObject({ name: 'ValidationError', field: 'agentId' });
    await expect(inC((tx) => listResources(tx, { messageId: 'x' }))).rejects.toMatchObject({ name: 'ValidationError', field: 'messageId' });
  });

  it('a walk over pages returns every resource exactly once, in order: across equal created_at and microseconds', async () => {
    const all = ['newest', ...tieOrder(), 'middle', 'oldest'];
    for (const limit of [1, 2, 3, 5]) {
      const { pages, last } = await walk({}, limit);
      expect(pages.flat()).toEqual(all);
      expect(pages.every((p) => p.length > 0)).toBe(true);
      expect(last).toBeNull();
    }
    // 'oldest' was created at .000001 s: a cursor cut to milliseconds would skip or repeat it.
    expect((await walk({ agentId: c.agentId }, 1)).pages.flat()).toEqual([...tieOrder(), 'oldest']);
    expect((await walk({ messageId: c.messageId }, 1)).pages.flat()).toEqual(['tie-1', 'middle']);
  });

  it('a cursor is only valid for the filters and tenant it was made for', async () => {
    const cursor = (await inC((tx) => listResources(tx, { agentId: c.agentId, limit: 1 }))).nextCursor;
    expect(cursor).not.toBeNull();
    expect(namesOf(await inC((tx) => listResources(tx, { agentId: c.agentId, cursor })))).toEqual([tieOrder()[1], 'oldest']);
    for (const other of [{}, { messageId: c.messageId }, { agentId: c.agentId, messageId: c.messageId }, { agentId: b.agentId }]) {
      await expect(inC((tx) => listResources(tx, { ...other, cursor }))).rejects.toMatchObject({ name: 'ValidationError', field: 'cursor' });
    }
    await expect(inB((tx) => listResources(tx, { agentId: c.agentId, cursor }))).rejects.toMatchObject({ name: 'ValidationError', field: 'cursor' });
    await expect(inC((tx) => listResources(tx, { cursor: 'not-a-cursor' }))).rejects.toMatchObject({ name: 'ValidationError', field: 'cursor' });
  });

  it("never shows another tenant's resources: filtering by their agent or message gives no items", async () => {
    const bResource = await inB((tx) => createResource(tx, { name: 'B only', type: 'text', agentId: b.agentId, messageId: b.messageId }));
    expect(await inC((tx) => listResources(tx, { agentId: b.agentId }))).toEqual({ items: [], nextCursor: null });
    expect(await inC((tx) => listResources(tx, { messageId: b.messageId }))).toEqual({ items: [], nextCursor: null });
    expect((await inC((tx) => listResources(tx))).items.map((r) => r.id)).not.toContain(bResource.id);
    const seenByB = (await inB((tx) => listResources(tx, { limit: 200 }))).items.map((r) => r.id);
    expect(seenByB).toContain(bResource.id);
    for (const id of Object.keys(names)) expect(seenByB).not.toContain(id);
  });
});

describe('the tenant wall', () => {
  it("another tenant cannot read, change or delete a resource", async () => {
    const mine = await inA((tx) => createResource(tx, { name: 'walled', type: 'text', content: 'A only' }));
    const before = await snapshot();
    await inB(async (tx) => {
      expect(await tx.selectFrom('resources').select('id').where('id', '=', mine.id).execute()).toEqual([]);
      expect((await tx.updateTable('resources').set({ content: 'hijacked' }).where('id', '=', mine.id).executeTakeFirst()).numUpdatedRows).toBe(0n);
      expect((await tx.deleteFrom('resources').where('id', '=', mine.id).executeTakeFirst()).numDeletedRows).toBe(0n);
    });
    await expect(inB((tx) => tx.insertInto('resources').values({ tenantId: a.tenantId, name: 'planted', type: 'text' }).execute())).rejects.toMatchObject({ code: '42501' });
    expect(await snapshot()).toEqual(before);
  });

  it('outside withTenant every function throws TenantContextError, before any SQL', async () => {
    counter.reset();
    // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
    await expect(createResource(counted, { name: 'x', type: 'text' })).rejects.toBeInstanceOf(TenantContextError);
    // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
    await expect(getResource(counted, { resourceId: randomUUID() })).rejects.toBeInstanceOf(TenantContextError);
    // @ts-expect-error the bare database is not a TenantTx (and throws TenantContextError at run time)
    await expect(listResources(counted)).rejects.toBeInstanceOf(TenantContextError);
    expect(counter.count).toBe(0);
  });
});
