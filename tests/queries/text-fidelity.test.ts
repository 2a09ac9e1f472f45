/**
 * Text is kept character for character or refused, never silently changed (issue 12, point 9):
 * lone UTF-16 surrogates in plain text fields, emails that differ only by Unicode normalization,
 * and an agent's model parameters bounded like other metadata.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/db/errors.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { createAgent } from '../../src/queries/agents.ts';
import { createConversation, renameConversation } from '../../src/queries/conversations.ts';
import { MAX_METADATA_BYTES } from '../../src/queries/limits.ts';
import { createResource } from '../../src/queries/resources.ts';
import { createUser } from '../../src/queries/users.ts';
import { insertChatWorld, type ChatWorld } from '../support/conversation-fixtures.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let w: ChatWorld;
beforeAll(async () => {
  t = await openTestDb();
  w = await insertChatWorld(t.db);
});
afterAll(() => t?.close());

const LONE_HIGH = 'plan \uD83D B';
const LONE_LOW = 'plan \uDE00 B';

describe('lone UTF-16 surrogates in text fields are refused, never stored as U+FFFD', () => {
  it.each([
    ['a conversation title', (s: string) => withTenant(t.db, w.a.tenantId, (tx) => createConversation(tx, { userId: w.a.userId, agentId: w.a.agentId, title: s }))],
    ['a resource name', (s: string) => withTenant(t.db, w.a.tenantId, (tx) => createResource(tx, { name: s, type: 'text' }))],
    ['resource content', (s: string) => withTenant(t.db, w.a.tenantId, (tx) => createResource(tx, { name: 'n', type: 'text', content: s }))],
    ['an agent description', (s: string) => withTenant(t.db, w.a.tenantId, (tx) => createAgent(tx, { name: 'A', modelId: w.modelId, description: s }))],
    ['a first name', (s: string) => withTenant(t.db, w.a.tenantId, (tx) => createUser(tx, { email: `${crypto.randomUUID()}@example.com`, firstName: s, roleId: w.roleId }))],
  ])('%s', async (_, write) => {
    for (const text of [LONE_HIGH, LONE_LOW]) {
      await expect(write(text)).rejects.toThrow(/lone UTF-16 surrogate/);
      await expect(write(text)).rejects.toBeInstanceOf(ValidationError);
    }
  });

  it('a surrogate pair (an emoji) is stored and read back as it was', async () => {
    const convo = await withTenant(t.db, w.a.tenantId, (tx) => createConversation(tx, { userId: w.a.userId, agentId: w.a.agentId, title: 'plan 😀 B' }));
    expect(convo.title).toBe('plan 😀 B');
    const renamed = await withTenant(t.db, w.a.tenantId, (tx) => renameConversation(tx, { conversationId: convo.id, title: '🚀' }));
    expect(renamed.title).toBe('🚀');
  });
});

describe('emails are compared in one Unicode normalization (NFC)', () => {
  it('josé typed with a combining accent is the same address as josé precomposed: one user, stored NFC', async () => {
    const nfc = 'jos\u00e9@example.com';
    const nfd = 'jose\u0301@example.com';
    expect(nfc).not.toBe(nfd);
    const { user } = await withTenant(t.db, w.a.tenantId, (tx) => createUser(tx, { email: nfd, roleId: w.roleId }));
    expect(user.email).toBe(nfc);
    await expect(withTenant(t.db, w.a.tenantId, (tx) => createUser(tx, { email: nfc, roleId: w.roleId }))).rejects.toThrow(
      new ValidationError('email', `${nfc} already has a user in this tenant`),
    );
  });
});

describe("an agent's model parameters are bounded like other metadata", () => {
  it(`refuses more than MAX_METADATA_BYTES (${MAX_METADATA_BYTES}) of JSON before any SQL`, async () => {
    const big = { prompt: 'x'.repeat(MAX_METADATA_BYTES) };
    const error = await withTenant(t.db, w.a.tenantId, (tx) => createAgent(tx, { name: 'Big', modelId: w.modelId, modelParameters: big })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).field).toBe('modelParameters');
    expect((error as Error).message).toContain('MAX_METADATA_BYTES');
    const fits = await withTenant(t.db, w.a.tenantId, (tx) => createAgent(tx, { name: 'Fits', modelId: w.modelId, modelParameters: { temperature: 0.2 } }));
    expect(fits.modelParameters).toEqual({ temperature: 0.2 });
  });
});
