/**
 * What appendMessage stores as content: exactly the JSON it was given, of at most
 * MAX_MESSAGE_CONTENT_BYTES (or the call's maxContentBytes), and a ValidationError('content')
 * before any SQL for anything JSON.stringify or jsonb would silently change.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/db/errors.ts';
import { withTenant } from '../../src/db/tenant.ts';
import { createConversation } from '../../src/queries/conversations.ts';
import { appendMessage, listMessages, MAX_MESSAGE_CONTENT_BYTES } from '../../src/queries/messages.ts';
import { insertChatWorld, runCounting, type ChatWorld } from '../support/conversation-fixtures.ts';
import { openTestDb, type TestDb } from '../support/test-db.ts';

let t: TestDb;
let w: ChatWorld;
let conversationId: string;

beforeAll(async () => {
  t = await openTestDb();
  w = await insertChatWorld(t.db);
  conversationId = (await withTenant(t.db, w.a.tenantId, (tx) => createConversation(tx, { userId: w.a.userId, agentId: w.a.agentId })))
    .id;
});
afterAll(() => t?.close());

/** The messages of the test conversation as the owner reads them, and their count. */
async function storedCount(): Promise<number> {
  const row = await t.db
    .selectFrom('messages')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('conversationId', '=', conversationId)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** appendMessage with `params` as tenant A: the error, and how many statements ran. */
function attempt(params: Record<string, unknown>) {
  return runCounting(t.db, w.a.tenantId, (tx) => appendMessage(tx, { conversationId, role: 'user', ...params } as never));
}

/** A content object whose JSON text is exactly `bytes` bytes: {"t":"xxx…"}. */
function contentOfBytes(bytes: number, char = 'x'): { t: string } {
  const overhead = Buffer.byteLength('{"t":""}');
  const width = Buffer.byteLength(char);
  if ((bytes - overhead) % width !== 0) throw new Error('bytes does not fit whole characters');
  return { t: char.repeat((bytes - overhead) / width) };
}

describe('appendMessage content size', () => {
  it('stores content of exactly MAX_MESSAGE_CONTENT_BYTES (1 MiB) of JSON, and refuses one byte more before any SQL, naming the field and the limit', async () => {
    expect(MAX_MESSAGE_CONTENT_BYTES).toBe(1_048_576);
    const before = await storedCount();
    const over = await attempt({ content: contentOfBytes(MAX_MESSAGE_CONTENT_BYTES + 1) });
    expect(over.error).toBeInstanceOf(ValidationError);
    expect((over.error as ValidationError).field).toBe('content');
    expect((over.error as Error).message).toBe('content: must be at most 1048576 bytes of JSON (MAX_MESSAGE_CONTENT_BYTES), got more');
    expect(over.statements).toBe(0);
    expect(await storedCount()).toBe(before);

    const exact = contentOfBytes(MAX_MESSAGE_CONTENT_BYTES);
    const message = await withTenant(t.db, w.a.tenantId, (tx) => appendMessage(tx, { conversationId, role: 'user', content: exact }));
    expect(message.content).toEqual(exact);
    expect(await storedCount()).toBe(before + 1);
  });

  it('counts bytes, not characters: 1 MiB of two-byte characters is refused at half a million of them', async () => {
    const chars = (MAX_MESSAGE_CONTENT_BYTES - 8) / 2 + 1; // one character more than fits
    const { error, statements } = await attempt({ content: { t: 'é'.repeat(chars) } });
    expect(error).toMatchObject({ name: 'ValidationError', field: 'content' });
    expect(statements).toBe(0);
  });

  it('refuses a 100 MB message before any SQL (it was accepted before)', async () => {
    const { error, statements } = await attempt({ content: { text: 'x'.repeat(100_000_000) } });
    expect(error).toMatchObject({ name: 'ValidationError', field: 'content' });
    expect((error as Error).message).toMatch(/at most 1048576 bytes/);
    expect(statements).toBe(0);
  });

  it('takes another limit per call with maxContentBytes, and refuses a bad one', async () => {
    const small = await attempt({ content: contentOfBytes(101), maxContentBytes: 100 });
    expect((small.error as Error).message).toBe('content: must be at most 100 bytes of JSON (maxContentBytes), got more');
    expect(small.statements).toBe(0);
    const big = contentOfBytes(2 * MAX_MESSAGE_CONTENT_BYTES);
    const stored = await withTenant(t.db, w.a.tenantId, (tx) =>
      appendMessage(tx, { conversationId, role: 'user', content: big, maxContentBytes: 2 * MAX_MESSAGE_CONTENT_BYTES }),
    );
    expect(stored.content).toEqual(big);
    for (const maxContentBytes of [0, -1, 1.5, '100', 10n, 256 * 1_048_576]) {
      const { error, statements } = await attempt({ content: { t: 'x' }, maxContentBytes });
      expect(error, String(maxContentBytes)).toMatchObject({ name: 'ValidationError', field: 'maxContentBytes' });
      expect(statements).toBe(0);
    }
  });
});

describe('appendMessage content is stored exactly or refused', () => {
  it('keeps every string byte for byte, as jsonb gives it back: emoji, combining marks, both normalizations, controls, quotes, U+2028, U+FFFF', async () => {
    const content = {
      emoji: '👩‍💻 🇫🇷 😀',
      nfd: 'jose\u0301',
      nfc: 'jos\u00e9',
      controls: '\u0001\u001f\t\n\r\b\f',
      quotes: `"'\\/`,
      separators: '\u2028\u2029',
      edges: '\uffff\ufffd\u007f\u0080',
      backslashU: 'C:\\u0000 and \\ud800 as text',
      '👍 key é': ['nested', { 'e\u0301': 'nfd key' }],
      numbers: [0, -1, 1.5, 1e21, 5e-324, Number.MAX_SAFE_INTEGER, -1.7976931348623157e308],
    };
    const appended = await withTenant(t.db, w.a.tenantId, (tx) => appendMessage(tx, { conversationId, role: 'user', content }));
    expect(appended.content).toEqual(content);
    const page = await withTenant(t.db, w.a.tenantId, (tx) => listMessages(tx, { conversationId, limit: 200 }));
    const read = page.items.find((m) => m.id === appended.id)!.content as typeof content;
    expect(read).toEqual(content);
    // Same code units, not merely equal after some normalization.
    expect(read.nfd).toHaveLength(5);
    expect(read.nfc).toHaveLength(4);
    expect([...read.emoji].map((c) => c.codePointAt(0))).toEqual([...content.emoji].map((c) => c.codePointAt(0)));
  });

  it('leaves out properties whose value is undefined (JSON has no undefined)', async () => {
    const appended = await withTenant(t.db, w.a.tenantId, (tx) =>
      appendMessage(tx, { conversationId, role: 'user', content: { text: 'hi', draft: undefined } as never }),
    );
    expect(appended.content).toEqual({ text: 'hi' });
    expect(Object.keys(appended.content as object)).toEqual(['text']);
  });

  it('refuses, before any SQL, every value JSON.stringify or jsonb would silently change, naming where', async () => {
    class Point {
      x = 1;
    }
    const loop: Record<string, unknown> = {};
    loop.loop = loop;
    let deep: unknown = 'leaf';
    for (let i = 0; i < 100; i++) deep = [deep];
    let getterReads = 0;
    const cases: [string, unknown, RegExp][] = [
      ['NaN', { score: NaN }, /at content\.score: NaN is not a JSON number/],
      ['Infinity', { parts: [{ score: Infinity }] }, /at content\.parts\[0\]\.score: Infinity/],
      ['-Infinity', [-Infinity], /at content\[0\]: -Infinity/],
      ['a Map', { meta: new Map([['a', 1]]) }, /at content\.meta: a Map is not a JSON value/],
      ['a Set', { tags: new Set(['a']) }, /a Set is not a JSON value/],
      ['a Date', { at: new Date() }, /a Date is not a JSON value/],
      ['a class instance', { p: new Point() }, /a Point is not a JSON value/],
      ['a Map as the content', new Map(), /content: must be a JSON object or array, got a Map/],
      ['a toJSON method that returns a string (was a raw 23514)', { toJSON: () => 'just text' }, /a toJSON method/],
      [
        'a getter that is deep once, then shallow (a getter defeated the depth limit)',
        {
          get text() {
            getterReads++;
            return getterReads === 1 ? deep : 'shallow';
          },
        },
        /at content\.text(\[0\])+: nested more than 64 levels deep/,
      ],
      ['a BigInt', { tokens: 10n }, /at content\.tokens: a BigInt is not a JSON number/],
      ['a lone high surrogate (was U+FFFD or a raw 22P02)', { text: 'cut \ud83d' }, /lone UTF-16 surrogate \(U\+D83D at index 4\)/],
      ['a lone low surrogate', { text: '\ude00' }, /lone UTF-16 surrogate \(U\+DE00/],
      ['a lone surrogate in a key', { ['k\ud800']: 1 }, /a key must not contain a lone UTF-16 surrogate/],
      ['a NUL', { text: 'a\u0000b' }, /must not contain NUL characters/],
      ['a NUL in a key', { ['k\u0000']: 1 }, /a key must not contain NUL characters/],
      ['undefined in an array', [1, undefined], /at content\[1\]: undefined or a hole/],
      ['a function', { f: () => 1 }, /a function is not a JSON value/],
      ['a cycle', loop, /at content\.loop: a cycle/],
      ['100 levels of nesting', deep, /nested more than 64 levels deep/],
    ];
    const before = await storedCount();
    for (const [what, content, message] of cases) {
      const { error, statements } = await attempt({ content });
      expect(error, what).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).field, what).toBe('content');
      expect((error as Error).message, what).toMatch(message);
      expect(statements, what).toBe(0);
    }
    expect(getterReads).toBe(1);
    expect(await storedCount()).toBe(before);
  });
});
