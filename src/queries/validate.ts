import { ValidationError } from '../db/errors.ts';

export { assertUuid } from '../db/tenant.ts';

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
    throw new ValidationError(field, `must be an integer >= ${min}, got ${JSON.stringify(value)}`);
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
    throw new ValidationError(field, `must be a non-negative decimal such as "12.50", got ${JSON.stringify(value)}`);
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

/**
 * A JSON object (plain object of JSON values: strings, finite numbers, booleans, null, arrays,
 * objects) for a jsonb column, as JSON text. Anything else → ValidationError naming `field`.
 */
export function jsonObject(field: string, value: unknown): string {
  if (!isPlainObject(value)) throw new ValidationError(field, 'must be a JSON object');
  const problem = jsonProblem(value, 0);
  if (problem !== undefined) throw new ValidationError(field, `must be a JSON object: ${problem}`);
  return JSON.stringify(value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function jsonProblem(value: unknown, depth: number): string | undefined {
  if (depth > 64) return 'nested too deeply';
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return undefined;
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : `${value} is not a JSON number`;
  if (Array.isArray(value)) {
    for (const item of value) {
      const problem = jsonProblem(item, depth + 1);
      if (problem !== undefined) return problem;
    }
    return undefined;
  }
  if (isPlainObject(value)) {
    for (const key of Object.keys(value)) {
      const item = value[key];
      if (item === undefined) continue; // dropped by JSON.stringify, as JSON has no undefined
      const problem = jsonProblem(item, depth + 1);
      if (problem !== undefined) return `${key}: ${problem}`;
    }
    return undefined;
  }
  return `a ${typeof value === 'object' ? (value.constructor?.name ?? 'object') : typeof value} is not a JSON value`;
}
