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
