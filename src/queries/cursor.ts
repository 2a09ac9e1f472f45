import { sql, type Expression, type RawBuilder } from 'kysely';
import { ValidationError } from '../db/errors.ts';
import { isUuid } from '../db/tenant.ts';
import { MAX_PAGE_BYTES } from './limits.ts';

/** One page of a keyset-paginated list; pass `nextCursor` back to get the next page (null: no more). */
export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

/** Where a page ended: the sort timestamp at full (microsecond) precision, and the row id. */
export interface CursorPosition {
  at: string;
  id: string;
}

/** What a cursor is valid for: the list, the tenant, and the list's scope (a user or conversation id). */
export interface CursorScope {
  list: string;
  tenantId: string;
  scope: string;
}

const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.\d{6}Z$/;

/**
 * Whether `text` (of the TIMESTAMP form) names a real instant: years 1..9999, a month, a day of
 * that month (leap years included), hours 0..23, minutes and seconds 0..59 — what cursorTimestamp
 * writes. PostgreSQL refuses the other well-formed ones (22008), or rolls `24:00`/`:60` over.
 */
function isRealTimestamp(text: string): boolean {
  const match = TIMESTAMP.exec(text);
  if (match === null) return false;
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return false;
  // Day 0 of the next month is the last day of this one (setUTCFullYear, unlike Date.UTC, keeps years below 100).
  const last = new Date(0);
  last.setUTCFullYear(year, month, 0);
  return day <= last.getUTCDate();
}

/**
 * A timestamptz column as UTC text with microseconds, for cursors: a JS Date would cut it to
 * milliseconds and keyset pagination would then skip or repeat rows.
 */
