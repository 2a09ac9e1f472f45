import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withTenant } from '../../src/db/tenant.ts';
import { listConversations } from '../../src/queries/conversations.ts';
import { appendMessage, listMessages } from '../../src/queries/messages.ts';
import { createResource, listResources } from '../../src/queries/resources.ts';
import { insertCatalog, insertTenant } from '../support/fixtures.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let a: { tenantId: string; userId: string };
let conversationId: string;

beforeAll(async () => {
  t = await openTestDb();
  const { roleId } = await insertCatalog(t.db);
  a = await insertTenant(t.db, roleId, 'cursor-times');
  await withTenant(t.db, a.tenantId, async (tx) => {
    for (let i = 0; i < 3; i += 1) await createResource(tx, { name: `r${i}`, type: 'text' });
  });
  for (let i = 0; i < 3; i += 1) {
    const c = await t.db.insertInto('conversations').values({ tenantId: a.tenantId, userId: a.userId, title: `c${i}` }).returning('id').executeTakeFirstOrThrow();
    conversationId = c.id;
  }
  await withTenant(t.db, a.tenantId, async (tx) => {
    for (let i = 0; i < 3; i += 1) await appendMessage(tx, { conversationId, role: 'user', content: { i } });
  });
});
afterAll(() => t?.close());

/** `cursor` with its timestamp replaced: still well formed, made by the same list, tenant and scope. */
function withTimestamp(cursor: string, at: string): string {
  const payload = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as Record<string, unknown>;
  return Buffer.from(JSON.stringify({ ...payload, a: at })).toString('base64url');
}

const impossible = [
  '2024-13-01T00:00:00.000000Z', // month 13
  '2024-02-30T00:00:00.000000Z', // February 30
  '2023-02-29T00:00:00.000000Z', // not a leap year
  '2024-04-31T00:00:00.000000Z',
  '0000-01-01T00:00:00.000000Z', // year 0
  '2024-01-01T24:00:00.000000Z', // PostgreSQL would roll these over: no cursor holds them
  '2024-01-01T23:60:00.000000Z',
  '2024-01-01T23:59:60.000000Z',
  '2024-13-45T25:61:61.000000Z',
];

describe('a well-formed cursor with an impossible timestamp is a ValidationError, never 22008', () => {
  const lists = {
    listResources: (cursor: string | null) => withTenant(t.db, a.tenantId, (tx) => listResources(tx, { limit: 1, cursor })),
    listMessages: (cursor: string | null) => withTenant(t.db, a.tenantId, (tx) => listMessages(tx, { conversationId, limit: 1, cursor })),
    listConversations: (cursor: string | null) => withTenant(t.db, a.tenantId, (tx) => listConversations(tx, { userId: a.userId, limit: 1, cursor })),
  };
  for (const [name, list] of Object.entries(lists)) {
    it(name, async () => {
      const first = await list(null);
      expect(first.nextCursor).not.toBeNull();
      for (const at of impossible) {
        await expect(list(withTimestamp(first.nextCursor!, at)), at).rejects.toMatchObject({ name: 'ValidationError', field: 'cursor' });
      }
      // Real dates at the edges of the calendar are accepted.
      for (const at of ['2024-02-29T23:59:59.999999Z', '0001-01-01T00:00:00.000000Z', '9999-12-31T23:59:59.999999Z']) {
        await expect(list(withTimestamp(first.nextCursor!, at)), at).resolves.toHaveProperty('items');
      }
    });
  }
});
