import { ValidationError } from '../db/errors.ts';

export { assertUuid } from '../db/tenant.ts';

/**
 * `value` for an error message, without throwing and without calling into it: strings quoted (and
 * cut at 60 characters), BigInts as `10n`, numbers as they print, objects by their kind.
 */
export function shown(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
    case 'bigint':
      return `${value}n (a BigInt)`;
    case 'number':
    case 'boolean':
    case 'undefined':
      return String(value);
    case 'symbol':
      return 'a symbol';
    case 'function':
      return 'a function';
    default:
      return describe(value);
  }
}

/** Throws a ValidationError naming `field` unless `value` is a string with 1..max characters after trimming. */
export function assertText(field: string, value: unknown, max: number): asserts value is string {
  if (typeof value !== 'string' || value.trim().length === 0) {
    throw new ValidationError(field, 'must be a non-empty string');
  }
  if (value.length > max) throw new ValidationError(field, `must be at most ${max} characters, got ${value.length}`);
  if (value.includes('\u0000')) throw new ValidationError(field, 'must not contain NUL characters');
}

/** Throws a ValidationError naming `field` unless `value` is a safe integer >= min. */
export function assertInt(field: string, value: unknown, min = 0): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new ValidationError(field, `must be an integer >= ${min}, got ${shown(value)}`);
  }
}

/**
 * A decimal amount as an exact string for a `numeric` column: a string like `"12.50"`, or a
 * finite number (converted by its shortest round-trip text). Throws a ValidationError naming
 * `field` for anything else or a negative amount.
 */
export function decimal(field: string, value: unknown): string {
  const text = typeof value === 'number' && Number.isFinite(value) ? String(value) : value;
  if (typeof text !== 'string' || !/^\d{1,20}(\.\d{1,20})?$/.test(text)) {
    throw new ValidationError(field, `must be a non-negative decimal such as "12.50", got ${shown(value)}`);
  }
  return text;
}

/** The page size: `limit` when given (1..max), else the default. */
export function pageLimit(limit: unknown, fallback = 50, max = 200): number {
  if (limit === undefined) return fallback;
  assertInt('limit', limit, 1);
  if (limit > max) throw new ValidationError('limit', `must be at most ${max}, got ${limit}`);
  return limit;
}

/** Throws a ValidationError naming `field` unless `value` is a string (possibly empty) of at most `max` characters without NUL, which PostgreSQL text refuses. */
export function assertOptionalText(field: string, value: unknown, max: number): asserts value is string {
  if (typeof value !== 'string') throw new ValidationError(field, 'must be a string or null');
  if (value.length > max) throw new ValidationError(field, `must be at most ${max} characters, got ${value.length}`);
  if (value.includes('\u0000')) throw new ValidationError(field, 'must not contain NUL characters');
}

/** How deeply jsonText lets objects and arrays nest (the top-level value is level 1). */
export const MAX_JSON_DEPTH = 64;

/** Limits of jsonText: the size of the JSON text in UTF-8 bytes, and the nesting depth. */
export interface JsonLimits {
  /** Most bytes of JSON text (UTF-8), e.g. MAX_MESSAGE_CONTENT_BYTES; default: no limit. */
  maxBytes?: number;
  /** Most levels of nested objects and arrays (default MAX_JSON_DEPTH). */
  maxDepth?: number;
  /** How the limit is named in the error message, e.g. `MAX_MESSAGE_CONTENT_BYTES`. */
  limitName?: string;
}

/**
 * A JSON object (plain object of JSON values: strings, finite numbers, booleans, null, arrays,
 * objects) for a jsonb column, as JSON text (see jsonText). Anything else → ValidationError naming `field`.
 */
export function jsonObject(field: string, value: unknown, limits: JsonLimits = {}): string {
  if (!isPlainObject(value)) throw new ValidationError(field, `must be a JSON object, got ${describe(value)}`);
  return jsonText(field, value, limits);
}