export function cursorTimestamp(column: Expression<Date | null> | RawBuilder<unknown>): RawBuilder<string> {
  return sql<string>`to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
}

/**
 * The keyset condition of a page after `position`: `(at, id) < (position)` for a list newest
 * first ('before'), `>` for one oldest first ('after'). Row comparison, so one index range serves it.
 */
export function keysetPast(
  at: Expression<unknown> | RawBuilder<unknown>,
  id: Expression<unknown> | RawBuilder<unknown>,
  position: CursorPosition,
  direction: 'before' | 'after' = 'before',
): RawBuilder<boolean> {
  const op = direction === 'before' ? sql`<` : sql`>`;
  return sql<boolean>`(${at}, ${id}) ${op} (${position.at}::timestamptz, ${position.id}::uuid)`;
}

/** An opaque cursor for `position` in the list `scope` names. */
export function encodeCursor(scope: CursorScope, position: CursorPosition): string {
  return cursorOf(scope, { a: position.at, i: position.id });
}

/**
 * The position a cursor holds, after checking it was made for this list, tenant and scope.
 * Garbage, a cursor of another list or another tenant → ValidationError('cursor').
 */
export function decodeCursor(cursor: unknown, expected: CursorScope): CursorPosition {
  const p = cursorPayload(cursor, expected, (p) => typeof p.a === 'string' && isRealTimestamp(p.a) && isUuid(p.i));
  return { at: p.a as string, id: p.i as string };
}

/** A cursor of the list `scope` names holding `fields` (opaque: base64url JSON, version 1). */
export function cursorOf(scope: CursorScope, fields: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify({ v: 1, l: scope.list, t: scope.tenantId, s: scope.scope, ...fields })).toString('base64url');
}

/**
 * The fields of a cursor made by cursorOf, after checking its shape (`valid`) and that it was made
 * for this list, tenant and scope (`scopeText` names the scope in the error). Else ValidationError('cursor').
 */
export function cursorPayload(
  cursor: unknown,
  expected: CursorScope,
  valid: (payload: Record<string, unknown>) => boolean,
  scopeText: string = expected.scope,
): Record<string, unknown> {
  if (typeof cursor !== 'string' || cursor.length === 0 || cursor.length > 1000 || !/^[A-Za-z0-9_-]+$/.test(cursor)) {
    throw new ValidationError('cursor', 'is not a cursor returned by this list');
  }
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new ValidationError('cursor', 'is not a cursor returned by this list');
  }
  const p = payload as Record<string, unknown>;
  if (typeof payload !== 'object' || payload === null || p.v !== 1 || !valid(p)) {
    throw new ValidationError('cursor', 'is not a cursor returned by this list');
  }
  if (p.l !== expected.list || p.t !== expected.tenantId || p.s !== expected.scope) {
    throw new ValidationError('cursor', `was made for another list, not for ${expected.list} of ${scopeText}`);
  }
  return p;
}

/**
 * Rows fetched with `limit + 1`, each with its sort timestamp as `cursorAt` (see
 * {@link cursorTimestamp}) → the page of the first `limit` rows, without `cursorAt`, and the cursor
 * after its last row (null when there is no further row).
 */
export function toPage<T extends { id: string }>(rows: (T & { cursorAt: string })[], limit: number, scope: CursorScope): Page<T> {
  const items = rows.slice(0, limit).map(({ cursorAt: _cursorAt, ...row }) => row as unknown as T);
  const last = rows[limit - 1];
  const nextCursor = rows.length > limit && last !== undefined ? encodeCursor(scope, { at: last.cursorAt, id: last.id }) : null;
  return { items, nextCursor };
}

/** The size columns of a row fetched for a page with a byte budget (see {@link toSizedPage}). */
export interface SizedRow {
  /** Bytes of the row's variable-length columns as PostgreSQL sends them. */
  rowBytes: string | number;
  /** rowBytes summed over the fetched rows up to this one, in page order. */
  runningBytes: string | number;
}

/** A page's byte budget: its bytes, how the limit is named in errors, and what a row is (`resource`). */
export interface PageBudget {
  maxBytes: number;
  limitName: string;
  what: string;
}

/**
 * Rows fetched with `limit + 1`, each with its sort timestamp (`cursorAt`) and sizes (SizedRow),
 * their large columns null past the budget → the page of the first rows, at most `limit`, whose
 * running size stays within `budget.maxBytes`, and the cursor after its last row (null when no row
 * was left out). A first row that alone passes the budget → ValidationError('maxPageBytes') naming
 * the row and the bytes it needs, so that no call returns more than the budget.
 */
export function toSizedPage<T extends { id: string }>(
  rows: (T & SizedRow & { cursorAt: string })[],
  limit: number,
  scope: CursorScope,
  budget: PageBudget,
): Page<T> {
  const fitting = rows.filter((row, index) => index < limit && Number(row.runningBytes) <= budget.maxBytes);
  const first = rows[0];
  if (fitting.length === 0 && first !== undefined) throw tooLargeForPage(budget, `${budget.what} ${first.id} alone holds`, Number(first.rowBytes));
  const items = fitting.map(({ cursorAt: _cursorAt, rowBytes: _rowBytes, runningBytes: _runningBytes, ...row }) => row as unknown as T);
  const last = fitting[fitting.length - 1];
  const nextCursor = rows.length > fitting.length && last !== undefined ? encodeCursor(scope, { at: last.cursorAt, id: last.id }) : null;
  return { items, nextCursor };
}

/**
 * ValidationError('maxPageBytes') for an answer of `bytes` bytes over the budget: `what` says whose
 * (`resource … alone holds`, `the 12 chunks found hold`).
 */
export function tooLargeForPage(budget: Omit<PageBudget, 'what'>, what: string, bytes: number): ValidationError {
  const raise = bytes <= MAX_PAGE_BYTES ? `pass maxPageBytes of at least ${bytes}` : `it cannot be returned at once (MAX_PAGE_BYTES = ${MAX_PAGE_BYTES})`;
  return new ValidationError(
    'maxPageBytes',
    `${what} ${bytes} bytes, more than the budget of ${budget.maxBytes} bytes per call (${budget.limitName}): ${raise}`,
  );
}
