/**
 * The parameter checks of src/queries/validate.ts on their own (no database): jsonText builds
 * exactly the JSON text that is stored, or refuses with a ValidationError naming the field, the
 * place and the reason. What the database then keeps is tested through appendMessage in
 * messages-content.test.ts, on both backends.
 */
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/db/errors.ts';
import { assertInt, decimal, jsonObject, jsonText, MAX_JSON_DEPTH, shown } from '../../src/queries/validate.ts';

/** The ValidationError jsonText throws for `value` (fails the test if it does not throw one). */
function refusal(value: unknown, limits: Parameters<typeof jsonText>[2] = {}): ValidationError {
  try {
    jsonText('content', value, limits);
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return error as ValidationError;
  }
  throw new Error(`accepted: ${String(value)}`);
}

/** Nested arrays, `levels` deep: [[[…]]]. */
function nested(levels: number): unknown {
  let value: unknown = [];
  for (let i = 1; i < levels; i++) value = [value];
  return value;
}

class Point {
  x = 1;
  y = 2;
}

describe('jsonText', () => {
  it('writes the same text as JSON.stringify for plain JSON data, strings character for character', () => {
    const values: unknown[] = [
      { text: 'Hello', n: 1.5, big: 1e21, tiny: 5e-324, neg: -3, yes: true, no: false, none: null },
      [1, 'two', [3, { four: 4 }], []],
      { emoji: '👩‍💻 🇫🇷', nfd: 'e\u0301', nfc: '\u00e9', ctrl: '\u0001\t\n\r', quote: '"\\', sep: '\u2028\u2029', max: '\uffff\ufffd' },
      { '': 'empty key', 'a b': 1, 'é': 2, '👍': 3, __proto__x: 4 },
      Object.assign(Object.create(null) as object, { bare: 'null prototype' }),
      JSON.parse('{"__proto__": {"kept": true}}'),
    ];
    for (const value of values) expect(jsonText('content', value)).toBe(JSON.stringify(value));
  });

  it('leaves out a property whose value is undefined, and writes -0 as 0, as JSON.stringify does', () => {
    expect(jsonText('content', { a: 1, b: undefined })).toBe('{"a":1}');
    expect(jsonText('content', { z: -0 })).toBe('{"z":0}');
  });

  it('refuses NaN and ±Infinity (JSON.stringify would write null), naming where', () => {
    expect(refusal({ a: NaN }).message).toBe('content: at content.a: NaN is not a JSON number (JSON.stringify would write null)');
    expect(refusal({ parts: [{ score: Infinity }] }).message).toMatch(/^content: at content\.parts\[0\]\.score: Infinity is not a JSON number/);
    expect(refusal([-Infinity]).message).toMatch(/at content\[0\]: -Infinity/);
  });

  it('refuses Map, Set, Date, typed arrays and class instances (JSON.stringify would write {} or a string)', () => {
    expect(refusal({ m: new Map([['k', 1]]) }).message).toMatch(/at content\.m: a Map is not a JSON value/);
    expect(refusal({ s: new Set([1]) }).message).toMatch(/a Set is not a JSON value/);
    expect(refusal({ when: new Date(0) }).message).toMatch(/a Date is not a JSON value/);
    expect(refusal({ p: new Point() }).message).toMatch(/a Point is not a JSON value/);
    expect(refusal({ b: new Uint8Array(2) }).message).toMatch(/a Uint8Array is not a JSON value/);
    expect(refusal({ r: /x/ }).message).toMatch(/a RegExp is not a JSON value/);
    class List extends Array<number> {}
    expect(refusal({ l: List.from([1]) }).message).toMatch(/a List is not a plain array/);
  });

  it('refuses a toJSON method (JSON.stringify would store what it returns)', () => {
    expect(refusal({ toJSON: () => 'a string' }).message).toMatch(/at content\.toJSON: a toJSON method/);
    expect(refusal({ inner: { toJSON: () => ({}) } }).message).toMatch(/at content\.inner\.toJSON/);
  });

  it('reads a getter once: the value it gave is the value checked and written, so it cannot defeat the depth limit', () => {
    // The old check read each property, then JSON.stringify read it again: a getter shallow for
    // the check and 100 levels deep for the text passed the depth limit.
    let reads = 0;
    const shifty = {
      get a() {
        reads++;
        return reads === 1 ? 'shallow' : nested(100);
      },
    };
    expect(jsonText('content', shifty)).toBe('{"a":"shallow"}');
    expect(reads).toBe(1);
    let deepFirst = 0;
    const deep = {
      get a() {
        deepFirst++;
        return deepFirst === 1 ? nested(100) : 'shallow';
      },
    };
    expect(refusal(deep).message).toMatch(/nested more than 64 levels deep/);
    expect(deepFirst).toBe(1);
  });

  it('reads a Proxy once per property too', () => {
    let reads = 0;
    const proxy = new Proxy({ a: 1, b: 2 } as Record<string, unknown>, {
      get: (target, key) => {
        reads++;
        return reads <= 2 ? Reflect.get(target, key) : NaN;
      },
    });
    expect(jsonText('content', proxy)).toBe('{"a":1,"b":2}');
    expect(reads).toBe(2);
  });

  it('refuses BigInt with a clear message, never a TypeError from the message itself', () => {
    expect(refusal({ tokens: 10n }).message).toBe(
      'content: at content.tokens: a BigInt is not a JSON number: pass a number (exact up to 2^53) or a string',
    );
  });

  it('refuses lone UTF-16 surrogates in strings and in keys (jsonb would write U+FFFD or fail with 22P02)', () => {
    expect(refusal({ text: 'broken \ud83d here' }).message).toMatch(
      /at content\.text: a string must not contain a lone UTF-16 surrogate \(U\+D83D at index 7\)/,
    );
    expect(refusal({ text: '\ude00 first' }).message).toMatch(/U\+DE00 at index 0/);
    expect(refusal({ text: 'end \ud83d' }).message).toMatch(/U\+D83D at index 4/);
    expect(refusal({ ['key \udc00']: 1 }).message).toMatch(/a key must not contain a lone UTF-16 surrogate/);
    // A pair in the right order is one character, in either place.
    expect(jsonText('content', { ['\ud83d\ude00']: '\ud83d\ude00' })).toBe('{"😀":"😀"}');
    // Reversed, it is two lone surrogates.
    expect(refusal({ text: '\ude00\ud83d' }).message).toMatch(/U\+DE00 at index 0/);
  });

  it('refuses NUL characters in strings and in keys (jsonb cannot hold U+0000), but not the text \\u0000', () => {
    expect(refusal({ text: 'a\u0000b' }).message).toMatch(/at content\.text: a string must not contain NUL characters/);
    expect(refusal({ ['k\u0000']: 1 }).message).toMatch(/a key must not contain NUL characters/);
    expect(jsonText('content', { text: 'C:\\u0000' })).toBe('{"text":"C:\\\\u0000"}');
  });

  it('refuses what JSON.stringify would turn into null or drop: functions, symbols, undefined and holes in arrays', () => {
    expect(refusal({ f: () => 1 }).message).toMatch(/at content\.f: a function is not a JSON value/);
    expect(refusal({ s: Symbol('x') }).message).toMatch(/a symbol is not a JSON value/);
    expect(refusal([1, undefined]).message).toMatch(/at content\[1\]: undefined or a hole \(JSON.stringify would write null\)/);
    // eslint-disable-next-line no-sparse-arrays
    expect(refusal([1, , 3]).message).toMatch(/at content\[1\]: undefined or a hole/);
  });

  it('writes only what JSON is made of, like JSON.stringify: no symbol keys, non-enumerable properties or extra array properties', () => {
    const value = Object.defineProperty({ a: 1, [Symbol('s')]: 2 }, 'hidden', { value: 3, enumerable: false });
    expect(jsonText('content', value)).toBe(JSON.stringify(value));
    const array = Object.assign([1, 2], { extra: true });
    expect(jsonText('content', array)).toBe('[1,2]');
  });

  it('refuses a cycle, and more than MAX_JSON_DEPTH levels, however the value is built', () => {
    const loop: Record<string, unknown> = { name: 'loop' };
    loop.self = loop;
    expect(refusal(loop).message).toMatch(/at content\.self: a cycle/);
    // The same object twice, side by side, is not a cycle.
    const shared = { x: 1 };
    expect(jsonText('content', { a: shared, b: shared })).toBe('{"a":{"x":1},"b":{"x":1}}');
    expect(MAX_JSON_DEPTH).toBe(64);
    expect(jsonText('content', nested(MAX_JSON_DEPTH))).toBe(JSON.stringify(nested(MAX_JSON_DEPTH)));
    expect(refusal(nested(MAX_JSON_DEPTH + 1)).message).toMatch(/nested more than 64 levels deep/);
    expect(refusal(nested(100_000)).message).toMatch(/nested more than 64 levels deep/);
    expect(refusal({ a: [{ b: 1 }] }, { maxDepth: 2 }).message).toMatch(/at content\.a\[0\]: nested more than 2 levels deep/);
  });

  it('counts UTF-8 bytes of the JSON text against maxBytes: the limit is accepted, one byte more is refused, naming the limit', () => {
    const text = jsonText('content', { t: 'é'.repeat(10) }); // {"t":"…"} = 8 + 20 bytes
    expect(Buffer.byteLength(text)).toBe(28);
    expect(jsonText('content', { t: 'é'.repeat(10) }, { maxBytes: 28 })).toBe(text);
    expect(refusal({ t: 'é'.repeat(10) }, { maxBytes: 27, limitName: 'MAX_X' }).message).toBe('content: must be at most 27 bytes of JSON (MAX_X), got more');
    // Escapes count as written: a quote is two bytes in JSON text.
    expect(refusal({ t: '"'.repeat(10) }, { maxBytes: 20 }).message).toMatch(/at most 20 bytes/);
    expect(jsonText('content', { t: '"'.repeat(10) }, { maxBytes: 28 })).toBe(JSON.stringify({ t: '"'.repeat(10) }));
  });

  it('stops reading a huge value once it is over maxBytes', () => {
    let reads = 0;
    const huge = new Proxy([] as unknown[], {
      get: (target, key) => {
        if (key === 'length') return 1e9;
        if (typeof key === 'string' && /^\d+$/.test(key)) {
          reads++;
          return 'xxxxxxxx';
        }
        return Reflect.get(target, key);
      },
    });
    expect(refusal(huge, { maxBytes: 1000 }).message).toMatch(/at most 1000 bytes/);
    expect(reads).toBeLessThan(100);
    // A single string longer than the limit is refused before it is scanned or escaped.
    expect(refusal({ t: 'x'.repeat(50_000_000) }, { maxBytes: 1_048_576 }).message).toMatch(/at most 1048576 bytes/);
  });
});