/**
 * `value` as JSON text for a jsonb column, exactly as it will be stored, or a ValidationError
 * naming `field`, the place inside the value (`content.parts[2].text`) and the reason. Refused:
 * whatever JSON.stringify would silently change or drop — NaN and ±Infinity (it writes null),
 * BigInt (it throws), Map, Set, Date, class instances and other non-plain objects (`{}` or a
 * string), a `toJSON` method, getters and setters, symbol keys, non-enumerable properties,
 * functions, array holes and `undefined` in arrays (null) — and what PostgreSQL's jsonb would
 * refuse or change: NUL characters (U+0000) and lone UTF-16 surrogates (U+FFFD, or error 22P02),
 * in strings and in keys. A property whose value is `undefined` is left out, as JSON has no
 * undefined, and -0 is written 0 (both as JSON.stringify does; jsonb has no -0 either). A cycle, more than `maxDepth` levels of nesting, or more than `maxBytes` bytes of
 * JSON text are refused too; the size is checked while the text is built, so a huge value is
 * refused after reading at most `maxBytes` of it.
 *
 * The text is built in one walk that reads every property once (through its property
 * descriptor, never through a getter), so what is checked is exactly what is written, even for a
 * Proxy. Strings keep every character: jsonb gives back the same string.
 */
export function jsonText(field: string, value: unknown, limits: JsonLimits = {}): string {
  const walker = new JsonWalker(limits.maxBytes ?? Number.POSITIVE_INFINITY, limits.maxDepth ?? MAX_JSON_DEPTH);
  try {
    walker.value(value, 1);
  } catch (error) {
    if (!(error instanceof JsonRefusal)) throw error;
    if (error.tooLarge) {
      const name = limits.limitName === undefined ? '' : ` (${limits.limitName})`;
      throw new ValidationError(field, `must be at most ${limits.maxBytes} bytes of JSON${name}, got more`);
    }
    throw new ValidationError(field, `${error.path.length === 0 ? '' : `at ${field}${error.path.join('')}: `}${error.reason}`);
  }
  return walker.text();
}

/** Why jsonText refused a value, and where (the path from the top, `.key` and `[index]` parts). */
class JsonRefusal extends Error {
  readonly path: string[];
  readonly reason: string;
  readonly tooLarge: boolean;
  constructor(path: string[], reason: string, tooLarge = false) {
    super(reason);
    this.path = path;
    this.reason = reason;
    this.tooLarge = tooLarge;
  }
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
/** A lone surrogate: a high one not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Builds the JSON text of one value, reading each property once; throws JsonRefusal. */
class JsonWalker {
  private readonly parts: string[] = [];
  private readonly path: string[] = [];
  private readonly open = new Set<object>();
  private bytes = 0;
  private readonly maxBytes: number;
  private readonly maxDepth: number;

  constructor(maxBytes: number, maxDepth: number) {
    this.maxBytes = maxBytes;
    this.maxDepth = maxDepth;
  }

  text(): string {
    return this.parts.join('');
  }

  private refuse(reason: string): never {
    throw new JsonRefusal([...this.path], reason);
  }

  private emit(piece: string): void {
    // UTF-8 has at least as many bytes as UTF-16 has code units: the cheap test first.
    if (this.bytes + piece.length > this.maxBytes || (this.bytes += Buffer.byteLength(piece, 'utf8')) > this.maxBytes) {
      throw new JsonRefusal([], 'too large', true);
    }
    this.parts.push(piece);
  }

  private string(text: string, what: 'string' | 'key'): string {
    // Before escaping: a string longer than the budget is refused without copying it.
    if (this.bytes + text.length + 2 > this.maxBytes) throw new JsonRefusal([], 'too large', true);
    if (text.includes('\u0000')) this.refuse(`a ${what} must not contain NUL characters (U+0000): jsonb cannot hold them`);
    const lone = LONE_SURROGATE.exec(text);
    if (lone !== null) {
      const unit = lone[0].charCodeAt(0).toString(16).toUpperCase();
      this.refuse(`a ${what} must not contain a lone UTF-16 surrogate (U+${unit} at index ${lone.index}): it is not text, and jsonb would change or refuse it`);
    }
    return JSON.stringify(text);
  }

