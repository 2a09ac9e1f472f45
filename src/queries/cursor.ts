import { sql, type Expression, type RawBuilder } from 'kysely';
import { ValidationError } from '../db/errors.ts';
import { isUuid } from '../db/tenant.ts';

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

const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

/**
 * A timestamptz column as UTC text with microseconds, for cursors: a JS Date would cut it to
 * milliseconds and keyset pagination would then skip or repeat rows.
 */
export function cursorTimestamp(column: Expression<Date | null> | RawBuilder<unknown>): RawBuilder<string> {
  return sql<string>`to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
}

/** An opaque cursor for `position` in the list `scope` names. */
export function encodeCursor(scope: CursorScope, position: CursorPosition): string {
  const payload = { v: 1, l: scope.list, t: scope.tenantId, s: scope.scope, a: position.at, i: position.id };
  return Buffer.from(JSON.stringify(payload)).toString('base64url');
}

/**
 * The position a cursor holds, after checking it was made for this list, tenant and scope.
 * Garbage, a cursor of another list or another tenant → ValidationError('cursor').
 */
export function decodeCursor(cursor: unknown, expected: CursorScope): CursorPosition {
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
  if (
    typeof payload !== 'object' || payload === null || p.v !== 1 ||
    typeof p.a !== 'string' || !TIMESTAMP.test(p.a) || !isUuid(p.i)
  ) {
    throw new ValidationError('cursor', 'is not a cursor returned by this list');
  }
  if (p.l !== expected.list || p.t !== expected.tenantId || p.s !== expected.scope) {
    throw new ValidationError('cursor', `was made for another list, not for ${expected.list} of ${expected.scope}`);
  }
  return { at: p.a, id: p.i };
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