describe('jsonObject', () => {
  it('takes only a plain object, and checks it like jsonText', () => {
    expect(jsonObject('metadata', { a: [1] })).toBe('{"a":[1]}');
    expect(() => jsonObject('metadata', [1])).toThrow(/metadata: must be a JSON object, got an array/);
    expect(() => jsonObject('metadata', new Map())).toThrow(/metadata: must be a JSON object, got a Map/);
    expect(() => jsonObject('metadata', { x: NaN })).toThrow(/metadata: at metadata\.x: NaN is not a JSON number/);
    expect(() => jsonObject('metadata', { x: 'x'.repeat(100) }, { maxBytes: 50 })).toThrow(/metadata: must be at most 50 bytes of JSON/);
  });
});

describe('messages about bad values', () => {
  it('show a BigInt as a BigInt instead of throwing TypeError from JSON.stringify', () => {
    expect(() => assertInt('inputTokens', 10n)).toThrow(new ValidationError('inputTokens', 'must be an integer >= 0, got 10n (a BigInt)'));
    expect(() => decimal('budget', 5n)).toThrow(/budget: must be a non-negative decimal such as "12.50", got 5n \(a BigInt\)/);
    expect(shown(Symbol('s'))).toBe('a symbol');
    expect(shown('x'.repeat(100))).toBe(JSON.stringify(`${'x'.repeat(60)}…`));
    expect(shown(new Map())).toBe('a Map');
  });
});