  value(value: unknown, depth: number): void {
    switch (typeof value) {
      case 'string':
        return this.emit(this.string(value, 'string'));
      case 'boolean':
        return this.emit(value ? 'true' : 'false');
      case 'number':
        if (!Number.isFinite(value)) this.refuse(`${value} is not a JSON number (JSON.stringify would write null)`);
        return this.emit(JSON.stringify(value));
      case 'bigint':
        return this.refuse('a BigInt is not a JSON number: pass a number (exact up to 2^53) or a string');
      case 'undefined':
        return this.refuse('undefined is not a JSON value (JSON.stringify would write null or drop it)');
      case 'function':
      case 'symbol':
        return this.refuse(`a ${typeof value} is not a JSON value`);
    }
    if (value === null) return this.emit('null');
    const object = value as object;
    if (this.open.has(object)) this.refuse('a cycle: this value contains itself');
    if (depth > this.maxDepth) this.refuse(`nested more than ${this.maxDepth} levels deep`);
    this.open.add(object);
    if (Array.isArray(object)) this.array(object, depth);
    else this.object(object, depth);
    this.open.delete(object);
  }

  private array(array: unknown[], depth: number): void {
    if (Object.getPrototypeOf(array) !== Array.prototype) this.refuse(`${describe(array)} is not a plain array`);
    const length = array.length;
    this.emit('[');
    for (let i = 0; i < length; i++) {
      this.path.push(`[${i}]`);
      const item = this.property(array, String(i));
      if (item === undefined) this.refuse('a hole (JSON.stringify would write null)');
      if (i > 0) this.emit(',');
      this.value(item.value, depth + 1);
      this.path.pop();
    }
    this.emit(']');
    // After the elements, so that a huge array is refused by its size before its keys are listed.
    if (Reflect.ownKeys(array).length !== length + 1) {
      this.refuse('an array with properties besides its elements (JSON.stringify would drop them)');
    }
  }

  private object(object: object, depth: number): void {
    const proto = Object.getPrototypeOf(object);
    if (proto !== Object.prototype && proto !== null) this.refuse(`${describe(object)} is not a JSON value (only plain objects and arrays are)`);
    this.emit('{');
    let first = true;
    for (const key of Reflect.ownKeys(object)) {
      if (typeof key === 'symbol') this.refuse(`a symbol key ${String(key)} (JSON.stringify would drop it)`);
      this.path.push(IDENTIFIER.test(key) ? `.${key}` : `[${JSON.stringify(key.length > 40 ? `${key.slice(0, 40)}…` : key)}]`);
      const descriptor = this.property(object, key);
      if (descriptor === undefined) this.refuse('a property that disappeared while it was read');
      if (!descriptor.enumerable) this.refuse('a non-enumerable property (JSON.stringify would drop it)');
      const item = descriptor.value;
      if (key === 'toJSON' && typeof item === 'function') this.refuse('a toJSON method (JSON.stringify would store what it returns)');
      if (item !== undefined) {
        const name = this.string(key, 'key');
        this.emit(first ? name : `,${name}`);
        this.emit(':');
        this.value(item, depth + 1);
        first = false;
      }
      this.path.pop();
    }
    this.emit('}');
  }

  /** The own data property `key` of `object`, read once; getters and setters are refused, never called. */
  private property(object: object, key: string): { value: unknown; enumerable: boolean } | undefined {
    const descriptor = Reflect.getOwnPropertyDescriptor(object, key);
    if (descriptor === undefined) return undefined;
    if ('get' in descriptor || 'set' in descriptor) this.refuse('a getter or setter (JSON.stringify would call it; pass plain data)');
    return { value: descriptor.value, enumerable: descriptor.enumerable === true };
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** A short description of a value's kind for error messages, without calling into it (`a Map`, `a string`). */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value) && Object.getPrototypeOf(value) === Array.prototype) return 'an array';
  if (typeof value !== 'object') return typeof value === 'undefined' ? 'undefined' : `a ${typeof value}`;
  let name: unknown;
  try {
    const proto: unknown = Object.getPrototypeOf(value);
    const ctor = proto === null ? undefined : Reflect.getOwnPropertyDescriptor(proto as object, 'constructor')?.value;
    name = typeof ctor === 'function' ? ctor.name : undefined;
  } catch {
    name = undefined;
  }
  return typeof name === 'string' && name !== '' && name !== 'Object' ? `a ${name}` : 'an object';
}
