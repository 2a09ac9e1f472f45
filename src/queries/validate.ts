import { ValidationError } from '../db/errors.ts';
import { DEFAULT_PAGE_BYTES, DEFAULT_PAGE_SIZE, MAX_DATE, MAX_PAGE_BYTES, MAX_PAGE_SIZE, MIN_DATE } from './limits.ts';

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
  assertStorableText(field, value);
}

/**
 * Text PostgreSQL stores exactly, or a ValidationError naming `field`: no NUL character (text
 * refuses it) and no lone UTF-16 surrogate (the driver would send U+FFFD in its place, silently).
 */
export function assertStorableText(field: string, value: string): void {
  if (value.includes('\u0000')) throw new ValidationError(field, 'must not contain NUL characters');
  if (LONE_SURROGATE.test(value)) {
    throw new ValidationError(field, 'must not contain a lone UTF-16 surrogate: it cannot be stored as UTF-8 (it would become U+FFFD)');
  }
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
export function pageLimit(limit: unknown, fallback = DEFAULT_PAGE_SIZE, max = MAX_PAGE_SIZE): number {
  if (limit === undefined) return fallback;
  assertInt('limit', limit, 1);
  if (limit > max) throw new ValidationError('limit', `must be at most ${max}, got ${limit}`);
  return limit;
}

/** Throws a ValidationError naming `field` unless `value` is a string (possibly empty) of at most `max` characters without NUL, which PostgreSQL text refuses. */
export function assertOptionalText(field: string, value: unknown, max: number): asserts value is string {
  if (typeof value !== 'string') throw new ValidationError(field, 'must be a string or null');
  if (value.length > max) throw new ValidationError(field, `must be at most ${max} characters, got ${value.length}`);
  assertStorableText(field, value);
}

/**
 * A per-call limit option (`maxContentBytes`, `maxPageBytes`, `maxRows`…): `value` when given,
 * an integer 1..ceiling, else `fallback`. Anything else → ValidationError naming `field`.
 */
export function limitOption(field: string, value: unknown, fallback: number, ceiling: number): number {
  if (value === undefined) return fallback;
  assertInt(field, value, 1);
  if (value > ceiling) throw new ValidationError(field, `must be at most ${ceiling}, got ${value}`);
  return value;
}

/** The byte budget of one call's answer: `maxPageBytes` when given (1..MAX_PAGE_BYTES), else DEFAULT_PAGE_BYTES. */
export function pageBytes(maxPageBytes: unknown): number {
  return limitOption('maxPageBytes', maxPageBytes, DEFAULT_PAGE_BYTES, MAX_PAGE_BYTES);
}

/** How a byte limit is named in an error: the constant for the default, else the option that set it. */
export function limitName(limit: number, fallback: number, constant: string, option: string): string {
  return limit === fallback ? constant : option;
}

/**
 * Throws a ValidationError naming `field` and the limit unless `value` is a string of at most
 * `maxBytes` bytes in UTF-8, without NUL characters (PostgreSQL text refuses them). The size is
 * checked first, so an oversized string is refused without being scanned or copied.
 */
export function assertTextBytes(field: string, value: unknown, maxBytes: number, limit: string): asserts value is string {
  if (typeof value !== 'string') throw new ValidationError(field, `must be a string, got ${describe(value)}`);
  // Each UTF-16 code unit is at least one byte: a longer string is refused without counting.
  if (value.length > maxBytes || Buffer.byteLength(value, 'utf8') > maxBytes) {
    throw new ValidationError(field, `must be at most ${maxBytes} bytes of UTF-8 text (${limit}), got ${Buffer.byteLength(value, 'utf8')}`);
  }
  assertStorableText(field, value);
}

/**
 * Throws a ValidationError naming `field` unless `value` is a valid Date from MIN_DATE to
 * MAX_DATE (years 1..9999, UTC): the dates PostgreSQL reads from both drivers (see MIN_DATE).
 */
export function assertDate(field: string, value: unknown): asserts value is Date {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw new ValidationError(field, 'must be a valid Date');
  const time = value.getTime();
  if (time < Date.parse(MIN_DATE) || time > Date.parse(MAX_DATE)) {
    throw new ValidationError(field, `must be from ${MIN_DATE} to ${MAX_DATE} (years 1..9999), got ${value.toISOString()}`);
  }
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
 * whatever JSON.stringify would silently change — NaN and ±Infinity (it writes null), BigInt (it
 * throws), Map, Set, Date, class instances and other non-plain objects (`{}` or a string), a
 * `toJSON` method (what it returns), functions and symbols, `undefined` and holes in arrays
 * (null) — and what PostgreSQL's jsonb would refuse or change: NUL characters (U+0000) and lone
 * UTF-16 surrogates (U+FFFD, or error 22P02), in strings and in keys. A cycle, more than
 * `maxDepth` levels of nesting, or more than `maxBytes` bytes of JSON text are refused too; the
 * size is counted while the text is built, so a huge value is refused after reading about
 * `maxBytes` of it.
 *
 * What JSON is made of, as for JSON.stringify: an array's elements and an object's own enumerable
 * string-keyed properties; a property whose value is `undefined` is left out (JSON has no
 * undefined), and -0 is written 0 (jsonb has no -0 either).
 *
 * The text is built in one walk that reads every property once, so what is checked is exactly
 * what is written: a getter (or a Proxy) that returns something else on each read runs once, and
 * its one answer is both checked and stored. Strings keep every character: jsonb gives back the
 * same string.
 */
export function jsonText(field: string, value: unknown, limits: JsonLimits = {}): string {
  const maxBytes = limits.maxBytes ?? Number.POSITIVE_INFINITY;
  const tooLarge = () => {
    const name = limits.limitName === undefined ? '' : ` (${limits.limitName})`;
    return new ValidationError(field, `must be at most ${maxBytes} bytes of JSON${name}, got more`);
  };
  const walker = new JsonWalker(maxBytes, limits.maxDepth ?? MAX_JSON_DEPTH);
  try {
    walker.value(value, 1);
  } catch (error) {
    if (!(error instanceof JsonRefusal)) throw error;
    if (error.tooLarge) throw tooLarge();
    throw new ValidationError(field, `${error.path.length === 0 ? '' : `at ${field}${pathText(error.path)}: `}${error.reason}`);
  }
  const text = walker.text();
  // The walk counted UTF-16 code units, never more than UTF-8 bytes: the exact count, once.
  if (Buffer.byteLength(text, 'utf8') > maxBytes) throw tooLarge();
  return text;
}

/** `.key`, `["odd key"]` and `[index]` parts of a path inside a JSON value. */
function pathText(path: readonly (string | number)[]): string {
  return path
    .map((part) => {
      if (typeof part === 'number') return `[${part}]`;
      if (IDENTIFIER.test(part)) return `.${part}`;
      return `[${JSON.stringify(part.length > 40 ? `${part.slice(0, 40)}…` : part)}]`;
    })
    .join('');
}

/** Why jsonText refused a value, and where (keys and indexes from the top). */
class JsonRefusal extends Error {
  readonly path: (string | number)[];
  readonly reason: string;
  readonly tooLarge: boolean;
  constructor(path: (string | number)[], reason: string, tooLarge = false) {
    super(reason);
    this.path = path;
    this.reason = reason;
    this.tooLarge = tooLarge;
  }
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
/** A lone surrogate: a high one not followed by a low one, or a low one not preceded by a high one. */
export const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** String.prototype.isWellFormed (ES2024, in every Node this package runs on; not in the es2023 lib types). */
const isWellFormed = (text: string): boolean => (text as unknown as { isWellFormed(): boolean }).isWellFormed();

/**
 * Builds the JSON text of one value, reading each property once; throws JsonRefusal. It counts
 * UTF-16 code units as it goes (a lower bound of the UTF-8 bytes), so it stops within `maxBytes`
 * of reading; jsonText then counts the bytes of the finished text exactly.
 */
class JsonWalker {
  private out = '';
  private readonly path: (string | number)[] = [];
  /** The objects and arrays being written, outermost first (at most maxDepth: a cycle check without hashing). */
  private readonly open: object[] = [];
  private units = 0;
  private readonly maxBytes: number;
  private readonly maxDepth: number;

  constructor(maxBytes: number, maxDepth: number) {
    this.maxBytes = maxBytes;
    this.maxDepth = maxDepth;
  }

  text(): string {
    return this.out;
  }

  private refuse(reason: string): never {
    throw new JsonRefusal([...this.path], reason);
  }

  private emit(piece: string): void {
    if ((this.units += piece.length) > this.maxBytes) throw new JsonRefusal([], 'too large', true);
    this.out += piece;
  }

  private string(text: string, what: 'string' | 'key'): string {
    // Before scanning or escaping: a string longer than what is left is refused without a copy.
    if (this.units + text.length + 2 > this.maxBytes) throw new JsonRefusal([], 'too large', true);
    if (text.includes('\u0000')) this.refuse(`a ${what} must not contain NUL characters (U+0000): jsonb cannot hold them`);
    if (!isWellFormed(text)) {
      const lone = LONE_SURROGATE.exec(text)!;
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
        return this.emit(String(value)); // as JSON.stringify writes a finite number (-0 as 0)
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
    if (this.open.includes(object)) this.refuse('a cycle: this value contains itself');
    if (depth > this.maxDepth) this.refuse(`nested more than ${this.maxDepth} levels deep`);
    this.open.push(object);
    if (Array.isArray(object)) this.array(object, depth);
    else this.object(object, depth);
    this.open.pop();
  }

  private array(array: unknown[], depth: number): void {
    if (Object.getPrototypeOf(array) !== Array.prototype) this.refuse(`${describe(array)} is not a plain array`);
    const length = array.length;
    this.emit('[');
    for (let i = 0; i < length; i++) {
      this.path.push(i);
      const item = array[i];
      if (item === undefined) this.refuse('undefined or a hole (JSON.stringify would write null)');
      if (i > 0) this.emit(',');
      this.value(item, depth + 1);
      this.path.pop();
    }
    this.emit(']');
  }

  private object(object: object, depth: number): void {
    const proto = Object.getPrototypeOf(object);
    if (proto !== Object.prototype && proto !== null) this.refuse(`${describe(object)} is not a JSON value (only plain objects and arrays are)`);
    const record = object as Record<string, unknown>;
    this.emit('{');
    let first = true;
    for (const key of Object.keys(record)) {
      this.path.push(key);
      // Read once: a getter runs once, and the value it gave is both checked and written.
      const item = record[key];
      if (key === 'toJSON' && typeof item === 'function') this.refuse('a toJSON method (JSON.stringify would store what it returns)');
      if (item !== undefined) {
        const name = this.string(key, 'key');
        this.emit(first ? `${name}:` : `,${name}:`);
        this.value(item, depth + 1);
        first = false;
      }
      this.path.pop();
    }
    this.emit('}');
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
